"""The case plan as pure rules: the need fold (services/case/needs.py), the referral ids of a
case, the choice of the next provider, why a need is unmet, and the referral service's
decisions on need.add / need.remove / need.refer / referral.reassign / referral.revoke, the
hub's re-referral after a decline, waiting-list escalation, closure naming referrals, and
who the feed tells about need events."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from contracts.commands import (
    AddNeed,
    CloseCase,
    DeliveredItem,
    DeliverService,
    ReassignReferral,
    ReferNeed,
    RemoveNeed,
    RevokeReferral,
)
from contracts.events import (
    CaseClosed,
    CaseReviewDecided,
    CaseReviewRequested,
    CaseTransferred,
    CaseTransferRequested,
    Event,
    FollowUpOverdue,
    FollowUpScheduled,
    NeedAdded,
    NeedReferred,
    NeedRemoved,
    NeedUnmet,
    ReferralAccepted,
    ReferralCompleted,
    ReferralDeclined,
    ReferralEscalated,
    ReferralRequested,
    ReferralRevoked,
    ReferralServiceDelivered,
    ReferralWaitlisted,
)
from contracts.replies import CommandRejection, ErrorCode
from contracts.vocabulary import (
    ClosureReason,
    DeclineReason,
    DeliveryUnit,
    EscalationCause,
    FollowUpPurpose,
    NeedRemovalReason,
    ReassignReason,
    ReviewGrounds,
    ReviewOutcome,
    RevokeReason,
    Service,
    ShelterCategory,
    TransferReason,
    UnmetReason,
)
from services.agencies.registry import AgencyRegistry, load_registry
from services.case.case import Case
from services.case.ids import need_id_for, referral_id_for, referral_id_for_attempt
from services.case.needs import NeedStatus, case_referral_ids, fold_need, unmet_reason
from services.case.referrals import Referral, Status, choose_provider, fold_referral
from services.identifier.domain import decide_close
from services.referral import domain, plan
from services.referral.feed import addressees
from tests.unit.test_case_core import CASE, IDENTIFIER, NOW, agency, case_of, identified

REGISTRY = load_registry()
COORDINATING_BODY = "kg-coordinating-body"
OSH_SHELTER = "kg-ngo-osh-crisis-centre"
BISHKEK_SHELTER = "kg-ngo-bishkek-crisis-centre"
MENS_SHELTER = "kg-ngo-bishkek-mens-shelter"
OTHER = "kg-mia-osh"  # may identify, does not own the case
NEED = need_id_for(CASE, Service.SHELTER)
FIRST = referral_id_for(CASE, Service.SHELTER)


def refused(decide: Callable[[], Any]) -> list[tuple[str, ErrorCode]]:
    with pytest.raises(CommandRejection) as caught:
        decide()
    return [(e.field, e.code) for e in caught.value.errors]


def request(referral_id: uuid.UUID = FIRST, provider: str = OSH_SHELTER, attempt: int = 0) -> Any:
    return ReferralRequested(
        referral_id=referral_id,
        case_id=CASE,
        service=Service.SHELTER,
        provider_id=provider,
        referrer_id=IDENTIFIER,
        region=identified().region,
        sex=identified().sex,
        age_band=identified().age_band,
        is_child=False,
        placement_category=ShelterCategory.WOMEN,
        shared_fields=(),
        requested_at=NOW,
        respond_by=NOW + dt.timedelta(days=3),
        attempt=attempt,
    )


def declined(referral_id: uuid.UUID = FIRST, provider: str = OSH_SHELTER, **kw: Any) -> Any:
    reason = kw.get("reason", DeclineReason.NO_CAPACITY)
    return ReferralDeclined(
        referral_id=referral_id, case_id=CASE, provider_id=provider, reason=reason
    )


def referrals(*histories: list[Event]) -> dict[uuid.UUID, Referral]:
    folded = [fold_referral(h) for h in histories]
    return {r.request.referral_id: r for r in folded if r is not None}


def order(attempt: int, provider: str = BISHKEK_SHELTER, by: str = "hub") -> NeedReferred:
    return NeedReferred(
        need_id=NEED,
        case_id=CASE,
        service=Service.SHELTER,
        referral_id=referral_id_for_attempt(CASE, Service.SHELTER, attempt),
        provider_id=provider,
        attempt=attempt,
        referred_by=by,
        recorded_at=NOW,
    )


def unmet_event(reason: UnmetReason) -> NeedUnmet:
    return plan.unmet(case_of(), Service.SHELTER, reason, REGISTRY, NOW)


# --- ids and the fold -------------------------------------------------------------------------


def test_attempt_zero_keeps_the_identification_id_and_later_ones_differ() -> None:
    assert referral_id_for_attempt(CASE, Service.SHELTER, 0) == FIRST
    later = {referral_id_for_attempt(CASE, Service.SHELTER, k) for k in range(1, 5)}
    assert len(later) == 4 and FIRST not in later
    assert referral_id_for_attempt(str(CASE), Service.SHELTER, 2) == referral_id_for_attempt(
        CASE, Service.SHELTER, 2
    )


def test_no_need_without_events_or_an_identification_referral() -> None:
    assert fold_need(CASE, Service.SHELTER, [], {}) is None


def test_a_need_follows_its_latest_referral() -> None:
    first = [request()]
    need = fold_need(CASE, Service.SHELTER, [], referrals(first))
    assert need is not None and need.status is NeedStatus.REFERRED
    assert [(a.referral_id, a.attempt) for a in need.attempts] == [(FIRST, 0)]
    accepted = ReferralAccepted(
        referral_id=FIRST, case_id=CASE, provider_id=OSH_SHELTER, accepted_at=NOW
    )
    served = fold_need(CASE, Service.SHELTER, [], referrals([*first, accepted]))
    assert served is not None and served.status is NeedStatus.BEING_SERVED
    done = ReferralCompleted(referral_id=FIRST, case_id=CASE, provider_id=OSH_SHELTER, delivered=())
    met = fold_need(CASE, Service.SHELTER, [], referrals([*first, accepted, done]))
    assert met is not None and met.status is NeedStatus.MET


def test_a_declined_need_is_open_then_referred_again_then_unmet() -> None:
    history = referrals([request(), declined()])
    need = fold_need(CASE, Service.SHELTER, [], history)
    assert need is not None and need.status is NeedStatus.OPEN
    assert need.declined_by == {OSH_SHELTER} and need.next_attempt == 1
    # Ordered but not yet requested: counts as requested.
    again = fold_need(CASE, Service.SHELTER, [order(1)], history)
    assert again is not None and again.status is NeedStatus.REFERRED
    assert [a.status for a in again.attempts] == [Status.DECLINED, Status.REQUESTED]
    second = referral_id_for_attempt(CASE, Service.SHELTER, 1)
    both = referrals(
        [request(), declined()],
        [request(second, BISHKEK_SHELTER, 1), declined(second, BISHKEK_SHELTER)],
    )
    events: list[Event] = [order(1), unmet_event(UnmetReason.NO_CAPACITY)]
    unmet = fold_need(CASE, Service.SHELTER, events, both)
    assert unmet is not None and unmet.status is NeedStatus.UNMET
    assert unmet.unmet_reason is UnmetReason.NO_CAPACITY
    assert unmet.declined_by == {OSH_SHELTER, BISHKEK_SHELTER}


def test_removed_needs_and_removal_by_the_person() -> None:
    removed = NeedRemoved(
        need_id=NEED,
        case_id=CASE,
        service=Service.SHELTER,
        reason=NeedRemovalReason.DECLINED_BY_PERSON,
        removed_by=IDENTIFIER,
        recorded_at=NOW,
    )
    history = referrals([request(), declined()])
    need = fold_need(CASE, Service.SHELTER, [removed], history)
    assert need is not None and need.status is NeedStatus.DECLINED_BY_PERSON
    plain = removed.model_copy(update={"reason": NeedRemovalReason.NOT_NEEDED})
    assert fold_need(CASE, Service.SHELTER, [plain], history).status is NeedStatus.REMOVED  # type: ignore[union-attr]
    added = NeedAdded(
        need_id=NEED, case_id=CASE, service=Service.SHELTER, added_by=IDENTIFIER, recorded_at=NOW
    )
    back = fold_need(CASE, Service.SHELTER, [plain, added], history)
    assert back is not None and back.status is NeedStatus.OPEN


def test_a_revoked_referral_leaves_the_need_open() -> None:
    revoked = ReferralRevoked(
        referral_id=FIRST, case_id=CASE, revoked_by=IDENTIFIER, reason=RevokeReason.PERSON_WITHDREW
    )
    need = fold_need(CASE, Service.SHELTER, [], referrals([request(), revoked]))
    assert need is not None and need.status is NeedStatus.OPEN and need.declined_by == set()


def test_why_a_need_is_unmet() -> None:
    nobody = fold_need(CASE, Service.SHELTER, [unmet_event(UnmetReason.NO_PROVIDER)], {})
    assert nobody is not None and unmet_reason(nobody) is UnmetReason.NO_PROVIDER
    full = fold_need(CASE, Service.SHELTER, [], referrals([request(), declined()]))
    assert full is not None and unmet_reason(full) is UnmetReason.NO_CAPACITY
    other = declined(reason=DeclineReason.OUTSIDE_MANDATE)
    refused_need = fold_need(CASE, Service.SHELTER, [], referrals([request(), other]))
    assert refused_need is not None and unmet_reason(refused_need) is UnmetReason.ALL_DECLINED


def test_the_referral_ids_of_a_case_include_every_attempt() -> None:
    ids = case_referral_ids(CASE, [order(1), order(2)])
    assert ids[: len(Service)] == [referral_id_for(CASE, s) for s in Service]
    assert ids[len(Service) :] == [
        referral_id_for_attempt(CASE, Service.SHELTER, 1),
        referral_id_for_attempt(CASE, Service.SHELTER, 2),
    ]


def test_the_next_provider_skips_those_that_declined() -> None:
    region, women = identified().region, ShelterCategory.WOMEN
    first = choose_provider(REGISTRY, Service.SHELTER, region, women)
    assert first is not None and first.id == OSH_SHELTER
    after = choose_provider(REGISTRY, Service.SHELTER, region, women, frozenset({OSH_SHELTER}))
    assert after is not None and after.id == BISHKEK_SHELTER
    everyone = frozenset({OSH_SHELTER, BISHKEK_SHELTER})
    assert choose_provider(REGISTRY, Service.SHELTER, region, women, everyone) is None


# --- need.add / need.remove / need.refer -----------------------------------------------------


def add(by: str = IDENTIFIER, service: Service = Service.LEGAL_AID, **kw: Any) -> AddNeed:
    return AddNeed(command_id=uuid.uuid4(), agency_id=by, case_id=CASE, service=service, **kw)


def refer(by: str = IDENTIFIER, **kw: Any) -> ReferNeed:
    return ReferNeed(
        command_id=uuid.uuid4(), agency_id=by, case_id=CASE, service=Service.SHELTER, **kw
    )


def test_adding_a_need_refers_it_at_once_or_records_it_unmet() -> None:
    case = case_of()
    added, referred = plan.decide_add_need(case, None, agency(IDENTIFIER), REGISTRY, add(), NOW)
    assert isinstance(added, NeedAdded) and isinstance(referred, NeedReferred)
    assert referred.provider_id == "kg-ngo-osh-legal-clinic" and referred.attempt == 0
    assert referred.referral_id == referral_id_for(CASE, Service.LEGAL_AID)
    assert referred.referred_by == IDENTIFIER
    named = add(service=Service.EDUCATION, provider_id="kg-io-bishkek")
    [_, to_io] = plan.decide_add_need(case, None, agency(IDENTIFIER), REGISTRY, named, NOW)
    assert isinstance(to_io, NeedReferred) and to_io.provider_id == "kg-io-bishkek"
    kept = tuple(a for a in REGISTRY.agencies if Service.EDUCATION not in a.services)
    without = AgencyRegistry.model_validate({**REGISTRY.model_dump(), "agencies": kept})
    education = add(service=Service.EDUCATION)
    [_, unmet] = plan.decide_add_need(case, None, agency(IDENTIFIER), without, education, NOW)
    assert isinstance(unmet, NeedUnmet) and unmet.reason is UnmetReason.NO_PROVIDER
    # The coordinating body may add a need too.
    assert plan.decide_add_need(
        case, None, agency(COORDINATING_BODY), REGISTRY, add(COORDINATING_BODY), NOW
    )


def test_who_may_change_the_plan_and_on_which_case() -> None:
    case = case_of()
    assert refused(
        lambda: plan.decide_add_need(case, None, agency(OTHER), REGISTRY, add(OTHER), NOW)
    ) == [("agency_id", ErrorCode.NOT_AUTHORISED)]
    assert refused(
        lambda: plan.decide_add_need(None, None, agency(IDENTIFIER), REGISTRY, add(), NOW)
    ) == [("case_id", ErrorCode.UNKNOWN_ID)]
    closed = case_of(
        CaseClosed(
            case_id=CASE, owner=IDENTIFIER, closed_by=IDENTIFIER, reason=ClosureReason.LOST_CONTACT
        )
    )
    assert refused(
        lambda: plan.decide_add_need(closed, None, agency(IDENTIFIER), REGISTRY, add(), NOW)
    ) == [("case_id", ErrorCode.INVALID_STATE)]
    abroad = case_of(
        CaseClosed(
            case_id=CASE,
            owner=IDENTIFIER,
            closed_by=IDENTIFIER,
            reason=ClosureReason.TRANSFERRED_ABROAD,
        )
    )  # closed_referred is closed too
    assert refused(
        lambda: plan.decide_refer_need(abroad, None, agency(IDENTIFIER), REGISTRY, refer(), NOW)
    ) == [("case_id", ErrorCode.INVALID_STATE)]
    erased = dataclasses.replace(case, erased=True)
    assert refused(
        lambda: plan.decide_refer_need(erased, None, agency(IDENTIFIER), REGISTRY, refer(), NOW)
    ) == [("case_id", ErrorCode.INVALID_STATE)]
    # After a transfer the new owner manages the plan, the identifying agency no longer.
    moved = case_of(CaseTransferred(case_id=CASE, from_agency=IDENTIFIER, to_agency=OTHER))
    assert plan.decide_add_need(moved, None, agency(OTHER), REGISTRY, add(OTHER), NOW)
    assert refused(
        lambda: plan.decide_add_need(moved, None, agency(IDENTIFIER), REGISTRY, add(), NOW)
    ) == [("agency_id", ErrorCode.NOT_AUTHORISED)]


def test_a_named_provider_must_be_able_to_take_the_person() -> None:
    case = case_of()

    def add_to(provider: str) -> list[tuple[str, ErrorCode]]:
        command = add(service=Service.SHELTER, provider_id=provider)
        return refused(
            lambda: plan.decide_add_need(case, None, agency(IDENTIFIER), REGISTRY, command, NOW)
        )

    assert add_to("kg-nowhere") == [("provider_id", ErrorCode.UNKNOWN_AGENCY)]
    assert add_to("kg-health-osh") == [("provider_id", ErrorCode.INVALID_FIELD)]  # no shelter
    assert add_to(MENS_SHELTER) == [("provider_id", ErrorCode.INVALID_FIELD)]  # she is a woman


def test_a_need_on_the_plan_is_not_added_twice_nor_one_the_person_declined() -> None:
    case = case_of()
    need = fold_need(CASE, Service.SHELTER, [], referrals([request()]))
    command = add(service=Service.SHELTER)
    assert refused(
        lambda: plan.decide_add_need(case, need, agency(IDENTIFIER), REGISTRY, command, NOW)
    ) == [("service", ErrorCode.INVALID_STATE)]
    record = identified().model_copy(
        update={
            "consent": identified().consent.model_copy(
                update={"declined_services": frozenset({Service.LEGAL_AID})}
            )
        }
    )
    declining = Case(record, None, False, False, owner=IDENTIFIER)
    assert refused(
        lambda: plan.decide_add_need(declining, None, agency(IDENTIFIER), REGISTRY, add(), NOW)
    ) == [("service", ErrorCode.INVALID_STATE)]


def test_re_referral_of_an_open_or_unmet_need_only() -> None:
    case, me = case_of(), agency(IDENTIFIER)
    active = fold_need(CASE, Service.SHELTER, [], referrals([request()]))
    assert refused(lambda: plan.decide_refer_need(case, active, me, REGISTRY, refer(), NOW)) == [
        ("service", ErrorCode.INVALID_STATE)
    ]
    accepted = ReferralAccepted(
        referral_id=FIRST, case_id=CASE, provider_id=OSH_SHELTER, accepted_at=NOW
    )
    done = ReferralCompleted(referral_id=FIRST, case_id=CASE, provider_id=OSH_SHELTER, delivered=())
    met = fold_need(CASE, Service.SHELTER, [], referrals([request(), accepted, done]))
    with pytest.raises(CommandRejection) as caught:
        plan.decide_refer_need(case, met, me, REGISTRY, refer(), NOW)
    [error] = caught.value.errors
    assert (error.field, error.code, error.reason) == (
        "service",
        ErrorCode.INVALID_STATE,
        "the need is met",
    )
    assert refused(lambda: plan.decide_refer_need(case, None, me, REGISTRY, refer(), NOW)) == [
        ("service", ErrorCode.INVALID_STATE)
    ]
    # Open after a decline: the hub's choice skips the decliner; the owner may name it again.
    open_need = fold_need(CASE, Service.SHELTER, [], referrals([request(), declined()]))
    [chosen] = plan.decide_refer_need(case, open_need, me, REGISTRY, refer(), NOW)
    assert isinstance(chosen, NeedReferred) and chosen.provider_id == BISHKEK_SHELTER
    assert chosen.attempt == 1
    assert chosen.referral_id == referral_id_for_attempt(CASE, Service.SHELTER, 1)
    [again] = plan.decide_refer_need(
        case, open_need, me, REGISTRY, refer(provider_id=OSH_SHELTER), NOW
    )
    assert isinstance(again, NeedReferred) and again.provider_id == OSH_SHELTER


def test_re_referral_with_nobody_left() -> None:
    case, me = case_of(), agency(IDENTIFIER)
    second = referral_id_for_attempt(CASE, Service.SHELTER, 1)
    both = referrals(
        [request(), declined()],
        [request(second, BISHKEK_SHELTER, 1), declined(second, BISHKEK_SHELTER)],
    )
    open_need = fold_need(CASE, Service.SHELTER, [order(1)], both)
    [unmet] = plan.decide_refer_need(case, open_need, me, REGISTRY, refer(), NOW)
    assert isinstance(unmet, NeedUnmet) and unmet.reason is UnmetReason.NO_CAPACITY
    unmet_need = fold_need(CASE, Service.SHELTER, [order(1), unmet], both)
    assert refused(
        lambda: plan.decide_refer_need(case, unmet_need, me, REGISTRY, refer(), NOW)
    ) == [("provider_id", ErrorCode.INVALID_STATE)]
    [named] = plan.decide_refer_need(
        case, unmet_need, me, REGISTRY, refer(provider_id=OSH_SHELTER), NOW
    )
    assert isinstance(named, NeedReferred) and named.attempt == 2


def test_a_need_is_removed_only_without_an_active_referral() -> None:
    case, me = case_of(), agency(IDENTIFIER)
    remove = RemoveNeed(
        command_id=uuid.uuid4(),
        agency_id=IDENTIFIER,
        case_id=CASE,
        service=Service.SHELTER,
        reason=NeedRemovalReason.NOT_NEEDED,
    )
    active = fold_need(CASE, Service.SHELTER, [], referrals([request()]))
    assert refused(lambda: plan.decide_remove_need(case, active, me, remove, NOW)) == [
        ("service", ErrorCode.INVALID_STATE)
    ]
    open_need = fold_need(CASE, Service.SHELTER, [], referrals([request(), declined()]))
    [removed] = plan.decide_remove_need(case, open_need, me, remove, NOW)
    assert isinstance(removed, NeedRemoved) and removed.removed_by == IDENTIFIER
    assert refused(lambda: plan.decide_remove_need(case, None, me, remove, NOW)) == [
        ("service", ErrorCode.INVALID_STATE)
    ]


# --- the hub after a decline ------------------------------------------------------------------


def test_after_a_decline_the_hub_refers_to_the_next_provider_or_records_unmet() -> None:
    case = case_of()
    open_need = fold_need(CASE, Service.SHELTER, [], referrals([request(), declined()]))
    [next_one] = plan.decide_after_decline(case, open_need, FIRST, REGISTRY, NOW)
    assert isinstance(next_one, NeedReferred)
    assert (next_one.provider_id, next_one.referred_by, next_one.attempt) == (
        BISHKEK_SHELTER,
        "hub",
        1,
    )
    second = referral_id_for_attempt(CASE, Service.SHELTER, 1)
    mixed = referrals(
        [request(), declined()],
        [
            request(second, BISHKEK_SHELTER, 1),
            declined(second, BISHKEK_SHELTER, reason=DeclineReason.PERSON_UNREACHABLE),
        ],
    )
    last = fold_need(CASE, Service.SHELTER, [order(1)], mixed)
    [unmet] = plan.decide_after_decline(case, last, second, REGISTRY, NOW)
    assert isinstance(unmet, NeedUnmet) and unmet.reason is UnmetReason.ALL_DECLINED
    # A stale decline (not the latest attempt) and a closed case change nothing.
    assert plan.decide_after_decline(case, last, FIRST, REGISTRY, NOW) == []
    closed = dataclasses.replace(case, status=case.status.CLOSED)
    assert plan.decide_after_decline(closed, open_need, FIRST, REGISTRY, NOW) == []


# --- reassignment and revocation ---------------------------------------------------------------


def reassign(by: str = COORDINATING_BODY, **kw: Any) -> ReassignReferral:
    return ReassignReferral(
        command_id=uuid.uuid4(),
        agency_id=by,
        referral_id=FIRST,
        reason=ReassignReason.PROVIDER_UNRESPONSIVE,
        **kw,
    )


def test_only_the_coordinating_body_reassigns_an_active_referral() -> None:
    case, referral = case_of(), fold_referral([request()])
    [revoked] = plan.decide_reassign(
        referral, case, agency(COORDINATING_BODY), REGISTRY, reassign()
    )
    assert isinstance(revoked, ReferralRevoked) and revoked.reason is RevokeReason.REASSIGNED
    assert refused(
        lambda: plan.decide_reassign(
            referral, case, agency(IDENTIFIER), REGISTRY, reassign(IDENTIFIER)
        )
    ) == [("agency_id", ErrorCode.NOT_AUTHORISED)]
    to_self = reassign(provider_id=OSH_SHELTER)
    assert refused(
        lambda: plan.decide_reassign(referral, case, agency(COORDINATING_BODY), REGISTRY, to_self)
    ) == [("provider_id", ErrorCode.INVALID_FIELD)]
    gone = fold_referral([request(), declined()])
    assert refused(
        lambda: plan.decide_reassign(gone, case, agency(COORDINATING_BODY), REGISTRY, reassign())
    ) == [("referral_id", ErrorCode.INVALID_STATE)]


def test_a_reassigned_need_goes_elsewhere() -> None:
    case = case_of()
    revoked_event = ReferralRevoked(
        referral_id=FIRST,
        case_id=CASE,
        revoked_by=COORDINATING_BODY,
        reason=RevokeReason.REASSIGNED,
    )
    history = [request(), revoked_event]
    revoked = fold_referral(history)
    assert revoked is not None
    need = fold_need(CASE, Service.SHELTER, [], referrals(history))
    [moved] = plan.decide_reassigned_need(case, need, revoked, REGISTRY, reassign(), NOW)
    assert isinstance(moved, NeedReferred) and moved.provider_id == BISHKEK_SHELTER
    assert moved.reassign_reason is ReassignReason.PROVIDER_UNRESPONSIVE
    assert moved.referred_by == COORDINATING_BODY


def test_the_case_owner_and_the_coordinating_body_may_revoke_too() -> None:
    referral = fold_referral([request()])
    moved = case_of(CaseTransferred(case_id=CASE, from_agency=IDENTIFIER, to_agency=OTHER))

    def revoke(by: str) -> RevokeReferral:
        return RevokeReferral(
            command_id=uuid.uuid4(),
            agency_id=by,
            referral_id=FIRST,
            reason=RevokeReason.REFERRED_IN_ERROR,
        )

    for by in (IDENTIFIER, OTHER, COORDINATING_BODY):  # referrer, owner, coordinating body
        [revoked] = domain.decide_revoke(referral, moved, agency(by), revoke(by))
        assert isinstance(revoked, ReferralRevoked)
    assert refused(
        lambda: domain.decide_revoke(
            referral, moved, agency(BISHKEK_SHELTER), revoke(BISHKEK_SHELTER)
        )
    ) == [("agency_id", ErrorCode.NOT_AUTHORISED)]


# --- escalation, delivery, closure, feed -------------------------------------------------------


def test_a_referral_waiting_too_long_is_escalated_once() -> None:
    waitlisted = ReferralWaitlisted(
        referral_id=FIRST, case_id=CASE, provider_id=OSH_SHELTER, position=1
    )
    state = fold_referral([request(), waitlisted])
    due = NOW + dt.timedelta(days=14)
    cause = EscalationCause.WAITLISTED_TOO_LONG
    assert domain.decide_escalation(state, NOW, COORDINATING_BODY, cause, due) == []
    [escalated] = domain.decide_escalation(state, due, COORDINATING_BODY, cause, due)
    assert isinstance(escalated, ReferralEscalated) and escalated.cause is cause
    assert escalated.overdue_since == due
    after = fold_referral([request(), waitlisted, escalated])
    assert domain.decide_escalation(after, due, COORDINATING_BODY, cause, due) == []
    # A waitlisted referral is not a no-answer one.
    late = NOW + dt.timedelta(days=30)
    assert domain.decide_escalation(state, late, COORDINATING_BODY) == []
    # Old events without a cause were no-answer escalations.
    old = ReferralEscalated.model_validate(
        {**escalated.model_dump(exclude={"cause"}), "overdue_since": NOW}
    )
    assert old.cause is EscalationCause.NO_ANSWER


def test_the_provider_records_service_delivered_on_an_accepted_referral() -> None:
    items = (DeliveredItem(service=Service.SHELTER, quantity=3, unit=DeliveryUnit.DAY),)
    command = DeliverService(
        command_id=uuid.uuid4(), agency_id=OSH_SHELTER, referral_id=FIRST, delivered=items
    )
    assert refused(lambda: domain.decide_deliver(fold_referral([request()]), command)) == [
        ("referral_id", ErrorCode.INVALID_STATE)
    ]
    accepted = ReferralAccepted(
        referral_id=FIRST, case_id=CASE, provider_id=OSH_SHELTER, accepted_at=NOW
    )
    state = fold_referral([request(), accepted])
    [delivered] = domain.decide_deliver(state, command)
    assert isinstance(delivered, ReferralServiceDelivered) and delivered.delivered == items
    after = fold_referral([request(), accepted, delivered])
    assert after is not None and after.status is Status.ACCEPTED
    stranger = command.model_copy(update={"agency_id": BISHKEK_SHELTER})
    assert refused(lambda: domain.decide_deliver(state, stranger)) == [
        ("agency_id", ErrorCode.NOT_AUTHORISED)
    ]


def test_a_case_closes_naming_every_active_referral_to_revoke() -> None:
    case, me = case_of(), agency(IDENTIFIER)
    other = uuid.uuid4()

    def close(*named: uuid.UUID) -> CloseCase:
        return CloseCase(
            command_id=uuid.uuid4(),
            agency_id=IDENTIFIER,
            case_id=CASE,
            reason=ClosureReason.LOST_CONTACT,
            revoke_referrals=named,
        )

    assert refused(lambda: decide_close(case, close(FIRST), me, [FIRST, other])) == [
        ("case_id", ErrorCode.INVALID_STATE)
    ]
    assert refused(lambda: decide_close(case, close(uuid.uuid4()), me, [])) == [
        ("revoke_referrals", ErrorCode.INVALID_FIELD)
    ]
    [closed] = decide_close(case, close(other, FIRST), me, [FIRST, other])
    assert isinstance(closed, CaseClosed)
    assert closed.revoked_referrals == tuple(sorted([FIRST, other]))
    # Old events without the field are still valid.
    assert CaseClosed.model_validate(closed.model_dump(exclude={"revoked_referrals"}))


def test_need_events_go_to_the_coordinating_body_identifier_and_owner() -> None:
    referred = order(1)
    history: list[Event] = [identified()]
    assert addressees(referred, history, COORDINATING_BODY) == (COORDINATING_BODY, IDENTIFIER)
    moved = [*history, CaseTransferred(case_id=CASE, from_agency=IDENTIFIER, to_agency=OTHER)]
    assert addressees(referred, moved, COORDINATING_BODY) == (
        COORDINATING_BODY,
        IDENTIFIER,
        OTHER,
    )


def test_referral_events_reach_the_identifying_agency_and_the_owner_now() -> None:
    accepted = ReferralAccepted(
        referral_id=FIRST, case_id=CASE, provider_id=MENS_SHELTER, accepted_at=NOW
    )
    history: list[Event] = [identified(), request(provider=MENS_SHELTER)]
    before = addressees(accepted, history)
    assert IDENTIFIER in before and OTHER not in before
    moved = [*history, CaseTransferred(case_id=CASE, from_agency=IDENTIFIER, to_agency=OTHER)]
    after = addressees(accepted, moved)
    assert IDENTIFIER in after and OTHER in after and MENS_SHELTER in after


def test_case_events_that_ask_an_agency_to_act_reach_its_feed() -> None:
    asked = CaseTransferRequested(
        case_id=CASE,
        from_agency=IDENTIFIER,
        to_agency=OTHER,
        requested_by=COORDINATING_BODY,
        reason=TransferReason.PERSON_RELOCATED,
    )
    assert set(addressees(asked, [identified()], COORDINATING_BODY)) == {
        OTHER,
        IDENTIFIER,
        COORDINATING_BODY,
    }
    followup = uuid.uuid4()
    scheduled = FollowUpScheduled(
        case_id=CASE,
        followup_id=followup,
        due_on=NOW.date(),
        purpose=FollowUpPurpose.POST_DISCHARGE,
        scheduled_by=MENS_SHELTER,
        recorded_at=NOW,
    )
    overdue = FollowUpOverdue(
        case_id=CASE, followup_id=followup, due_on=NOW.date(), escalated_to=COORDINATING_BODY
    )
    assert set(addressees(overdue, [identified(), scheduled], COORDINATING_BODY)) == {
        COORDINATING_BODY,
        MENS_SHELTER,
        IDENTIFIER,
    }
    review = uuid.uuid4()
    requested = CaseReviewRequested(
        case_id=CASE,
        review_id=review,
        requested_by="kg-ngo-osh-legal-clinic",
        grounds=ReviewGrounds.NEW_INFORMATION,
        recorded_at=NOW,
    )
    decided = CaseReviewDecided(
        case_id=CASE,
        review_id=review,
        outcome=ReviewOutcome.UPHELD,
        decided_by=COORDINATING_BODY,
    )
    assert "kg-ngo-osh-legal-clinic" in addressees(
        decided, [identified(), requested], COORDINATING_BODY
    )


def test_the_feed_copies_exactly_the_case_events_its_durable_receives() -> None:
    from typing import get_args

    from services.referral.feed import CaseEventForFeed
    from services.runtime.service_table import CASE_EVENTS_FOR_FEED

    assert set(get_args(CaseEventForFeed)) == set(CASE_EVENTS_FOR_FEED)
