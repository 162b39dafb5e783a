"""The case plan's rules as pure functions: adding, removing and (re-)referring a need, the
hub's own re-referral after a decline, reassignment by the coordinating body, and the request
a `need.referred` becomes.

Who may: the case's owner or the coordinating body (`may_manage`); reassignment only the
coordinating body. Every refusal is a typed rejection naming the field; nothing is written.
"""

from __future__ import annotations

import datetime as dt
from uuid import UUID

from contracts.commands import AddNeed, ReassignReferral, ReferNeed, RemoveNeed
from contracts.events import (
    CaseReceivedFromAbroad,
    NeedAdded,
    NeedEvent,
    NeedReferred,
    NeedRemoved,
    NeedUnmet,
    ReferralRequested,
    ReferralRevoked,
    VictimIdentified,
)
from contracts.replies import ErrorCode, reject
from contracts.vocabulary import (
    AgencyKind,
    ReassignReason,
    RevokeReason,
    Service,
    ShelterCategory,
    UnmetReason,
)
from services.agencies.registry import Agency, AgencyRegistry
from services.case.case import Case, may_manage
from services.case.consent import not_withheld
from services.case.ids import need_id_for, referral_id_for_attempt
from services.case.needs import ON_THE_PLAN, Need, NeedStatus, unmet_reason
from services.case.referrals import (
    ACTIVE,
    Referral,
    choose_provider,
    placement_category,
    referral_request,
)
from services.referral.domain import MINIMAL_FIELDS

HUB = "hub"  # `referred_by` of a referral the hub made on its own (after a decline)


def _category(case: Case, service: Service) -> ShelterCategory | None:
    record = case.record
    return placement_category(record.is_child, record.sex) if service is Service.SHELTER else None


def _plan_case(case: Case | None, agency: Agency | None) -> Case:
    """The case, if it exists, `agency` manages it, and it is neither erased nor closed."""
    if case is None:
        raise reject("case_id", ErrorCode.UNKNOWN_ID, "no such case")
    if agency is None:
        raise reject("agency_id", ErrorCode.UNKNOWN_AGENCY, "the agency is not in the registry")
    if not may_manage(case, agency):
        raise reject(
            "agency_id",
            ErrorCode.NOT_AUTHORISED,
            "only the agency that owns the case or the coordinating body may do this",
        )
    if case.erased:
        raise reject("case_id", ErrorCode.INVALID_STATE, "the case was erased")
    if case.is_closed:
        raise reject("case_id", ErrorCode.INVALID_STATE, "the case is closed; reopen it first")
    return case


def _not_declined_by_person(case: Case, service: Service) -> None:
    record = case.record
    if isinstance(record, VictimIdentified) and service in record.consent.declined_services:
        raise reject("service", ErrorCode.INVALID_STATE, "the person declined this service")


def named_provider(
    registry: AgencyRegistry, provider_id: str, service: Service, category: ShelterCategory | None
) -> Agency:
    """A provider the sender named: in the registry, offering the service, and for a shelter
    taking the person's category."""
    provider = registry.get(provider_id)
    if provider is None:
        raise reject("provider_id", ErrorCode.UNKNOWN_AGENCY, "the agency is not in the registry")
    if service not in provider.services:
        raise reject("provider_id", ErrorCode.INVALID_FIELD, "the agency does not offer it")
    if category is not None and category not in provider.shelter_categories:
        raise reject("provider_id", ErrorCode.INVALID_FIELD, "the shelter does not take the person")
    return provider


def next_provider(
    registry: AgencyRegistry, case: Case, need: Need | None, service: Service, *, also: str = ""
) -> Agency | None:
    """The nearest provider that has not declined this need (nor `also`, the one a
    reassignment moves away from)."""
    excluded = (need.declined_by if need else frozenset()) | ({also} if also else set())
    return choose_provider(
        registry, service, case.record.region, _category(case, service), frozenset(excluded)
    )


def referred(
    case: Case,
    service: Service,
    need: Need | None,
    provider: Agency,
    referred_by: str,
    now: dt.datetime,
    reassign_reason: ReassignReason | None = None,
) -> NeedReferred:
    attempt = need.next_attempt if need else 0
    return NeedReferred(
        need_id=need_id_for(case.record.case_id, service),
        case_id=case.record.case_id,
        service=service,
        referral_id=referral_id_for_attempt(case.record.case_id, service, attempt),
        provider_id=provider.id,
        attempt=attempt,
        referred_by=referred_by,
        reassign_reason=reassign_reason,
        recorded_at=now,
    )


def unmet(
    case: Case, service: Service, reason: UnmetReason, registry: AgencyRegistry, now: dt.datetime
) -> NeedUnmet:
    record = case.record
    return NeedUnmet(
        need_id=need_id_for(record.case_id, service),
        case_id=record.case_id,
        service=service,
        reason=reason,
        region=record.region,
        category=placement_category(record.is_child, record.sex),
        identifying_agency=record.agency_id,
        coordinating_body=registry.coordinating_body,
        recorded_at=now,
    )


def _provider_for(
    registry: AgencyRegistry,
    case: Case,
    need: Need | None,
    service: Service,
    provider_id: str | None,
) -> Agency | None:
    if provider_id is not None:
        return named_provider(registry, provider_id, service, _category(case, service))
    return next_provider(registry, case, need, service)


def decide_add_need(
    case: Case | None,
    need: Need | None,
    agency: Agency | None,
    registry: AgencyRegistry,
    command: AddNeed,
    now: dt.datetime,
) -> list[NeedEvent]:
    """Put the need on the plan and, in the same decision, refer it or record it unmet."""
    known = _plan_case(case, agency)
    _not_declined_by_person(known, command.service)
    if need is not None and need.status in ON_THE_PLAN:
        raise reject("service", ErrorCode.INVALID_STATE, "the need is already on the case plan")
    provider = _provider_for(registry, known, need, command.service, command.provider_id)
    added = NeedAdded(
        need_id=need_id_for(command.case_id, command.service),
        case_id=command.case_id,
        service=command.service,
        added_by=command.agency_id,
        recorded_at=now,
    )
    if provider is None:  # nobody offers it, or (a need added again) all left declined it
        reason = unmet_reason(need) if need is not None else UnmetReason.NO_PROVIDER
        return [added, unmet(known, command.service, reason, registry, now)]
    return [added, referred(known, command.service, need, provider, command.agency_id, now)]


def decide_remove_need(
    case: Case | None,
    need: Need | None,
    agency: Agency | None,
    command: RemoveNeed,
    now: dt.datetime,
) -> list[NeedEvent]:
    _plan_case(case, agency)
    if need is None or need.status not in ON_THE_PLAN:
        raise reject("service", ErrorCode.INVALID_STATE, "the need is not on the case plan")
    if need.active is not None:
        raise reject(
            "service", ErrorCode.INVALID_STATE, "a referral of the need is active: revoke it first"
        )
    return [
        NeedRemoved(
            need_id=need.need_id,
            case_id=command.case_id,
            service=command.service,
            reason=command.reason,
            removed_by=command.agency_id,
            recorded_at=now,
        )
    ]


def _referable(need: Need | None) -> Need:
    """A need that may be referred again: open or unmet."""
    if need is None or need.status not in ON_THE_PLAN:
        raise reject("service", ErrorCode.INVALID_STATE, "the need is not on the case plan")
    if need.status in (NeedStatus.REFERRED, NeedStatus.BEING_SERVED):
        raise reject("service", ErrorCode.INVALID_STATE, "a referral of the need is active")
    return need


def decide_refer_need(
    case: Case | None,
    need: Need | None,
    agency: Agency | None,
    registry: AgencyRegistry,
    command: ReferNeed,
    now: dt.datetime,
) -> list[NeedEvent]:
    """Refer an open or unmet need to the named provider, or the nearest that has not
    declined it; with nobody left an open need is recorded unmet, an unmet one refused."""
    known = _plan_case(case, agency)
    _not_declined_by_person(known, command.service)
    if need is not None and need.status is NeedStatus.MET:
        raise reject("service", ErrorCode.INVALID_STATE, "the need is met")
    referable = _referable(need)
    provider = _provider_for(registry, known, referable, command.service, command.provider_id)
    if provider is not None:
        return [referred(known, command.service, referable, provider, command.agency_id, now)]
    if referable.status is NeedStatus.UNMET:
        raise reject(
            "provider_id",
            ErrorCode.INVALID_STATE,
            "no provider is left that has not declined the need: name one",
        )
    return [unmet(known, command.service, unmet_reason(referable), registry, now)]


def decide_after_decline(
    case: Case | None,
    need: Need | None,
    declined: UUID,
    registry: AgencyRegistry,
    now: dt.datetime,
) -> list[NeedEvent]:
    """The hub re-refers a need whose latest referral was declined, to the nearest provider
    that has not declined it; with nobody left the need is recorded unmet. Nothing on a
    closed or erased case, a case received from abroad, nor when the need has moved on
    since."""
    if case is None or case.erased or case.is_closed:
        return []
    if isinstance(case.record, CaseReceivedFromAbroad):
        return []  # its origin is told of the decline (cross-border answer) and decides
    if need is None or need.status is not NeedStatus.OPEN:
        return []
    latest = need.latest
    if latest is None or latest.referral_id != declined:
        return []
    provider = next_provider(registry, case, need, need.service)
    if provider is None:
        return [unmet(case, need.service, unmet_reason(need), registry, now)]
    return [referred(case, need.service, need, provider, HUB, now)]


# --- reassignment --------------------------------------------------------------


def _active(referral: Referral, action: str) -> None:
    if referral.status not in ACTIVE:
        raise reject(
            "referral_id",
            ErrorCode.INVALID_STATE,
            f"cannot {action} a referral that is {referral.status.value}",
        )


def decide_reassign(
    referral: Referral | None,
    case: Case | None,
    agency: Agency | None,
    registry: AgencyRegistry,
    command: ReassignReferral,
) -> list[ReferralRevoked]:
    """The coordinating body revokes an active referral to refer its need elsewhere; the
    provider it names is checked before anything is written."""
    if referral is None:
        raise reject("referral_id", ErrorCode.UNKNOWN_ID, "no such referral")
    if agency is None or agency.kind is not AgencyKind.COORDINATING_BODY:
        raise reject(
            "agency_id", ErrorCode.NOT_AUTHORISED, "only the coordinating body may reassign"
        )
    if case is None or case.erased or case.is_closed:
        raise reject("referral_id", ErrorCode.INVALID_STATE, "the case is closed or erased")
    _active(referral, "reassign")
    service = referral.request.service
    if command.provider_id is not None:
        named_provider(registry, command.provider_id, service, _category(case, service))
        if command.provider_id == referral.request.provider_id:
            raise reject(
                "provider_id", ErrorCode.INVALID_FIELD, "the referral is with this provider"
            )
    return [
        ReferralRevoked(
            **referral.ids, revoked_by=command.agency_id, reason=RevokeReason.REASSIGNED
        )
    ]


def decide_reassigned_need(
    case: Case,
    need: Need | None,
    revoked: Referral,
    registry: AgencyRegistry,
    command: ReassignReferral,
    now: dt.datetime,
) -> list[NeedEvent]:
    """After the revocation: the need referred to the named provider, or the nearest that
    has neither declined it nor just lost it; unmet with nobody left."""
    service = revoked.request.service
    if need is None or need.status is not NeedStatus.OPEN:
        return []
    latest = need.latest
    if latest is None or latest.referral_id != revoked.request.referral_id:
        return []
    if command.provider_id is not None:
        provider: Agency | None = named_provider(
            registry, command.provider_id, service, _category(case, service)
        )
    else:
        provider = next_provider(registry, case, need, service, also=revoked.request.provider_id)
    if provider is None:
        return [unmet(case, service, unmet_reason(need), registry, now)]
    return [referred(case, service, need, provider, command.agency_id, now, command.reason)]


# --- the request a need.referred becomes -----------------------------------------------------


def request_for(
    case: Case,
    order: NeedReferred,
    registry: AgencyRegistry,
    now: dt.datetime,
    response_window: dt.timedelta,
) -> ReferralRequested | None:
    """The referral request a `need.referred` orders: the case's profile, its current owner
    as referrer, the service's minimal fields less those withheld. None on a closed or
    erased case, or if the provider left the registry."""
    provider = registry.get(order.provider_id)
    if provider is None or case.erased or case.is_closed:
        return None
    withheld = case.consent.withheld_fields if case.consent is not None else ()
    return referral_request(
        registry,
        referral_id=order.referral_id,
        case_id=order.case_id,
        service=order.service,
        referrer_id=case.owner,
        region=case.record.region,
        person=case.record,
        shared_fields=not_withheld(MINIMAL_FIELDS[order.service], frozenset(withheld)),
        now=now,
        response_window=response_window,
        provider=provider,
        attempt=order.attempt,
    )
