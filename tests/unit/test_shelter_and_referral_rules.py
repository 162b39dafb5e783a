"""Shelter beds, waiting lists and the referral state machine, as pure rules."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.commands import (
    AcceptReferral,
    Consent,
    DischargeFromShelter,
    RegisterShelter,
    RevokeReferral,
)
from contracts.events import (
    Event,
    ReferralRequested,
    ReferralRevoked,
    ShelterAdmitted,
    ShelterPlacementRefused,
    ShelterRegistered,
    ShelterWaitlisted,
    ShelterWaitlistLeft,
    VictimIdentified,
)
from contracts.replies import CommandRejection, ErrorCode
from contracts.vocabulary import (
    AgeBand,
    AgencyKind,
    DeclineReason,
    DischargeReason,
    PersonalField,
    Region,
    RevokeReason,
    Sector,
    Service,
    Sex,
    ShelterCategory,
)
from services.agencies.registry import load_registry
from services.case.referrals import Status, fold_referral
from services.case.shelter_beds import fold_shelter
from services.referral import domain as referral
from services.shelter import domain as shelter

REGISTRY = load_registry()
NOW = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)
MEN = "kg-ngo-bishkek-mens-shelter"
CRISIS = "kg-ngo-bishkek-crisis-centre"  # takes women and children


def _request(category: ShelterCategory, provider: str = MEN) -> ReferralRequested:
    return ReferralRequested(
        referral_id=uuid.uuid4(),
        case_id=uuid.uuid4(),
        service=Service.SHELTER,
        provider_id=provider,
        referrer_id="kg-mia-bishkek",
        region=Region.BISHKEK_CITY,
        sex=Sex.MALE,
        age_band=AgeBand.FROM_25_TO_34,
        is_child=False,
        placement_category=category,
        shared_fields=(),
        requested_at=NOW,
        respond_by=NOW + dt.timedelta(days=1),
    )


def _registered(beds: dict[ShelterCategory, int], shelter_id: str = MEN) -> list[Event]:
    return [ShelterRegistered(shelter_id=shelter_id, region=Region.BISHKEK_CITY, capacity=beds)]


def _apply(history: list[Event], new: list[Event]) -> list[Event]:
    history.extend(new)
    return new


def test_full_shelter_waitlists_then_discharge_admits_the_next_in_line() -> None:
    history = _registered({ShelterCategory.MEN: 1})
    first, second, third = (_request(ShelterCategory.MEN) for _ in range(3))
    [a] = _apply(history, shelter.decide_placement(fold_shelter(MEN, history), first))
    [w1] = _apply(history, shelter.decide_placement(fold_shelter(MEN, history), second))
    [w2] = _apply(history, shelter.decide_placement(fold_shelter(MEN, history), third))
    assert isinstance(a, ShelterAdmitted)
    assert isinstance(w1, ShelterWaitlisted) and w1.position == 1
    assert isinstance(w2, ShelterWaitlisted) and w2.position == 2
    discharge = DischargeFromShelter(
        command_id=uuid.uuid4(),
        agency_id=MEN,
        referral_id=first.referral_id,
        reason=DischargeReason.REHABILITATION_COMPLETED,
    )
    out, admitted = _apply(history, shelter.decide_discharge(fold_shelter(MEN, history), discharge))
    assert out.referral_id == first.referral_id
    assert isinstance(admitted, ShelterAdmitted)
    assert admitted.referral_id == second.referral_id and admitted.from_waiting_list
    state = fold_shelter(MEN, history)
    assert state.occupied(ShelterCategory.MEN) == 1
    assert [s.referral_id for s in state.waiting] == [third.referral_id]


def test_redelivered_referral_is_not_placed_twice() -> None:
    history = _registered({ShelterCategory.MEN: 2})
    request = _request(ShelterCategory.MEN)
    _apply(history, shelter.decide_placement(fold_shelter(MEN, history), request))
    assert shelter.decide_placement(fold_shelter(MEN, history), request) == []


@pytest.mark.parametrize(
    ("history", "reason"),
    [
        ([], DeclineReason.SHELTER_NOT_REGISTERED),
        (_registered({ShelterCategory.MEN: 3}), DeclineReason.CATEGORY_NOT_ACCEPTED),
    ],
)
def test_a_child_is_never_placed_where_children_are_not_accepted(
    history: list[Event], reason: DeclineReason
) -> None:
    [refused] = shelter.decide_placement(
        fold_shelter(MEN, history), _request(ShelterCategory.CHILDREN)
    )
    assert isinstance(refused, ShelterPlacementRefused) and refused.reason is reason


def test_register_rejects_categories_the_registry_does_not_list() -> None:
    agency = REGISTRY.get(MEN)
    command = RegisterShelter(
        command_id=uuid.uuid4(), agency_id=MEN, capacity={ShelterCategory.CHILDREN: 2}
    )
    with pytest.raises(CommandRejection) as caught:
        shelter.decide_register(agency, fold_shelter(MEN, []), command)
    assert caught.value.errors[0].field == "capacity"


def _identified(**overrides: object) -> VictimIdentified:
    values: dict[str, object] = dict(
        case_id=uuid.uuid4(),
        agency_id="kg-border-batken",
        agency_kind=AgencyKind.BORDER_SERVICE,
        sector=Sector.GOVERNMENT,
        region=Region.BATKEN,
        interviewed_on=NOW.date(),
        sex=Sex.FEMALE,
        age_band=AgeBand.FROM_12_TO_17,
        is_child=True,
        citizenship="KG",
        country_of_exploitation=None,
        forms_of_exploitation=(),
        vulnerabilities=(),
        personal_data={},
        purposes=(),
        needs=(Service.SHELTER, Service.LEGAL_AID),
        consent=Consent(),
    )
    values.update(overrides)
    return VictimIdentified.model_validate(values)


def _plan(case: VictimIdentified) -> dict[Service, ReferralRequested]:
    planned = referral.plan_referrals(case, REGISTRY, NOW, dt.timedelta(hours=72))
    return {r.service: r for _, r in planned}


def test_a_child_gets_guardianship_and_a_children_bed() -> None:
    plan = _plan(_identified())
    assert set(plan) == {Service.SHELTER, Service.LEGAL_AID, Service.GUARDIANSHIP}
    assert plan[Service.GUARDIANSHIP].provider_id == "kg-social-batken"  # same region first
    bed = plan[Service.SHELTER]
    assert bed.placement_category is ShelterCategory.CHILDREN
    provider = REGISTRY.get(bed.provider_id)
    assert provider is not None and ShelterCategory.CHILDREN in provider.shelter_categories


def test_consent_limits_services_and_shared_fields() -> None:
    consent = Consent(
        declined_services=frozenset({Service.LEGAL_AID}),
        withheld_fields=frozenset({PersonalField.PHONE}),
    )
    plan = _plan(_identified(is_child=False, age_band=AgeBand.FROM_25_TO_34, consent=consent))
    assert set(plan) == {Service.SHELTER}
    assert PersonalField.PHONE not in plan[Service.SHELTER].shared_fields
    assert PersonalField.FULL_NAME in plan[Service.SHELTER].shared_fields


def test_only_the_provider_answers_and_only_the_referrer_revokes() -> None:
    request = _request(ShelterCategory.MEN)
    state = fold_referral([request])
    stranger = AcceptReferral(
        command_id=uuid.uuid4(), agency_id="kg-io-bishkek", referral_id=request.referral_id
    )
    with pytest.raises(CommandRejection) as caught:
        referral.decide_accept(state, stranger, NOW)
    assert caught.value.errors[0].code is ErrorCode.NOT_AUTHORISED
    revoke = RevokeReferral(
        command_id=uuid.uuid4(),
        agency_id=MEN,
        referral_id=request.referral_id,
        reason=RevokeReason.REFERRED_IN_ERROR,
    )
    with pytest.raises(CommandRejection):
        referral.decide_revoke(state, None, None, revoke)


def test_answers_follow_the_state_machine() -> None:
    request = _request(ShelterCategory.MEN)
    accept = AcceptReferral(command_id=uuid.uuid4(), agency_id=MEN, referral_id=request.referral_id)
    accepted = referral.decide_accept(fold_referral([request]), accept, NOW)
    state = fold_referral([request, *accepted])
    assert state is not None and state.status is Status.ACCEPTED
    with pytest.raises(CommandRejection) as caught:
        referral.decide_accept(state, accept, NOW)
    assert caught.value.errors[0].code is ErrorCode.INVALID_STATE
    with pytest.raises(CommandRejection) as unknown:
        referral.decide_accept(None, accept, NOW)
    assert unknown.value.errors[0].code is ErrorCode.UNKNOWN_ID
    assert str(request.referral_id) not in unknown.value.errors[0].reason


def test_escalation_only_once_and_only_when_overdue() -> None:
    request = _request(ShelterCategory.MEN)
    state = fold_referral([request])
    assert referral.decide_escalation(state, NOW, "kg-coordinating-body") == []
    late = request.respond_by + dt.timedelta(seconds=1)
    [escalated] = referral.decide_escalation(state, late, "kg-coordinating-body")
    after = fold_referral([request, escalated])
    assert referral.decide_escalation(after, late, "kg-coordinating-body") == []


def test_a_revoked_referral_leaves_the_waiting_list_and_is_not_admitted() -> None:
    history = _registered({ShelterCategory.MEN: 1})
    resident, revoked, next_in_line = (_request(ShelterCategory.MEN) for _ in range(3))
    for request in (resident, revoked, next_in_line):
        _apply(history, shelter.decide_placement(fold_shelter(MEN, history), request))
    revocation = ReferralRevoked(
        referral_id=revoked.referral_id,
        case_id=revoked.case_id,
        revoked_by="kg-mia-bishkek",
        reason=RevokeReason.PERSON_WITHDREW,
    )
    [left] = _apply(history, shelter.decide_revocation(fold_shelter(MEN, history), revocation))
    assert isinstance(left, ShelterWaitlistLeft)
    assert shelter.decide_revocation(fold_shelter(MEN, history), revocation) == []
    discharge = DischargeFromShelter(
        command_id=uuid.uuid4(),
        agency_id=MEN,
        referral_id=resident.referral_id,
        reason=DischargeReason.LEFT_VOLUNTARILY,
    )
    _, admitted = shelter.decide_discharge(fold_shelter(MEN, history), discharge)
    assert isinstance(admitted, ShelterAdmitted)
    assert admitted.referral_id == next_in_line.referral_id


def test_a_free_bed_never_goes_to_a_referral_that_ended_before_the_shelter_heard() -> None:
    """A decline or revocation reaches the shelter through its consumer; a discharge a moment
    later must not admit that person: the shelter service says which referrals have ended."""
    history = _registered({ShelterCategory.MEN: 1})
    resident, declined, next_in_line = (_request(ShelterCategory.MEN) for _ in range(3))
    for request in (resident, declined, next_in_line):
        _apply(history, shelter.decide_placement(fold_shelter(MEN, history), request))
    discharge = DischargeFromShelter(
        command_id=uuid.uuid4(),
        agency_id=MEN,
        referral_id=resident.referral_id,
        reason=DischargeReason.LEFT_VOLUNTARILY,
    )
    ended = frozenset({declined.referral_id})
    _, left, admitted = shelter.decide_discharge(fold_shelter(MEN, history), discharge, ended)
    assert isinstance(left, ShelterWaitlistLeft) and left.referral_id == declined.referral_id
    assert isinstance(admitted, ShelterAdmitted)
    assert admitted.referral_id == next_in_line.referral_id


def _register(beds: dict[ShelterCategory, int], shelter_id: str = MEN) -> RegisterShelter:
    return RegisterShelter(command_id=uuid.uuid4(), agency_id=shelter_id, capacity=beds)


def _discharge(referral_id: uuid.UUID, shelter_id: str = MEN) -> DischargeFromShelter:
    return DischargeFromShelter(
        command_id=uuid.uuid4(),
        agency_id=shelter_id,
        referral_id=referral_id,
        reason=DischargeReason.REHABILITATION_COMPLETED,
    )


def _placed(history: list[Event], request: ReferralRequested, shelter_id: str = MEN) -> list[Event]:
    state = fold_shelter(shelter_id, history)
    return _apply(history, list(shelter.decide_placement(state, request)))


def test_beds_added_by_re_registration_go_to_those_waiting_first_in_order() -> None:
    history = _registered({ShelterCategory.MEN: 1})
    resident, first, second, third = (_request(ShelterCategory.MEN) for _ in range(4))
    for request in (resident, first, second, third):
        _placed(history, request)
    agency = REGISTRY.get(MEN)
    more = shelter.decide_register(
        agency, fold_shelter(MEN, history), _register({ShelterCategory.MEN: 2})
    )
    registered, admitted = _apply(history, list(more))
    assert isinstance(registered, ShelterRegistered)
    assert isinstance(admitted, ShelterAdmitted) and admitted.from_waiting_list
    assert admitted.referral_id == first.referral_id
    # The next newcomer queues behind the people already waiting, not in front of them.
    newcomer = _request(ShelterCategory.MEN)
    [waitlisted] = _placed(history, newcomer)
    assert isinstance(waitlisted, ShelterWaitlisted) and waitlisted.position == 3
    even_more = shelter.decide_register(
        agency, fold_shelter(MEN, history), _register({ShelterCategory.MEN: 4})
    )
    assert [e.referral_id for e in even_more if isinstance(e, ShelterAdmitted)] == [
        second.referral_id,
        third.referral_id,
    ]


def test_a_newcomer_never_takes_a_bed_someone_is_waiting_for() -> None:
    # A history written before added beds were served: a free bed and someone waiting.
    history = _registered({ShelterCategory.MEN: 1})
    resident, waiting = _request(ShelterCategory.MEN), _request(ShelterCategory.MEN)
    _placed(history, resident)
    _placed(history, waiting)
    history.extend(_registered({ShelterCategory.MEN: 2}))
    newcomer = _request(ShelterCategory.MEN)
    admitted, waitlisted = _placed(history, newcomer)
    assert isinstance(admitted, ShelterAdmitted) and admitted.referral_id == waiting.referral_id
    assert isinstance(waitlisted, ShelterWaitlisted)
    assert waitlisted.referral_id == newcomer.referral_id and waitlisted.position == 1


@pytest.mark.parametrize(
    "beds",
    [
        {ShelterCategory.WOMEN: 1, ShelterCategory.CHILDREN: 3},
        {ShelterCategory.CHILDREN: 3},  # dropping the category altogether
    ],
)
def test_re_registering_with_fewer_beds_than_residents_is_rejected(
    beds: dict[ShelterCategory, int],
) -> None:
    history = _registered({ShelterCategory.WOMEN: 2, ShelterCategory.CHILDREN: 1}, CRISIS)
    for _ in range(2):
        _placed(history, _request(ShelterCategory.WOMEN, CRISIS), CRISIS)
    state = fold_shelter(CRISIS, history)
    with pytest.raises(CommandRejection) as caught:
        shelter.decide_register(REGISTRY.get(CRISIS), state, _register(beds, CRISIS))
    [error] = caught.value.errors
    assert error.field == "capacity.women" and error.code is ErrorCode.INVALID_STATE
    assert error.reason == "fewer beds than current residents"  # no submitted or stored figure
    as_many = {ShelterCategory.WOMEN: 2, ShelterCategory.CHILDREN: 0}
    [registered] = shelter.decide_register(REGISTRY.get(CRISIS), state, _register(as_many, CRISIS))
    assert isinstance(registered, ShelterRegistered)


_CATEGORIES = (ShelterCategory.WOMEN, ShelterCategory.CHILDREN)
_steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("register"),
            st.dictionaries(st.sampled_from(_CATEGORIES), st.integers(0, 3), min_size=1),
        ),
        st.tuples(st.just("refer"), st.sampled_from(_CATEGORIES)),
        st.tuples(st.just("discharge"), st.integers(0, 10)),
        st.tuples(st.just("revoke"), st.integers(0, 10)),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(
    first=st.dictionaries(st.sampled_from(_CATEGORIES), st.integers(0, 3), min_size=1),
    steps=_steps,
)
def test_no_one_waits_while_a_bed_of_their_category_is_free(
    first: dict[ShelterCategory, int], steps: list[tuple[str, object]]
) -> None:
    agency = REGISTRY.get(CRISIS)
    history: list[Event] = []
    decisions = [("register", first), *steps]
    for kind, arg in decisions:
        state = fold_shelter(CRISIS, history)
        residents, waiting = list(state.residents), [s.referral_id for s in state.waiting]
        new: list[Event] = []
        try:
            if kind == "register":
                assert isinstance(arg, dict)
                new = list(shelter.decide_register(agency, state, _register(arg, CRISIS)))
            elif kind == "refer":
                assert isinstance(arg, ShelterCategory)
                new = list(shelter.decide_placement(state, _request(arg, CRISIS)))
            elif kind == "discharge" and residents:
                assert isinstance(arg, int)
                referral_id = residents[arg % len(residents)]
                new = list(shelter.decide_discharge(state, _discharge(referral_id, CRISIS)))
            elif kind == "revoke" and waiting:
                assert isinstance(arg, int)
                stay = state.waiting[arg % len(waiting)]
                revoked = ReferralRevoked(
                    referral_id=stay.referral_id,
                    case_id=stay.case_id,
                    revoked_by="kg-mia-bishkek",
                    reason=RevokeReason.PERSON_WITHDREW,
                )
                new = list(shelter.decide_revocation(state, revoked))
        except CommandRejection as rejection:
            # Only a registration below the residents may be refused; it writes nothing.
            assert kind == "register" and all(
                e.code is ErrorCode.INVALID_STATE for e in rejection.errors
            )
        for event in new:
            if isinstance(event, ShelterAdmitted) and event.from_waiting_list:
                before = fold_shelter(CRISIS, history)
                head = next(s for s in before.waiting if s.category is event.category)
                assert head.referral_id == event.referral_id  # first come, first served
            history.append(event)
        after = fold_shelter(CRISIS, history)
        for category in _CATEGORIES:
            assert after.occupied(category) <= after.capacity.get(category, 0)
            assert not (
                after.has_bed(category) and any(s.category is category for s in after.waiting)
            )
