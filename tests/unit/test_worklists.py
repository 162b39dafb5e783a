"""The coordinating body's worklists, as a pure fold: what is on each list, when it leaves
it, how late it is, and that the rows carry ids, codes and dates only."""

from __future__ import annotations

import datetime as dt
import json
import uuid

from contracts.commands import Consent
from contracts.envelope import Envelope, wrap_event
from contracts.events import (
    CaseClosed,
    CaseReopened,
    Event,
    FollowUpRecorded,
    FollowUpScheduled,
    NeedRemoved,
    NeedUnmet,
    ReferralAccepted,
    ReferralEscalated,
    ReferralRequested,
    ReferralWaitlisted,
    VictimIdentified,
    VictimPresumed,
)
from contracts.vocabulary import (
    AgeBand,
    AgencyKind,
    ClosureReason,
    FollowUpOutcome,
    FollowUpPurpose,
    NeedRemovalReason,
    Region,
    ReopenReason,
    Sector,
    Service,
    Sex,
    ShelterCategory,
    UnmetReason,
)
from services.case.ids import need_id_for
from services.worklists.command import render
from services.worklists.projection import Worklist, WorklistState, apply, rows

T0 = dt.datetime(2026, 11, 2, 9, tzinfo=dt.UTC)
CASE = uuid.uuid4()
REFERRAL = uuid.uuid4()
NEED = need_id_for(CASE, Service.GUARDIANSHIP)  # the hub derives a need's id, as here


def _fold(*timed: tuple[dt.datetime, Event]) -> WorklistState:
    state = WorklistState()
    for sequence, (at, event) in enumerate(timed, start=1):
        envelope: Envelope = wrap_event(
            event,
            event_id=uuid.uuid4(),
            source="urn:test",
            time=at,
            correlation_id=None,
            causation_id=None,
        )
        apply(state, envelope, event, sequence)
    return state


def _requested(
    service: Service = Service.SHELTER,
    referral_id: uuid.UUID = REFERRAL,
    respond_by: dt.datetime = T0 + dt.timedelta(days=2),
) -> ReferralRequested:
    return ReferralRequested(
        referral_id=referral_id,
        case_id=CASE,
        service=service,
        provider_id="kg-shelter-men",
        referrer_id="kg-police",
        region=Region.CHUY,
        sex=Sex.MALE,
        age_band=AgeBand.FROM_25_TO_34,
        is_child=False,
        placement_category=ShelterCategory.MEN,
        shared_fields=(),
        requested_at=T0,
        respond_by=respond_by,
    )


def _unmet(service: Service = Service.GUARDIANSHIP) -> NeedUnmet:
    return NeedUnmet(
        need_id=need_id_for(CASE, service),
        case_id=CASE,
        service=service,
        reason=UnmetReason.NO_PROVIDER,
        region=Region.CHUY,
        category=ShelterCategory.CHILDREN,
        identifying_agency="kg-police",
        coordinating_body="kg-coordinating",
        recorded_at=T0,
    )


def test_an_unmet_need_is_listed_until_it_is_referred_again() -> None:
    state = _fold((T0, _unmet(Service.SHELTER)))
    [row] = rows(state, Worklist.UNMET, T0 + dt.timedelta(days=3))
    assert (row.case_id, row.service, row.detail, row.days) == (
        str(CASE),
        "shelter",
        "no_provider",
        3,
    )
    apply(state, _envelope(_requested()), _requested())
    assert rows(state, Worklist.UNMET, T0) == []


def test_waitlisted_referral_is_waiting_until_admitted() -> None:
    waitlisted = ReferralWaitlisted(
        referral_id=REFERRAL, case_id=CASE, provider_id="kg-shelter-men", position=2
    )
    state = _fold((T0, _requested()), (T0 + dt.timedelta(hours=1), waitlisted))
    [row] = rows(state, Worklist.WAITING, T0 + dt.timedelta(days=10))
    assert (row.item_id, row.days, row.detail, row.agency) == (
        str(REFERRAL),
        10,
        "position 2",
        "kg-shelter-men",
    )
    # Waiting is not overdue until the hub escalates it.
    assert rows(state, Worklist.OVERDUE, T0 + dt.timedelta(days=10)) == []
    accepted = ReferralAccepted(
        referral_id=REFERRAL, case_id=CASE, provider_id="kg-shelter-men", accepted_at=T0
    )
    apply(state, _envelope(accepted), accepted)
    assert rows(state, Worklist.WAITING, T0 + dt.timedelta(days=10)) == []


def _envelope(event: Event) -> Envelope:
    return wrap_event(
        event,
        event_id=uuid.uuid4(),
        source="urn:test",
        time=T0,
        correlation_id=None,
        causation_id=None,
    )


def test_an_unanswered_referral_is_overdue_after_its_deadline_only() -> None:
    state = _fold((T0, _requested(respond_by=T0 + dt.timedelta(days=2))))
    assert rows(state, Worklist.OVERDUE, T0 + dt.timedelta(days=1)) == []
    [row] = rows(state, Worklist.OVERDUE, T0 + dt.timedelta(days=5))
    assert (row.item, row.days, row.detail, row.due) == ("referral", 3, "no_answer", "2026-11-04")


def test_an_escalated_referral_is_overdue_whatever_its_deadline() -> None:
    escalated = ReferralEscalated(
        referral_id=REFERRAL,
        case_id=CASE,
        provider_id="kg-shelter-men",
        overdue_since=T0,
        escalated_to="kg-coordinating",
    )
    waitlisted = ReferralWaitlisted(
        referral_id=REFERRAL, case_id=CASE, provider_id="kg-shelter-men", position=1
    )
    state = _fold((T0, _requested()), (T0, waitlisted), (T0, escalated))
    [row] = rows(state, Worklist.OVERDUE, T0)
    assert row.item_id == str(REFERRAL)


def test_closed_cases_leave_every_list_and_come_back_when_reopened() -> None:
    closed = CaseClosed(
        case_id=CASE, owner="kg-police", closed_by="kg-police", reason=ClosureReason.LOST_CONTACT
    )
    state = _fold((T0, _unmet()), (T0, closed))
    assert rows(state, Worklist.UNMET, T0) == []
    reopened = CaseReopened(
        case_id=CASE,
        owner="kg-police",
        reopened_by="kg-police",
        reason=ReopenReason.CONTACT_RESUMED,
    )
    apply(state, _envelope(reopened), reopened)
    assert len(rows(state, Worklist.UNMET, T0)) == 1


def test_filters_by_region_and_service() -> None:
    state = _fold((T0, _unmet(Service.GUARDIANSHIP)))
    assert rows(state, Worklist.UNMET, T0, region="chuy", service="guardianship")
    assert rows(state, Worklist.UNMET, T0, region="osh_city") == []
    assert rows(state, Worklist.UNMET, T0, service="shelter") == []


def test_every_format_names_the_same_rows() -> None:
    state = _fold((T0, _unmet()))
    found = rows(state, Worklist.UNMET, T0)
    assert json.loads(render(found, "json"))[0]["case_id"] == str(CASE)
    csv_lines = render(found, "csv").splitlines()
    assert csv_lines[0].startswith("case,item,item id") and str(CASE) in csv_lines[1]
    assert str(CASE) in render(found, "table") and "(1 rows)" in render(found, "table")


def test_a_follow_up_is_overdue_after_its_due_day_until_recorded() -> None:
    followup = uuid.uuid4()
    scheduled = FollowUpScheduled(
        case_id=CASE,
        followup_id=followup,
        due_on=dt.date(2026, 12, 1),
        purpose=FollowUpPurpose.POST_DISCHARGE,
        scheduled_by="kg-social-bishkek",
        recorded_at=T0,
    )
    state = _fold((T0, scheduled))
    assert rows(state, Worklist.OVERDUE, dt.datetime(2026, 12, 1, 23, tzinfo=dt.UTC)) == []
    [row] = rows(state, Worklist.OVERDUE, dt.datetime(2026, 12, 4, tzinfo=dt.UTC))
    assert (row.item, row.item_id, row.days, row.agency) == (
        "followup",
        str(followup),
        3,
        "kg-social-bishkek",
    )
    recorded = FollowUpRecorded(
        case_id=CASE,
        followup_id=followup,
        outcome=FollowUpOutcome.IN_CONTACT_STABLE,
        recorded_by="kg-social-bishkek",
        recorded_at=T0,
    )
    apply(state, _envelope(recorded), recorded)
    assert rows(state, Worklist.OVERDUE, dt.datetime(2026, 12, 4, tzinfo=dt.UTC)) == []


def test_closing_a_case_cancels_its_follow_ups_for_good() -> None:
    scheduled = FollowUpScheduled(
        case_id=CASE,
        followup_id=uuid.uuid4(),
        due_on=dt.date(2026, 11, 3),
        purpose=FollowUpPurpose.SAFETY_CHECK,
        scheduled_by="kg-police",
        recorded_at=T0,
    )
    closed = CaseClosed(
        case_id=CASE, owner="kg-police", closed_by="kg-police", reason=ClosureReason.REINTEGRATED
    )
    reopened = CaseReopened(
        case_id=CASE,
        owner="kg-police",
        reopened_by="kg-police",
        reason=ReopenReason.CONTACT_RESUMED,
    )
    state = _fold((T0, scheduled), (T0, closed), (T0, reopened))
    assert rows(state, Worklist.OVERDUE, T0 + dt.timedelta(days=30)) == []


def test_a_presumed_victims_decision_is_overdue_after_its_due_date_until_decided() -> None:
    presumed = VictimPresumed.model_validate(
        {
            **_identified().model_dump(exclude={"purposes"}),
            "decision_due": T0 + dt.timedelta(days=30),
        }
    )
    state = _fold((T0, presumed))
    assert rows(state, Worklist.OVERDUE, T0 + dt.timedelta(days=29)) == []
    [row] = rows(state, Worklist.OVERDUE, T0 + dt.timedelta(days=33))
    assert (row.item, row.case_id, row.days, row.detail) == (
        "decision",
        str(CASE),
        3,
        "identification_decision_due",
    )
    decided = _identified()
    apply(state, _envelope(decided), decided)
    assert rows(state, Worklist.OVERDUE, T0 + dt.timedelta(days=33)) == []


def test_a_need_taken_off_the_plan_leaves_the_unmet_list() -> None:
    removed = NeedRemoved(
        need_id=NEED,
        case_id=CASE,
        service=Service.GUARDIANSHIP,
        reason=NeedRemovalReason.DECLINED_BY_PERSON,
        removed_by="kg-police",
        recorded_at=T0,
    )
    state = _fold((T0, _unmet()), (T0, removed))
    assert rows(state, Worklist.UNMET, T0) == []


def _identified() -> VictimIdentified:
    return VictimIdentified(
        case_id=CASE,
        agency_id="kg-mia-bishkek",
        agency_kind=AgencyKind.INTERNAL_AFFAIRS,
        sector=Sector.GOVERNMENT,
        region=Region.CHUY,
        interviewed_on=T0.date(),
        sex=Sex.MALE,
        age_band=AgeBand.FROM_25_TO_34,
        is_child=False,
        citizenship="KG",
        country_of_exploitation=None,
        forms_of_exploitation=(),
        vulnerabilities=(),
        personal_data={},
        purposes=(),
        needs=(Service.SHELTER,),
        consent=Consent(),
    )


def test_the_table_speaks_the_readers_language_and_json_keeps_codes() -> None:
    from services.i18n.catalogue import language

    found = rows(_fold((T0, _unmet(Service.SHELTER))), Worklist.UNMET, T0)
    table = render(found, "table", language("ru"))
    assert "приют" in table and "нет поставщика" in table and "shelter" not in table
    assert json.loads(render(found, "json", language("ru")))[0]["service"] == "shelter"
    assert render(found, "csv", language("ky")).splitlines()[1].count("shelter") == 1
