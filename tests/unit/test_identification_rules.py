"""The identification criteria and who may identify, as pure rules."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from contracts.commands import CriteriaAnswers, PersonalData, ScreeningInterview
from contracts.events import VictimIdentified, VictimNotIdentified
from contracts.replies import CommandRejection, ErrorCode
from contracts.vocabulary import Act, AgencyKind, Means, Purpose, Region, Sex
from services.agencies.registry import load_registry
from services.identifier.domain import check_may_identify, decide_screening, unmet_criteria

ACT = frozenset({Act.RECRUITMENT})
MEANS = frozenset({Means.DECEPTION})
PURPOSE = frozenset({Purpose.FORCED_LABOUR})
REGISTRY = load_registry()


@pytest.mark.parametrize(
    ("acts", "means", "purposes", "is_child", "unmet"),
    [
        (ACT, MEANS, PURPOSE, False, []),
        (ACT, frozenset(), PURPOSE, False, ["means"]),
        (ACT, frozenset(), PURPOSE, True, []),  # a child needs no means
        (frozenset(), MEANS, PURPOSE, True, ["act"]),
        (ACT, MEANS, frozenset(), False, ["purpose"]),
        (frozenset(), frozenset(), frozenset(), False, ["act", "means", "purpose"]),
        (frozenset(), frozenset(), frozenset(), True, ["act", "purpose"]),
    ],
)
def test_criteria_table(
    acts: frozenset[Act],
    means: frozenset[Means],
    purposes: frozenset[Purpose],
    is_child: bool,
    unmet: list[str],
) -> None:
    answers = CriteriaAnswers(acts=acts, means=means, purposes=purposes)
    assert [u.criterion for u in unmet_criteria(answers, is_child)] == unmet


def test_prosecution_may_not_identify_even_if_the_registry_says_so() -> None:
    prosecutor = REGISTRY.get("kg-prosecutor-general")
    assert prosecutor is not None and prosecutor.kind is AgencyKind.PROSECUTION
    forced = prosecutor.model_copy(update={"may_identify": True})
    with pytest.raises(CommandRejection) as caught:
        check_may_identify(forced, forced.id)
    assert caught.value.errors[0].code is ErrorCode.NOT_AUTHORISED
    assert "prosecution" in caught.value.errors[0].reason


def test_ngo_without_agreement_may_not_identify_but_with_one_may() -> None:
    clinic = REGISTRY.get("kg-ngo-osh-legal-clinic")
    centre = REGISTRY.get("kg-ngo-osh-crisis-centre")
    assert clinic is not None and centre is not None
    with pytest.raises(CommandRejection) as caught:
        check_may_identify(clinic, clinic.id)
    assert caught.value.errors[0].field == "agency_id"
    assert check_may_identify(centre, centre.id) is centre


def test_unknown_agency_is_rejected_without_quoting_it() -> None:
    with pytest.raises(CommandRejection) as caught:
        check_may_identify(None, "kg-nobody")
    assert caught.value.errors[0].code is ErrorCode.UNKNOWN_AGENCY
    assert caught.value.errors[0].field == "agency_id"
    assert "kg-nobody" not in caught.value.errors[0].reason  # the sender chose that text


def _screening(
    age: int | None, means: frozenset[Means], dob: dt.date | None = None
) -> ScreeningInterview:
    return ScreeningInterview(
        command_id=uuid.uuid4(),
        agency_id="kg-border-batken",
        interviewed_on=dt.date(2026, 11, 20),
        region=Region.BATKEN,
        sex=Sex.FEMALE,
        age=age,
        citizenship="KG",
        criteria=CriteriaAnswers(acts=ACT, means=means, purposes=PURPOSE),
        personal_data=PersonalData(full_name="Canary Person", date_of_birth=dob),
    )


def test_child_identified_without_means_and_age_from_date_of_birth() -> None:
    agency = REGISTRY.get("kg-border-batken")
    assert agency is not None
    # 15 on the interview day: the birthday is the day after.
    command = _screening(None, frozenset(), dob=dt.date(2010, 11, 21))
    assert command.age_at_interview() == 15
    event = decide_screening(command, agency, uuid.uuid4().hex, {})
    assert isinstance(event, VictimIdentified)
    assert event.is_child and event.age_band == "12-17"
    assert event.sector == "government" and event.agency_kind is AgencyKind.BORDER_SERVICE


def test_adult_without_means_is_recorded_as_not_identified_with_reasons() -> None:
    agency = REGISTRY.get("kg-border-batken")
    assert agency is not None
    event = decide_screening(_screening(30, frozenset()), agency, uuid.uuid4().hex, {})
    assert isinstance(event, VictimNotIdentified)
    assert [u.criterion for u in event.unmet_criteria] == ["means"]


def test_age_or_date_of_birth_is_required() -> None:
    with pytest.raises(ValueError, match="age"):
        _screening(None, MEANS)
