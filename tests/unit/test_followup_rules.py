"""Follow-ups and the HTCDS case status, as pure rules: the fold (services/case/case.py) and
the identifier's decisions (services/identifier/followup_rules.py); a child's consent
(services/case/consent.py and the identifier's `consent.record`)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable

import pytest

from contracts.commands import (
    Consent,
    RecordConsent,
    RecordFollowUp,
    ReopenCase,
    ScheduleFollowUp,
)
from contracts.events import (
    CaseClosed,
    CaseErased,
    CaseReopened,
    ConsentRecorded,
    Event,
    FollowUpOverdue,
    FollowUpRecorded,
    FollowUpScheduled,
    ReferralAccepted,
    ReferralCompleted,
    ReferralRevoked,
)
from contracts.replies import CommandRejection, ErrorCode
from contracts.vocabulary import (
    AccessRefusal,
    CaseStatus,
    ClosureReason,
    ErasureReason,
    FollowUpOutcome,
    FollowUpPurpose,
    LegalBasis,
    PersonalField,
    Region,
    ReopenReason,
    RevokeReason,
    Service,
    TransferRefusal,
)
from services.case.case import Case, fold_case
from services.case.consent import ConsentGap, consent_in_force
from services.case.ids import followup_id_for_command
from services.case.referrals import Referral, fold_referral, referral_request
from services.identifier.domain import decide_record_consent, decide_reopen
from services.identifier.followup_rules import (
    decide_followup_overdue,
    decide_record_followup,
    decide_schedule_followup,
    is_overdue,
)
from tests.unit.test_case_core import (
    CASE,
    IDENTIFIER,
    NOW,
    REGISTRY,
    agency,
    case_of,
    consent,
    identified,
)

COORDINATING_BODY = "kg-coordinating-body"
CLINIC = "kg-ngo-osh-crisis-centre"  # a provider, not the owner
STRANGER = "kg-health-bishkek"  # identifies, but not this case
TODAY = NOW.date()
FOLLOWUP = uuid.UUID("22222222-2222-4222-8222-222222222222")


def scheduled(
    due_on: dt.date = TODAY, by: str = IDENTIFIER, followup_id: uuid.UUID = FOLLOWUP
) -> FollowUpScheduled:
    return FollowUpScheduled(
        case_id=CASE,
        followup_id=followup_id,
        due_on=due_on,
        purpose=FollowUpPurpose.SAFETY_CHECK,
        scheduled_by=by,
        recorded_at=NOW,
    )


RECORDED = FollowUpRecorded(
    case_id=CASE,
    followup_id=FOLLOWUP,
    outcome=FollowUpOutcome.IN_CONTACT_STABLE,
    recorded_by=IDENTIFIER,
    recorded_at=NOW,
)


def closed(reason: ClosureReason = ClosureReason.REINTEGRATED) -> CaseClosed:
    return CaseClosed(case_id=CASE, owner=IDENTIFIER, closed_by=IDENTIFIER, reason=reason)


REOPENED = CaseReopened(
    case_id=CASE, owner=IDENTIFIER, reopened_by=IDENTIFIER, reason=ReopenReason.NEW_NEEDS
)


def schedule(by: str = IDENTIFIER, due_on: dt.date = TODAY) -> ScheduleFollowUp:
    return ScheduleFollowUp(
        command_id=uuid.uuid4(),
        agency_id=by,
        case_id=CASE,
        due_on=due_on,
        purpose=FollowUpPurpose.REINTEGRATION_CHECK,
    )


def record(by: str = IDENTIFIER, followup_id: uuid.UUID = FOLLOWUP) -> RecordFollowUp:
    return RecordFollowUp(
        command_id=uuid.uuid4(),
        agency_id=by,
        case_id=CASE,
        followup_id=followup_id,
        outcome=FollowUpOutcome.NEEDS_SUPPORT,
    )


def clinic_referral(*answers: Callable[[uuid.UUID], Event]) -> Referral:
    requested = referral_request(
        REGISTRY,
        referral_id=uuid.uuid4(),
        case_id=CASE,
        service=Service.LEGAL_AID,
        referrer_id=IDENTIFIER,
        region=Region.OSH_CITY,
        person=identified(),
        shared_fields=(),
        now=NOW,
        response_window=dt.timedelta(days=3),
        fallback=agency(CLINIC),
    )
    assert requested is not None
    requested = requested.model_copy(update={"provider_id": CLINIC})
    folded = fold_referral([requested, *(answer(requested.referral_id) for answer in answers)])
    assert folded is not None
    return folded


def accepted(referral_id: uuid.UUID) -> Event:
    return ReferralAccepted(
        referral_id=referral_id, case_id=CASE, provider_id=CLINIC, accepted_at=NOW
    )


def completed(referral_id: uuid.UUID) -> Event:
    return ReferralCompleted(
        referral_id=referral_id, case_id=CASE, provider_id=CLINIC, delivered=()
    )


def revoked(referral_id: uuid.UUID) -> Event:
    return ReferralRevoked(
        referral_id=referral_id,
        case_id=CASE,
        revoked_by=IDENTIFIER,
        reason=RevokeReason.NEED_MET_ELSEWHERE,
    )


def refused(decide: Callable[[], list[Event]]) -> list[tuple[str, ErrorCode]]:
    with pytest.raises(CommandRejection) as rejection:
        decide()
    return [(e.field, e.code) for e in rejection.value.errors]


def scheduling(case: Case | None, command: ScheduleFollowUp, *refs: Referral) -> list[Event]:
    return decide_schedule_followup(case, command, agency(command.agency_id), refs, FOLLOWUP, NOW)


def recording(case: Case | None, command: RecordFollowUp) -> list[Event]:
    return decide_record_followup(case, command, agency(command.agency_id), NOW)


# --- the fold: HTCDS cas_Status ------------------------------------------------------------


def test_the_status_is_follow_up_while_a_follow_up_is_pending() -> None:
    assert case_of().status is CaseStatus.ACTIVE
    assert case_of(scheduled()).status is CaseStatus.FOLLOW_UP
    assert case_of(scheduled(), RECORDED).status is CaseStatus.ACTIVE
    second = scheduled(followup_id=uuid.uuid4())
    assert case_of(scheduled(), second, RECORDED).status is CaseStatus.FOLLOW_UP
    overdue = FollowUpOverdue(
        case_id=CASE, followup_id=FOLLOWUP, due_on=TODAY, escalated_to=COORDINATING_BODY
    )
    escalated = case_of(scheduled(), overdue)
    assert escalated.status is CaseStatus.FOLLOW_UP  # escalated, still to be recorded
    assert escalated.followups[FOLLOWUP].escalated


def test_closed_referred_when_closed_because_the_person_was_referred_abroad() -> None:
    assert case_of(closed()).status is CaseStatus.CLOSED
    referred = case_of(closed(ClosureReason.TRANSFERRED_ABROAD))
    assert referred.status is CaseStatus.CLOSED_REFERRED
    assert referred.is_closed and case_of(closed()).is_closed
    assert not case_of().is_closed and not case_of(scheduled()).is_closed
    assert {s for s in CaseStatus if s.is_closed} == {
        CaseStatus.CLOSED,
        CaseStatus.CLOSED_REFERRED,
    }


def test_closing_cancels_pending_follow_ups_and_reopening_makes_the_case_active() -> None:
    case = case_of(scheduled(), closed())
    assert case.status is CaseStatus.CLOSED
    assert case.followups[FOLLOWUP].cancelled and case.pending_followups == ()
    reopened = case_of(scheduled(), closed(), REOPENED)
    assert reopened.status is CaseStatus.ACTIVE and reopened.pending_followups == ()


def test_a_case_closed_referred_takes_the_rules_of_a_closed_case() -> None:
    referred = case_of(closed(ClosureReason.TRANSFERRED_ABROAD))
    assert refused(lambda: scheduling(referred, schedule())) == [
        ("case_id", ErrorCode.INVALID_STATE)
    ]
    command = ReopenCase(
        command_id=uuid.uuid4(), agency_id=IDENTIFIER, case_id=CASE, reason=ReopenReason.NEW_NEEDS
    )
    [event] = decide_reopen(referred, command, agency(IDENTIFIER))
    assert isinstance(event, CaseReopened)


# --- followup.schedule ---------------------------------------------------------------------


def test_the_owner_or_the_coordinating_body_schedules_a_follow_up() -> None:
    for by in (IDENTIFIER, COORDINATING_BODY):
        [event] = scheduling(case_of(), schedule(by, TODAY + dt.timedelta(days=30)))
        assert isinstance(event, FollowUpScheduled)
        assert (event.followup_id, event.scheduled_by, event.recorded_at) == (FOLLOWUP, by, NOW)
        assert event.purpose is FollowUpPurpose.REINTEGRATION_CHECK
    [today] = scheduling(case_of(), schedule(due_on=TODAY))  # due today is not past
    assert isinstance(today, FollowUpScheduled)


def test_a_provider_schedules_only_on_a_case_it_took_on() -> None:
    for taken_on in (clinic_referral(accepted), clinic_referral(accepted, completed)):
        [event] = scheduling(case_of(), schedule(CLINIC), taken_on)
        assert isinstance(event, FollowUpScheduled) and event.scheduled_by == CLINIC
    for not_taken_on in (clinic_referral(), clinic_referral(revoked)):
        assert refused(lambda r=not_taken_on: scheduling(case_of(), schedule(CLINIC), r)) == [
            ("agency_id", ErrorCode.NOT_AUTHORISED)
        ]
    assert refused(lambda: scheduling(case_of(), schedule(CLINIC))) == [
        ("agency_id", ErrorCode.NOT_AUTHORISED)
    ]


def test_refused_schedules_name_the_field() -> None:
    assert refused(lambda: scheduling(None, schedule())) == [("case_id", ErrorCode.UNKNOWN_ID)]
    assert refused(lambda: scheduling(case_of(), schedule(STRANGER))) == [
        ("agency_id", ErrorCode.NOT_AUTHORISED)
    ]
    past = schedule(due_on=TODAY - dt.timedelta(days=1))
    assert refused(lambda: scheduling(case_of(), past)) == [("due_on", ErrorCode.INVALID_FIELD)]
    erased = CaseErased(case_id=CASE, erased_by=IDENTIFIER, reason=ErasureReason.ERASURE_REQUEST)
    for gone in (case_of(closed()), case_of(erased)):
        assert refused(lambda c=gone: scheduling(c, schedule())) == [
            ("case_id", ErrorCode.INVALID_STATE)
        ]
    unregistered = schedule()
    assert refused(
        lambda: decide_schedule_followup(case_of(), unregistered, None, (), FOLLOWUP, NOW)
    ) == [("agency_id", ErrorCode.UNKNOWN_AGENCY)]


def test_the_follow_up_id_is_derived_from_the_command() -> None:
    command_id = uuid.uuid4()
    assert followup_id_for_command(command_id) == followup_id_for_command(str(command_id))
    assert followup_id_for_command(command_id) != followup_id_for_command(uuid.uuid4())


# --- followup.record -----------------------------------------------------------------------


def test_who_records_a_follow_up() -> None:
    by_clinic = case_of(scheduled(by=CLINIC))
    for by in (CLINIC, IDENTIFIER, COORDINATING_BODY):
        [event] = recording(by_clinic, record(by))
        assert isinstance(event, FollowUpRecorded)
        assert (event.followup_id, event.recorded_by) == (FOLLOWUP, by)
        assert event.outcome is FollowUpOutcome.NEEDS_SUPPORT
    # The clinic scheduled it; another one's follow-up of the case it may not record.
    by_owner = case_of(scheduled(by=IDENTIFIER))
    for not_allowed in (CLINIC, STRANGER):
        assert refused(lambda a=not_allowed: recording(by_owner, record(a))) == [
            ("agency_id", ErrorCode.NOT_AUTHORISED)
        ]


def test_refused_records_name_the_field() -> None:
    unknown = record(followup_id=uuid.uuid4())
    assert refused(lambda: recording(case_of(scheduled()), unknown)) == [
        ("followup_id", ErrorCode.UNKNOWN_ID)
    ]
    assert refused(lambda: recording(case_of(scheduled(), RECORDED), record())) == [
        ("followup_id", ErrorCode.INVALID_STATE)
    ]
    assert refused(lambda: recording(case_of(scheduled(), closed()), record())) == [
        ("case_id", ErrorCode.INVALID_STATE)
    ]
    # Cancelled by the closure: reopening does not bring it back.
    cancelled = case_of(scheduled(), closed(), REOPENED)
    assert refused(lambda: recording(cancelled, record())) == [
        ("followup_id", ErrorCode.INVALID_STATE)
    ]
    assert refused(lambda: recording(None, record())) == [("case_id", ErrorCode.UNKNOWN_ID)]


def test_an_overdue_follow_up_may_still_be_recorded() -> None:
    overdue = FollowUpOverdue(
        case_id=CASE, followup_id=FOLLOWUP, due_on=TODAY, escalated_to=COORDINATING_BODY
    )
    [event] = recording(case_of(scheduled(), overdue), record())
    assert isinstance(event, FollowUpRecorded)


# --- overdue ---------------------------------------------------------------------------------


def test_overdue_once_its_due_day_has_passed() -> None:
    assert not is_overdue(TODAY, NOW)
    assert not is_overdue(TODAY, NOW + dt.timedelta(hours=23, minutes=59))
    assert is_overdue(TODAY, NOW + dt.timedelta(days=1))
    assert is_overdue(TODAY - dt.timedelta(days=1), NOW)


def test_an_overdue_follow_up_is_escalated_once_to_the_coordinating_body() -> None:
    later = NOW + dt.timedelta(days=1)
    case = case_of(scheduled())
    assert decide_followup_overdue(case, FOLLOWUP, NOW, COORDINATING_BODY) == []  # not yet
    [event] = decide_followup_overdue(case, FOLLOWUP, later, COORDINATING_BODY)
    assert isinstance(event, FollowUpOverdue)
    assert (event.followup_id, event.due_on, event.escalated_to) == (
        FOLLOWUP,
        TODAY,
        COORDINATING_BODY,
    )
    escalated = case_of(scheduled(), event)
    assert decide_followup_overdue(escalated, FOLLOWUP, later, COORDINATING_BODY) == []


def test_no_escalation_of_a_recorded_cancelled_or_unknown_follow_up() -> None:
    later = NOW + dt.timedelta(days=2)
    erased = CaseErased(case_id=CASE, erased_by=IDENTIFIER, reason=ErasureReason.ERASURE_REQUEST)
    for case in (
        case_of(scheduled(), RECORDED),
        case_of(scheduled(), closed()),
        case_of(scheduled(), closed(), REOPENED),
        case_of(scheduled(), erased),
        case_of(),
        None,
    ):
        assert decide_followup_overdue(case, FOLLOWUP, later, COORDINATING_BODY) == []


# --- a child's consent ---------------------------------------------------------------------


def child_case(*events: Event) -> Case:
    case = fold_case([identified(is_child=True), *events])
    assert case is not None
    return case


def test_a_childs_own_informed_consent_is_not_in_force_for_a_release() -> None:
    own = consent(legal_basis=LegalBasis.INFORMED_CONSENT)
    assert consent_in_force(child_case(own), NOW) is ConsentGap.GUARDIAN_CONSENT_REQUIRED
    assert consent_in_force(case_of(own), NOW) == own  # an adult's is
    for basis in (
        LegalBasis.GUARDIAN_CONSENT,
        LegalBasis.VITAL_INTERESTS,
        LegalBasis.LEGAL_OBLIGATION,
    ):
        given = consent(legal_basis=basis)
        assert consent_in_force(child_case(own, given), NOW) == given
    gap = ConsentGap.GUARDIAN_CONSENT_REQUIRED
    assert AccessRefusal(gap.value) is AccessRefusal.GUARDIAN_CONSENT_REQUIRED
    assert TransferRefusal(gap.value) is TransferRefusal.GUARDIAN_CONSENT_REQUIRED


def record_consent(basis: LegalBasis) -> RecordConsent:
    return RecordConsent(
        command_id=uuid.uuid4(),
        agency_id=IDENTIFIER,
        case_id=CASE,
        given_on=TODAY,
        consent=Consent(legal_basis=basis, withheld_fields=frozenset({PersonalField.PHONE})),
    )


def test_consent_record_for_a_child_needs_a_guardian_or_another_legal_basis() -> None:
    def recorded(case: Case, basis: LegalBasis) -> list[Event]:
        return decide_record_consent(case, record_consent(basis), agency(IDENTIFIER), FOLLOWUP)

    assert refused(lambda: recorded(child_case(), LegalBasis.INFORMED_CONSENT)) == [
        ("consent.legal_basis", ErrorCode.INVALID_FIELD)
    ]
    for basis in (
        LegalBasis.GUARDIAN_CONSENT,
        LegalBasis.VITAL_INTERESTS,
        LegalBasis.LEGAL_OBLIGATION,
    ):
        [event] = recorded(child_case(), basis)
        assert isinstance(event, ConsentRecorded) and event.legal_basis is basis
    [adult] = recorded(case_of(), LegalBasis.INFORMED_CONSENT)
    assert isinstance(adult, ConsentRecorded)
