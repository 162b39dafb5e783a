"""Presumed victims and the review of a non-identification, as pure rules: the presumption at
screening, `screening.decide` (services/identifier/presumed.py), the review's request,
assignment and decision (services/identifier/review.py), the fold following a later outcome
of the same case, and the urgent referrals of a presumed victim (services/referral/domain.py).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable

import pytest

from contracts.commands import (
    AssignIdentificationReview,
    Consent,
    CriteriaAnswers,
    DecideIdentificationReview,
    DecideScreening,
    RequestIdentificationReview,
)
from contracts.events import (
    CaseClosed,
    CaseErased,
    CaseReviewAssigned,
    CaseReviewDecided,
    CaseReviewRequested,
    CaseTransferred,
    ConsentWithdrawn,
    Event,
    UnmetCriterion,
    VictimIdentified,
    VictimNotIdentified,
    VictimPresumed,
)
from contracts.replies import CommandRejection, ErrorCode
from contracts.vocabulary import (
    Act,
    AgeBand,
    CaseStatus,
    ClosureReason,
    ErasureReason,
    FormOfExploitation,
    Means,
    PersonalField,
    Purpose,
    ReviewGrounds,
    ReviewOutcome,
    Service,
)
from services.case.case import Case, fold_case
from services.case.ids import referral_id_for, review_id_for_command
from services.identifier.domain import decide_intake
from services.identifier.presumed import decide_screening_outcome, profile_of
from services.identifier.review import (
    REPRESENTATIVE_KINDS,
    Review,
    decide_review_assign,
    decide_review_decision,
    decide_review_request,
    fold_reviews,
)
from services.referral.domain import plan_needs, urgent_services
from services.runtime.service_table import Sender
from services.runtime.settings import Settings, SettingsError
from tests.integration.hub_reads import screening
from tests.unit.test_case_core import CASE, IDENTIFIER, NOW, REGISTRY, agency, consent, identified

COORDINATING_BODY = "kg-coordinating-body"
OTHER_IDENTIFIER = "kg-mia-osh"  # police: identifies, does not represent the person
CRISIS_CENTRE = "kg-ngo-osh-crisis-centre"  # an NGO that identifies
LEGAL_CLINIC = "kg-ngo-osh-legal-clinic"  # an NGO that does not identify
OMBUDSPERSON = "kg-ombudsperson"
PROSECUTOR = "kg-prosecutor-general"
DUE = NOW + dt.timedelta(days=30)
MET = CriteriaAnswers(
    acts=frozenset({Act.RECRUITMENT}),
    means=frozenset({Means.DECEPTION}),
    purposes=frozenset({Purpose.FORCED_LABOUR}),
)
NO_MEANS = MET.model_copy(update={"means": frozenset()})


def refused(decide: Callable[[], list[Event]]) -> list[tuple[str, ErrorCode]]:
    with pytest.raises(CommandRejection) as rejection:
        decide()
    return [(e.field, e.code) for e in rejection.value.errors]


def refused_by(decide: Callable[..., list[Event]], *args: object) -> list[tuple[str, ErrorCode]]:
    """As `refused`, for `decide(*args)` (in a loop, without a closure over its variable)."""
    return refused(lambda: decide(*args))


def presumed(*, is_child: bool = False, needs: tuple[Service, ...] = ()) -> VictimPresumed:
    profile = profile_of(identified(is_child=is_child))
    return VictimPresumed.model_validate(
        {
            **profile,
            "needs": needs or (Service.LEGAL_AID, Service.MEDICAL, Service.SHELTER),
            "consent": Consent(withheld_fields=frozenset({PersonalField.PHONE})),
            "decision_due": DUE,
        }
    )


def not_identified() -> VictimNotIdentified:
    unmet = (UnmetCriterion(criterion="means", reason="no means found"),)
    return VictimNotIdentified.model_validate({**profile_of(identified()), "unmet_criteria": unmet})


# --- the presumption at screening -----------------------------------------------------------


def test_a_presumed_screening_records_a_presumed_victim_whatever_the_answers_so_far() -> None:
    for means in (frozenset({Means.DECEPTION}), frozenset()):
        interview = screening(IDENTIFIER, means=means).model_copy(update={"presumed": True})
        events = decide_intake(
            interview, agency(IDENTIFIER), str(CASE), uuid.uuid4(), {}, [], decision_due=DUE
        )
        record = events[0]
        assert isinstance(record, VictimPresumed)
        assert record.decision_due == DUE
        assert record.needs == (Service.LEGAL_AID, Service.SHELTER)
        assert record.consent == interview.consent
        assert record.agency_id == IDENTIFIER and record.case_id == CASE
    # Not presumed: decided at once, as before (the decision date is not used).
    plain = decide_intake(
        screening(IDENTIFIER), agency(IDENTIFIER), str(CASE), uuid.uuid4(), {}, [], DUE
    )
    assert isinstance(plain[0], VictimIdentified)


# --- the fold: a later outcome of the same case -----------------------------------------------


def test_a_later_outcome_changes_the_record_and_keeps_owner_consent_and_status() -> None:
    given = consent(purposes=frozenset({"assistance"}))
    moved = CaseTransferred(case_id=CASE, from_agency=IDENTIFIER, to_agency=CRISIS_CENTRE)
    withdrawn = ConsentWithdrawn(case_id=CASE, withdrawn_by=IDENTIFIER)
    decided = identified()
    case = fold_case([presumed(), given, moved, withdrawn, decided])
    assert case is not None
    assert case.record is decided
    assert case.owner == CRISIS_CENTRE
    assert case.consent == given and case.consent_withdrawn
    assert case.status is CaseStatus.ACTIVE and not case.erased


# --- screening.decide -------------------------------------------------------------------------


def decide(
    by: str = IDENTIFIER,
    criteria: CriteriaAnswers = MET,
    needs: frozenset[Service] | None = None,
    forms: frozenset[FormOfExploitation] | None = None,
) -> DecideScreening:
    return DecideScreening(
        command_id=uuid.uuid4(),
        agency_id=by,
        case_id=CASE,
        criteria=criteria,
        needs=needs,
        forms_of_exploitation=forms,
    )


def test_a_presumed_victim_is_identified_with_the_presumed_profile_and_personal_data() -> None:
    record = presumed()
    case = fold_case([record])
    [outcome] = decide_screening_outcome(case, decide(), agency(IDENTIFIER))
    assert isinstance(outcome, VictimIdentified)
    assert outcome.case_id == CASE
    # Sealed personal data copied as is; the means are the decision's answers (kept as data).
    assert {**profile_of(outcome), "means": ()} == {**profile_of(record), "means": ()}
    assert outcome.means == tuple(sorted(MET.means))
    assert outcome.needs == record.needs and outcome.consent == record.consent
    assert outcome.purposes == (Purpose.FORCED_LABOUR,)
    # Needs and forms given with the decision replace those of the presumption.
    forms = frozenset({FormOfExploitation.DOMESTIC_SERVITUDE})
    [other] = decide_screening_outcome(
        case, decide(needs=frozenset({Service.EMPLOYMENT}), forms=forms), agency(IDENTIFIER)
    )
    assert isinstance(other, VictimIdentified)
    assert other.needs == (Service.EMPLOYMENT,)
    assert other.forms_of_exploitation == (FormOfExploitation.DOMESTIC_SERVITUDE,)


def test_a_presumed_victim_whose_criteria_are_not_met_is_not_identified() -> None:
    case = fold_case([presumed()])
    [outcome] = decide_screening_outcome(case, decide(criteria=NO_MEANS), agency(IDENTIFIER))
    assert isinstance(outcome, VictimNotIdentified)
    assert [u.criterion for u in outcome.unmet_criteria] == ["means"]
    # A child needs no means.
    child = fold_case([presumed(is_child=True)])
    [outcome] = decide_screening_outcome(child, decide(criteria=NO_MEANS), agency(IDENTIFIER))
    assert isinstance(outcome, VictimIdentified)


def test_the_owner_or_the_coordinating_body_decides_and_nobody_else() -> None:
    case = fold_case([presumed()])
    assert decide_screening_outcome(case, decide(COORDINATING_BODY), agency(COORDINATING_BODY))
    for stranger in (OTHER_IDENTIFIER, CRISIS_CENTRE):
        assert refused_by(decide_screening_outcome, case, decide(stranger), agency(stranger))[
            0
        ] == ("agency_id", ErrorCode.NOT_AUTHORISED)
    # After a transfer the new owner decides, the identifying agency no longer.
    moved = CaseTransferred(case_id=CASE, from_agency=IDENTIFIER, to_agency=CRISIS_CENTRE)
    transferred = fold_case([presumed(), moved])
    assert decide_screening_outcome(transferred, decide(CRISIS_CENTRE), agency(CRISIS_CENTRE))
    assert refused(lambda: decide_screening_outcome(transferred, decide(), agency(IDENTIFIER))) == [
        ("agency_id", ErrorCode.NOT_AUTHORISED)
    ]


def test_only_a_presumed_open_case_awaits_a_decision() -> None:
    cases = {
        "identified": fold_case([identified()]),
        "not identified": fold_case([not_identified()]),
        "already decided": fold_case([presumed(), identified()]),
        "closed": fold_case(
            [
                presumed(),
                CaseClosed(
                    case_id=CASE,
                    owner=IDENTIFIER,
                    closed_by=IDENTIFIER,
                    reason=ClosureReason.LOST_CONTACT,
                ),
            ]
        ),
        "erased": fold_case(
            [
                presumed(),
                CaseErased(
                    case_id=CASE, erased_by=IDENTIFIER, reason=ErasureReason.RECORDED_IN_ERROR
                ),
            ]
        ),
    }
    for name, case in cases.items():
        got = refused_by(decide_screening_outcome, case, decide(), agency(IDENTIFIER))
        assert got == [("case_id", ErrorCode.INVALID_STATE)], name
    assert refused(lambda: decide_screening_outcome(None, decide(), agency(IDENTIFIER))) == [
        ("case_id", ErrorCode.UNKNOWN_ID)
    ]
    assert refused(lambda: decide_screening_outcome(cases["identified"], decide(), None)) == [
        ("agency_id", ErrorCode.UNKNOWN_AGENCY)
    ]


# --- the urgent referrals of a presumed victim ------------------------------------------------


def test_a_presumed_victim_gets_urgent_referrals_only_a_child_guardianship_too() -> None:
    everything = tuple(Service)
    adult = presumed(needs=everything)
    assert urgent_services(adult) == [Service.MEDICAL, Service.PSYCHOLOGICAL, Service.SHELTER]
    child = presumed(is_child=True, needs=(Service.LEGAL_AID,))
    assert urgent_services(child) == [Service.GUARDIANSHIP]  # a child's guardianship is urgent
    declined = adult.model_copy(
        update={"consent": Consent(declined_services=frozenset({Service.SHELTER}))}
    )
    assert Service.SHELTER not in urgent_services(declined)

    planned, _unmet = plan_needs(adult, REGISTRY, NOW, dt.timedelta(hours=72))
    assert {r.service for _, r in planned} <= {
        Service.SHELTER,
        Service.MEDICAL,
        Service.PSYCHOLOGICAL,
    }
    # Identified later on the same case: every need, the urgent ones under the same ids.
    decided = VictimIdentified.model_validate(
        {**profile_of(adult), "purposes": (), "needs": everything, "consent": Consent()}
    )
    later, _ = plan_needs(decided, REGISTRY, NOW, dt.timedelta(hours=72))
    assert {rid for rid, _ in planned} < {rid for rid, _ in later}
    assert referral_id_for(CASE, Service.LEGAL_AID) in {rid for rid, _ in later}


# --- review of a non-identification ------------------------------------------------------------


def request(by: str = CRISIS_CENTRE) -> RequestIdentificationReview:
    return RequestIdentificationReview(
        command_id=uuid.uuid4(),
        agency_id=by,
        case_id=CASE,
        grounds=ReviewGrounds.INTERVIEW_CONDITIONS,
    )


REVIEW = review_id_for_command(uuid.UUID("22222222-2222-4222-8222-222222222222"))
REQUESTED = CaseReviewRequested(
    case_id=CASE,
    review_id=REVIEW,
    requested_by=CRISIS_CENTRE,
    grounds=ReviewGrounds.NEW_INFORMATION,
    recorded_at=NOW,
)


def upheld(review_id: uuid.UUID = REVIEW) -> CaseReviewDecided:
    return CaseReviewDecided(
        case_id=CASE,
        review_id=review_id,
        outcome=ReviewOutcome.UPHELD,
        decided_by=COORDINATING_BODY,
    )


def review_state(*events: Event) -> tuple[Case | None, dict[uuid.UUID, Review]]:
    history = [not_identified(), consent(withheld_fields=frozenset({"phone"})), *events]
    return fold_case(history), fold_reviews(history)


def test_an_ngo_or_the_ombudsperson_asks_for_a_review_of_a_non_identification() -> None:
    for by in (CRISIS_CENTRE, LEGAL_CLINIC, OMBUDSPERSON):
        case, reviews = review_state()
        [event] = decide_review_request(case, reviews, request(by), agency(by), REVIEW, NOW)
        assert isinstance(event, CaseReviewRequested)
        assert (event.review_id, event.requested_by, event.recorded_at) == (REVIEW, by, NOW)
        assert event.grounds is ReviewGrounds.INTERVIEW_CONDITIONS


def test_a_review_request_is_refused_typed() -> None:
    case, reviews = review_state()

    def asked(case: Case | None, reviews: dict[uuid.UUID, Review], by: str) -> list[Event]:
        return decide_review_request(case, reviews, request(by), REGISTRY.get(by), REVIEW, NOW)

    for not_a_representative in (OTHER_IDENTIFIER, IDENTIFIER, COORDINATING_BODY, PROSECUTOR):
        assert refused_by(asked, case, reviews, not_a_representative) == [
            ("agency_id", ErrorCode.NOT_AUTHORISED)
        ]
    assert refused(lambda: asked(case, reviews, "kg-not-registered")) == [
        ("agency_id", ErrorCode.UNKNOWN_AGENCY)
    ]
    assert refused(lambda: asked(None, {}, CRISIS_CENTRE)) == [("case_id", ErrorCode.UNKNOWN_ID)]
    for outcome in (identified(), presumed()):
        history = [outcome]
        got = refused_by(asked, fold_case(history), {}, CRISIS_CENTRE)
        assert got == [("case_id", ErrorCode.INVALID_STATE)]
    open_case, open_reviews = review_state(REQUESTED)
    assert refused(lambda: asked(open_case, open_reviews, OMBUDSPERSON)) == [
        ("case_id", ErrorCode.INVALID_STATE)
    ]
    # Once upheld, another review may be asked for (new information).
    done_case, done_reviews = review_state(REQUESTED, upheld())
    assert asked(done_case, done_reviews, OMBUDSPERSON)
    erased = CaseErased(case_id=CASE, erased_by=IDENTIFIER, reason=ErasureReason.RETENTION_ENDED)
    closed = CaseClosed(
        case_id=CASE, owner=IDENTIFIER, closed_by=IDENTIFIER, reason=ClosureReason.OTHER
    )
    for ended in (erased, closed):
        ended_case, _ = review_state(ended)
        assert refused_by(asked, ended_case, {}, CRISIS_CENTRE) == [
            ("case_id", ErrorCode.INVALID_STATE)
        ]


def test_reviews_are_folded_from_the_case_s_history() -> None:
    assigned = CaseReviewAssigned(
        case_id=CASE, review_id=REVIEW, assigned_to="kg-social-osh", assigned_by=COORDINATING_BODY
    )
    reviews = fold_reviews([not_identified(), REQUESTED, assigned])
    assert reviews[REVIEW].is_open and reviews[REVIEW].assigned_to == "kg-social-osh"
    reviews = fold_reviews([not_identified(), REQUESTED, assigned, upheld()])
    assert not reviews[REVIEW].is_open
    assert fold_reviews([upheld()]) == {}  # a decision without its request is ignored


def assign(to: str, by: str = COORDINATING_BODY) -> AssignIdentificationReview:
    return AssignIdentificationReview(
        command_id=uuid.uuid4(), agency_id=by, case_id=CASE, review_id=REVIEW, to_agency=to
    )


def test_the_coordinating_body_assigns_a_review_to_an_independent_identifying_agency() -> None:
    case, reviews = review_state(REQUESTED)

    def assigned(to: str, by: str = COORDINATING_BODY) -> list[Event]:
        return decide_review_assign(
            case, reviews, assign(to, by), REGISTRY.get(by), REGISTRY.get(to)
        )

    [event] = assigned("kg-social-osh")
    assert isinstance(event, CaseReviewAssigned)
    assert (event.assigned_to, event.assigned_by) == ("kg-social-osh", COORDINATING_BODY)
    assert refused(lambda: assigned("kg-social-osh", by=OTHER_IDENTIFIER)) == [
        ("agency_id", ErrorCode.NOT_AUTHORISED)
    ]
    assert refused(lambda: assigned("kg-not-registered")) == [
        ("to_agency", ErrorCode.UNKNOWN_AGENCY)
    ]
    # Not one that may not identify, nor the agency reviewed, nor the requester.
    for wrong in (PROSECUTOR, LEGAL_CLINIC, IDENTIFIER, CRISIS_CENTRE):
        assert refused_by(assigned, wrong) == [("to_agency", ErrorCode.INVALID_FIELD)], wrong
    unknown = assign("kg-social-osh").model_copy(update={"review_id": uuid.uuid4()})
    assert refused(
        lambda: decide_review_assign(
            case,
            reviews,
            unknown,
            agency(COORDINATING_BODY),
            agency("kg-social-osh"),
        )
    ) == [("review_id", ErrorCode.UNKNOWN_ID)]
    done_case, done_reviews = review_state(REQUESTED, upheld())
    assert refused(
        lambda: decide_review_assign(
            done_case,
            done_reviews,
            assign("kg-social-osh"),
            agency(COORDINATING_BODY),
            agency("kg-social-osh"),
        )
    ) == [("review_id", ErrorCode.INVALID_STATE)]


def review_decision(
    outcome: ReviewOutcome,
    by: str = COORDINATING_BODY,
    criteria: CriteriaAnswers | None = None,
    needs: frozenset[Service] = frozenset(),
) -> DecideIdentificationReview:
    return DecideIdentificationReview(
        command_id=uuid.uuid4(),
        agency_id=by,
        case_id=CASE,
        review_id=REVIEW,
        outcome=outcome,
        criteria=criteria,
        needs=needs,
    )


def test_an_overturned_review_identifies_the_person_on_the_same_case() -> None:
    case, reviews = review_state(REQUESTED)
    command = review_decision(
        ReviewOutcome.OVERTURNED, criteria=MET, needs=frozenset({Service.LEGAL_AID})
    )
    decided, outcome = decide_review_decision(case, reviews, command, agency(COORDINATING_BODY))
    assert isinstance(decided, CaseReviewDecided)
    assert (decided.review_id, decided.outcome, decided.decided_by) == (
        REVIEW,
        ReviewOutcome.OVERTURNED,
        COORDINATING_BODY,
    )
    assert isinstance(outcome, VictimIdentified)
    assert case is not None
    assert {**profile_of(outcome), "means": ()} == {**profile_of(case.record), "means": ()}
    assert outcome.means == tuple(sorted(MET.means))  # the review's answers
    assert outcome.needs == (Service.LEGAL_AID,)
    # The consent in force comes with it: what it withholds is never shared.
    assert outcome.consent.withheld_fields == frozenset({PersonalField.PHONE})
    assert outcome.age_band is AgeBand.FROM_25_TO_34


def test_upheld_records_the_decision_only() -> None:
    case, reviews = review_state(REQUESTED)
    [decided] = decide_review_decision(
        case,
        reviews,
        review_decision(ReviewOutcome.UPHELD),
        agency(COORDINATING_BODY),
    )
    assert isinstance(decided, CaseReviewDecided) and decided.outcome is ReviewOutcome.UPHELD


def test_a_review_decision_is_refused_typed() -> None:
    case, reviews = review_state(REQUESTED)

    def decided(
        command: DecideIdentificationReview,
        c: Case | None = case,
        r: dict[uuid.UUID, Review] = reviews,
    ) -> list[Event]:
        return decide_review_decision(c, r, command, REGISTRY.get(command.agency_id))

    assert refused(lambda: decided(review_decision(ReviewOutcome.UPHELD, by=OTHER_IDENTIFIER))) == [
        ("agency_id", ErrorCode.NOT_AUTHORISED)
    ]
    assert refused(lambda: decided(review_decision(ReviewOutcome.UPHELD, criteria=MET))) == [
        ("criteria", ErrorCode.INVALID_FIELD)
    ]
    assert refused(lambda: decided(review_decision(ReviewOutcome.OVERTURNED))) == [
        ("criteria", ErrorCode.INVALID_FIELD)
    ]
    assert refused(
        lambda: decided(review_decision(ReviewOutcome.OVERTURNED, criteria=NO_MEANS))
    ) == [("criteria", ErrorCode.INVALID_FIELD)]
    unknown = review_decision(ReviewOutcome.UPHELD).model_copy(update={"review_id": uuid.uuid4()})
    assert refused(lambda: decided(unknown)) == [("review_id", ErrorCode.UNKNOWN_ID)]
    done_case, done_reviews = review_state(REQUESTED, upheld())
    assert refused(
        lambda: decided(review_decision(ReviewOutcome.UPHELD), done_case, done_reviews)
    ) == [("review_id", ErrorCode.INVALID_STATE)]
    assert refused(lambda: decided(review_decision(ReviewOutcome.UPHELD), None, {})) == [
        ("case_id", ErrorCode.UNKNOWN_ID)
    ]


def test_the_assigned_agency_decides_the_review() -> None:
    assigned = CaseReviewAssigned(
        case_id=CASE, review_id=REVIEW, assigned_to="kg-social-osh", assigned_by=COORDINATING_BODY
    )
    case, reviews = review_state(REQUESTED, assigned)
    command = review_decision(ReviewOutcome.UPHELD, by="kg-social-osh")
    [event] = decide_review_decision(case, reviews, command, agency("kg-social-osh"))
    assert isinstance(event, CaseReviewDecided) and event.decided_by == "kg-social-osh"
    # Still the coordinating body may; another identifying agency may not.
    assert decide_review_decision(
        case,
        reviews,
        review_decision(ReviewOutcome.UPHELD),
        agency(COORDINATING_BODY),
    )
    other = review_decision(ReviewOutcome.UPHELD, by="kg-social-bishkek")
    assert refused(
        lambda: decide_review_decision(case, reviews, other, agency("kg-social-bishkek"))
    ) == [("agency_id", ErrorCode.NOT_AUTHORISED)]


def test_the_table_s_representative_role_is_the_rule_s() -> None:
    for a in REGISTRY.agencies:
        assert Sender.REPRESENTATIVE.admits(a, REGISTRY) == (a.kind in REPRESENTATIVE_KINDS)
    assert [a.id for a in REGISTRY.agencies if a.kind in REPRESENTATIVE_KINDS]


def test_the_decision_is_due_after_the_days_the_setting_names() -> None:
    assert Settings().identification_decision_days == 30
    assert (
        Settings.from_env({"NRM_IDENTIFICATION_DECISION_DAYS": "45"}).identification_decision_days
        == 45
    )
    with pytest.raises(SettingsError, match="NRM_IDENTIFICATION_DECISION_DAYS"):
        Settings.from_env({"NRM_IDENTIFICATION_DECISION_DAYS": "0"})
