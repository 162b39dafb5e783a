"""Referral rules as pure functions: whom to refer to, what may be shared, and the referral
state machine (requested -> waitlisted -> accepted -> completed; declined; revoked)."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from uuid import UUID

from contracts.commands import (
    AcceptReferral,
    CompleteReferral,
    DeclineReferral,
    DeliveredItem,
    RevokeReferral,
)
from contracts.events import (
    Event,
    ReferralAccepted,
    ReferralCompleted,
    ReferralDeclined,
    ReferralEscalated,
    ReferralEvent,
    ReferralRequested,
    ReferralRevoked,
    ReferralWaitlisted,
    ShelterAdmitted,
    ShelterDischarged,
    ShelterPlacementRefused,
    ShelterWaitlisted,
    VictimIdentified,
)
from contracts.replies import ErrorCode, reject
from contracts.vocabulary import (
    DeliveryUnit,
    PersonalField,
    Region,
    Service,
    Sex,
    ShelterCategory,
)
from services.agencies.registry import Agency, AgencyRegistry

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


class Status(StrEnum):
    REQUESTED = "requested"
    WAITLISTED = "waitlisted"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    COMPLETED = "completed"
    REVOKED = "revoked"


OPEN = frozenset({Status.REQUESTED, Status.WAITLISTED})
ACTIVE = OPEN | {Status.ACCEPTED}


def placement_category(is_child: bool, sex: Sex) -> ShelterCategory:
    if is_child:
        return ShelterCategory.CHILDREN
    return ShelterCategory.WOMEN if sex is Sex.FEMALE else ShelterCategory.MEN


def choose_provider(
    registry: AgencyRegistry, service: Service, region: Region, category: ShelterCategory | None
) -> Agency | None:
    """Nearest provider of the service: same region first, then the capital, then any.
    For shelters only those taking the person's category (a child only where children are)."""
    candidates = [
        a
        for a in registry.providers_of(service)
        if category is None or category in a.shelter_categories
    ]
    candidates.sort(key=lambda a: (a.region != region, a.region != Region.BISHKEK_CITY, a.id))
    return candidates[0] if candidates else None


def plan_referrals(
    case: VictimIdentified,
    registry: AgencyRegistry,
    referral_id_for: dict[Service, UUID],
    now: dt.datetime,
    response_window: dt.timedelta,
) -> list[tuple[UUID, ReferralRequested]]:
    """One referral per needed service the person did not decline. A child always gets a
    guardianship referral (child-specific handling), whatever the needs list says."""
    services = set(case.needs) - set(case.consent.declined_services)
    if case.is_child:
        services.add(Service.GUARDIANSHIP)
    planned = []
    for service in sorted(services):
        category = (
            placement_category(case.is_child, case.sex) if service is Service.SHELTER else None
        )
        provider = choose_provider(registry, service, case.region, category)
        if provider is None:
            continue
        shared = tuple(f for f in MINIMAL_FIELDS[service] if f not in case.consent.withheld_fields)
        referral_id = referral_id_for[service]
        planned.append(
            (
                referral_id,
                ReferralRequested(
                    referral_id=referral_id,
                    case_id=case.case_id,
                    service=service,
                    provider_id=provider.id,
                    referrer_id=case.agency_id,
                    region=case.region,
                    sex=case.sex,
                    age_band=case.age_band,
                    is_child=case.is_child,
                    placement_category=category,
                    shared_fields=shared,
                    requested_at=now,
                    respond_by=now + response_window,
                ),
            )
        )
    return planned


@dataclass(frozen=True)
class Referral:
    request: ReferralRequested
    status: Status
    escalated: bool
    accepted_at: dt.datetime | None

    @property
    def ids(self) -> dict[str, object]:
        return {"referral_id": self.request.referral_id, "case_id": self.request.case_id}


def fold(events: Sequence[Event]) -> Referral | None:
    """Current state of one referral from its events."""
    state: Referral | None = None
    for event in events:
        if isinstance(event, ReferralRequested):
            state = Referral(event, Status.REQUESTED, escalated=False, accepted_at=None)
            continue
        if state is None:
            continue
        match event:
            case ReferralAccepted():
                state = _with(state, Status.ACCEPTED, accepted_at=event.accepted_at)
            case ReferralWaitlisted():
                state = _with(state, Status.WAITLISTED)
            case ReferralDeclined():
                state = _with(state, Status.DECLINED)
            case ReferralCompleted():
                state = _with(state, Status.COMPLETED)
            case ReferralRevoked():
                state = _with(state, Status.REVOKED)
            case ReferralEscalated():
                state = Referral(state.request, state.status, True, state.accepted_at)
    return state


def _with(state: Referral, status: Status, accepted_at: dt.datetime | None = None) -> Referral:
    return Referral(state.request, status, state.escalated, accepted_at or state.accepted_at)


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


def decide_revoke(referral: Referral | None, command: RevokeReferral) -> list[ReferralEvent]:
    ref = _existing(referral, command.referral_id)
    if command.agency_id != ref.request.referrer_id:
        raise reject("agency_id", ErrorCode.NOT_AUTHORISED, "only the referrer may revoke")
    _in(ref, ACTIVE, "revoke")
    return [ReferralRevoked(**ref.ids, revoked_by=command.agency_id, reason=command.reason)]


def decide_escalation(
    referral: Referral | None, now: dt.datetime, coordinating_body: str
) -> list[ReferralEvent]:
    """Escalate once a referral nobody acted on passes its deadline."""
    if referral is None or referral.escalated or referral.status is not Status.REQUESTED:
        return []
    if now < referral.request.respond_by:
        return []
    return [
        ReferralEscalated(
            **referral.ids,
            provider_id=referral.request.provider_id,
            overdue_since=referral.request.respond_by,
            escalated_to=coordinating_body,
        )
    ]


def follow_placement(
    referral: Referral | None, placement: Event, now: dt.datetime
) -> list[ReferralEvent]:
    """The shelter's facts move the shelter referral forward; stale ones change nothing."""
    if referral is None:
        return []
    provider = referral.request.provider_id
    match placement:
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
