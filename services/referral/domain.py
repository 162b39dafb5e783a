"""Referral rules as pure functions: which services to refer to, what may be shared, and the
referral state machine (requested -> waitlisted -> accepted -> completed; declined; revoked).
How a request is built and a referral's state are in the case core
(`services/case/referrals.py`): custody and the audit replay read them too."""

from __future__ import annotations

import datetime as dt
import math
from uuid import UUID

from contracts.commands import (
    AcceptReferral,
    CompleteReferral,
    DeclineReferral,
    DeliveredItem,
    DeliverService,
    RevokeReferral,
)
from contracts.events import (
    Event,
    NeedUnmet,
    ReferralAccepted,
    ReferralCompleted,
    ReferralDeclined,
    ReferralEscalated,
    ReferralEvent,
    ReferralRequested,
    ReferralRevoked,
    ReferralServiceDelivered,
    ReferralWaitlisted,
    ShelterAdmitted,
    ShelterDischarged,
    ShelterPlacementRefused,
    ShelterWaitlisted,
    VictimIdentified,
    VictimPresumed,
)
from contracts.replies import ErrorCode, reject
from contracts.vocabulary import (
    DeliveryUnit,
    EscalationCause,
    PersonalField,
    Service,
    UnmetReason,
)
from services.agencies.registry import Agency, AgencyRegistry
from services.case.case import Case, may_manage
from services.case.consent import not_withheld
from services.case.ids import need_id_for, referral_id_for
from services.case.referrals import (
    ACTIVE,
    OPEN,
    Referral,
    Status,
    placement_category,
    referral_request,
)

F = PersonalField
# The least each kind of provider needs to act (data minimisation, confidentiality SOP).
MINIMAL_FIELDS: dict[Service, tuple[PersonalField, ...]] = {
    Service.SHELTER: (F.FULL_NAME, F.DATE_OF_BIRTH, F.PHONE),
    Service.LEGAL_AID: (F.FULL_NAME, F.DATE_OF_BIRTH, F.DOCUMENT_NUMBER, F.NARRATIVE),
    Service.MEDICAL: (F.FULL_NAME, F.DATE_OF_BIRTH),
    Service.PSYCHOLOGICAL: (F.FULL_NAME,),
    Service.SOCIAL_ASSISTANCE: (F.FULL_NAME, F.DATE_OF_BIRTH, F.ADDRESS, F.PHONE),
    Service.EMPLOYMENT: (F.FULL_NAME, F.DATE_OF_BIRTH, F.DOCUMENT_NUMBER, F.PHONE),
    Service.EDUCATION: (F.FULL_NAME, F.DATE_OF_BIRTH),
    Service.REPATRIATION: (F.FULL_NAME, F.DATE_OF_BIRTH, F.DOCUMENT_NUMBER),
    Service.GUARDIANSHIP: (F.FULL_NAME, F.DATE_OF_BIRTH, F.CURRENT_LOCATION),
}


def needed_services(case: VictimIdentified | VictimPresumed) -> list[Service]:
    """Every needed service the person did not decline. A child always needs guardianship
    (child-specific handling), whatever the needs list says."""
    services = set(case.needs) - set(case.consent.declined_services)
    if case.is_child:
        services.add(Service.GUARDIANSHIP)
    return sorted(services)


# Referred for a presumed victim before the identification is decided; for a child, her
# guardianship too (`needed_services` always adds it for a child).
URGENT_SERVICES = frozenset({Service.SHELTER, Service.MEDICAL, Service.PSYCHOLOGICAL})


def urgent_services(case: VictimIdentified | VictimPresumed) -> list[Service]:
    """The needed services that cannot wait for the identification decision."""
    urgent = URGENT_SERVICES | ({Service.GUARDIANSHIP} if case.is_child else frozenset())
    return [service for service in needed_services(case) if service in urgent]


def plan_needs(
    case: VictimIdentified | VictimPresumed,
    registry: AgencyRegistry,
    now: dt.datetime,
    response_window: dt.timedelta,
) -> tuple[list[tuple[UUID, ReferralRequested]], list[NeedUnmet]]:
    """One referral per needed service, and a `need.unmet` for each one nobody in the
    registry can take (no provider of it; for a shelter, none taking the person's category):
    a need is either referred or recorded as unmet, never silently dropped. A presumed
    victim: the urgent services only; the rest when she is identified (the urgent ones are
    then not referred twice: their ids are the same)."""
    planned: list[tuple[UUID, ReferralRequested]] = []
    unmet: list[NeedUnmet] = []
    presumed = isinstance(case, VictimPresumed)
    for service in urgent_services(case) if presumed else needed_services(case):
        referral_id = referral_id_for(case.case_id, service)
        requested = referral_request(
            registry,
            referral_id=referral_id,
            case_id=case.case_id,
            service=service,
            referrer_id=case.agency_id,
            region=case.region,
            person=case,
            shared_fields=not_withheld(MINIMAL_FIELDS[service], case.consent.withheld_fields),
            now=now,
            response_window=response_window,
        )
        if requested is not None:
            planned.append((referral_id, requested))
            continue
        unmet.append(
            NeedUnmet(
                need_id=need_id_for(case.case_id, service),
                case_id=case.case_id,
                service=service,
                reason=UnmetReason.NO_PROVIDER,
                region=case.region,
                category=placement_category(case.is_child, case.sex),
                identifying_agency=case.agency_id,
                coordinating_body=registry.coordinating_body,
                recorded_at=now,
            )
        )
    return planned, unmet


def plan_referrals(
    case: VictimIdentified,
    registry: AgencyRegistry,
    now: dt.datetime,
    response_window: dt.timedelta,
) -> list[tuple[UUID, ReferralRequested]]:
    """The referrals of `plan_needs`, without the unmet needs."""
    return plan_needs(case, registry, now, response_window)[0]


def _existing(referral: Referral | None, referral_id: UUID) -> Referral:
    if referral is None:
        raise reject("referral_id", ErrorCode.UNKNOWN_ID, "no such referral")
    return referral


def _as_provider(referral: Referral, agency_id: str) -> None:
    if agency_id != referral.request.provider_id:
        raise reject(
            "agency_id", ErrorCode.NOT_AUTHORISED, "only the referred provider may answer it"
        )


def _in(referral: Referral, allowed: frozenset[Status], action: str) -> None:
    if referral.status not in allowed:
        raise reject(
            "referral_id",
            ErrorCode.INVALID_STATE,
            f"cannot {action} a referral that is {referral.status.value}",
        )


def decide_accept(
    referral: Referral | None, command: AcceptReferral, now: dt.datetime
) -> list[ReferralEvent]:
    ref = _existing(referral, command.referral_id)
    _as_provider(ref, command.agency_id)
    _in(ref, OPEN, "accept")
    return [ReferralAccepted(**ref.ids, provider_id=command.agency_id, accepted_at=now)]


def decide_decline(referral: Referral | None, command: DeclineReferral) -> list[ReferralEvent]:
    ref = _existing(referral, command.referral_id)
    _as_provider(ref, command.agency_id)
    _in(ref, OPEN, "decline")
    return [ReferralDeclined(**ref.ids, provider_id=command.agency_id, reason=command.reason)]


def decide_complete(referral: Referral | None, command: CompleteReferral) -> list[ReferralEvent]:
    ref = _existing(referral, command.referral_id)
    _as_provider(ref, command.agency_id)
    _in(ref, frozenset({Status.ACCEPTED}), "complete")
    return [
        ReferralCompleted(**ref.ids, provider_id=command.agency_id, delivered=command.delivered)
    ]


def decide_revoke(
    referral: Referral | None, case: Case | None, agency: Agency | None, command: RevokeReferral
) -> list[ReferralEvent]:
    """The referrer, the case's owner or the coordinating body revokes an active referral."""
    ref = _existing(referral, command.referral_id)
    allowed = command.agency_id == ref.request.referrer_id or (
        case is not None and agency is not None and may_manage(case, agency)
    )
    if not allowed:
        raise reject(
            "agency_id",
            ErrorCode.NOT_AUTHORISED,
            "only the referrer, the case owner or the coordinating body may revoke",
        )
    _in(ref, ACTIVE, "revoke")
    return [ReferralRevoked(**ref.ids, revoked_by=command.agency_id, reason=command.reason)]


def decide_deliver(referral: Referral | None, command: DeliverService) -> list[ReferralEvent]:
    """The provider of an accepted referral records service delivered so far."""
    ref = _existing(referral, command.referral_id)
    _as_provider(ref, command.agency_id)
    _in(ref, frozenset({Status.ACCEPTED}), "record service on")
    return [
        ReferralServiceDelivered(
            **ref.ids, provider_id=command.agency_id, delivered=command.delivered
        )
    ]


def decide_escalation(
    referral: Referral | None,
    now: dt.datetime,
    coordinating_body: str,
    cause: EscalationCause = EscalationCause.NO_ANSWER,
    due: dt.datetime | None = None,
) -> list[ReferralEvent]:
    """Escalate, once per cause: a referral nobody answered by its deadline (`no_answer`),
    or one on a waiting list since longer than allowed (`waitlisted_too_long`, `due` is
    when it became too long)."""
    if referral is None or cause in referral.escalations:
        return []
    if cause is EscalationCause.NO_ANSWER:
        status, overdue_since = Status.REQUESTED, referral.request.respond_by
    else:
        status, overdue_since = Status.WAITLISTED, due or referral.request.respond_by
    if referral.status is not status or now < overdue_since:
        return []
    return [
        ReferralEscalated(
            **referral.ids,
            provider_id=referral.request.provider_id,
            overdue_since=overdue_since,
            escalated_to=coordinating_body,
            cause=cause,
        )
    ]


def escalation_settled(referral: Referral | None, cause: EscalationCause) -> bool:
    """Nothing will ever escalate this referral for `cause`: it was escalated for it before
    (once per cause), or there is no such referral. Its deadline entry can go."""
    return referral is None or cause in referral.escalations


class AdmissionNotYetFollowed(Exception):
    """A discharge reached the referral before the admission it ends: the consumer took
    them out of stream order (an admission retried after a failure, taken again after a
    crash, or by another instance). Raised so that the discharge is retried after its
    admission, instead of leaving the referral accepted for ever."""


def follow_placement(
    referral: Referral | None, placement: Event, now: dt.datetime
) -> list[ReferralEvent]:
    """The shelter's facts move the shelter referral forward; stale ones change nothing.
    Only a discharge depends on an earlier fact being followed first: the others decide the
    same in any order (an admission after a wait-listing, or before it, ends accepted)."""
    if referral is None:
        return []
    provider = referral.request.provider_id
    match placement:
        case ShelterDischarged() if referral.status in OPEN:
            # The admission precedes the discharge in the shelter's history, and an open
            # referral is one it would accept: it is still to come.
            raise AdmissionNotYetFollowed(f"referral {referral.request.referral_id}")
        case ShelterWaitlisted() if referral.status is Status.REQUESTED:
            return [
                ReferralWaitlisted(
                    **referral.ids, provider_id=provider, position=placement.position
                )
            ]
        case ShelterAdmitted() if referral.status in OPEN:
            return [ReferralAccepted(**referral.ids, provider_id=provider, accepted_at=now)]
        case ShelterPlacementRefused() if referral.status in OPEN:
            return [ReferralDeclined(**referral.ids, provider_id=provider, reason=placement.reason)]
        case ShelterDischarged() if referral.status is Status.ACCEPTED:
            start = referral.accepted_at or now
            days = max(1, math.ceil((now - start).total_seconds() / 86400))
            stay = DeliveredItem(service=Service.SHELTER, quantity=days, unit=DeliveryUnit.DAY)
            return [ReferralCompleted(**referral.ids, provider_id=provider, delivered=(stay,))]
    return []
