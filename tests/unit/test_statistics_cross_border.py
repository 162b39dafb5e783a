"""Cross-border referrals in the statistics, on both sides: sent (or refused before leaving)
by destination, purpose and the destination's outcome code; received by origin and what the
local provider did; time to the first answer. Built from the same rules the hubs use."""

from __future__ import annotations

import datetime as dt
import uuid

from contracts.crossborder import AnswerPackage, AnswerStatus
from contracts.envelope import Envelope, wrap_event
from contracts.events import (
    CaseClosed,
    Event,
    ReferralAccepted,
    ReferralCrossBorderClosed,
    ReferralCrossBorderCompleted,
)
from contracts.vocabulary import ClosureReason, DataPurpose, TransferRefusal
from services.agencies.registry import load_registry
from services.referral import crossborder as xb
from services.statistics.projection import fold
from services.statistics.tables import Query, count
from tests.unit.test_crossborder_rules import command, consent, decide, identified, package

T0 = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)


def _at(event: Event, hours: float) -> Envelope:
    return wrap_event(
        event,
        event_id=uuid.uuid4(),
        source="urn:nrm-hub:test",
        time=T0 + dt.timedelta(hours=hours),
        correlation_id=None,
        causation_id=None,
    )


def _cells(state: object, by: tuple[str, ...]) -> dict[tuple[str, ...], int]:
    table = count(state, Query("cross_border", by), T0 + dt.timedelta(days=60))  # type: ignore[arg-type]
    return {
        (row, *col): n
        for row, cells in zip(table.rows, table.cells, strict=True)
        for col, n in zip(table.cols, cells, strict=True)
        if n
    }


def _answer(referral_id: uuid.UUID, status: AnswerStatus) -> AnswerPackage:
    return AnswerPackage(
        package_id=uuid.uuid4(),
        origin="UZ",
        destination="KG",
        referral_id=referral_id,
        sent_at=T0,
        status=status,
    )


def test_the_origin_counts_what_it_sent_and_the_answers_it_got() -> None:
    cmd = command()
    transfer = decide([identified(), consent()], cmd)
    assert isinstance(transfer, xb.Transfer)
    requested = xb.requested_event(cmd, package(transfer, cmd))
    [received] = xb.decide_answer(
        xb.fold([requested]), _answer(requested.referral_id, AnswerStatus.RECEIVED)
    )
    [accepted] = xb.decide_answer(
        xb.fold([requested, received]), _answer(requested.referral_id, AnswerStatus.ACCEPTED)
    )
    refused = xb.refused_event(uuid.uuid4(), command(destination="KZ"), TransferRefusal.NO_CONSENT)
    state = fold(
        [
            _at(identified(), 0),
            _at(requested, 1),
            _at(received, 30),
            _at(accepted, 200),
            _at(refused, 2),
        ]
    )
    assert _cells(state, ("country", "direction", "outcome")) == {
        ("UZ", "outgoing", "accepted"): 1,
        ("KZ", "outgoing", "refused"): 1,
    }
    assert _cells(state, ("purpose",)) == {(DataPurpose.REPATRIATION.value,): 2}
    # Sent at hour 1, first answer (received) at hour 30: 1 to 7 days; the refusal never left.
    assert _cells(state, ("time_to_answer",)) == {("1_to_7_days",): 1, ("no_answer_yet",): 1}


def test_the_destination_counts_what_it_received_and_what_its_provider_did() -> None:
    cmd = command()
    transfer = decide([identified(), consent()], cmd)
    assert isinstance(transfer, xb.Transfer)
    pkg = package(transfer, cmd)
    local_case, local_referral = uuid.uuid4(), uuid.uuid4()
    case_events, requested = xb.plan_reception(
        pkg,
        load_registry(country="uz"),
        local_case,
        uuid.uuid4(),
        local_referral,
        {},
        T0,
        dt.timedelta(hours=72),
    )
    accepted = ReferralAccepted(
        referral_id=local_referral,
        case_id=local_case,
        provider_id=requested.provider_id,
        accepted_at=T0,
    )
    state = fold([_at(e, 0) for e in case_events] + [_at(requested, 0), _at(accepted, 5)])
    assert _cells(state, ("country", "direction", "outcome")) == {("KG", "incoming", "accepted"): 1}
    assert _cells(state, ("time_to_answer",)) == {("under_1_day",): 1}
    # A received case is not an identification of this country.
    assert count(state, Query("cases", ("status",)), T0).total == 0


def test_a_closure_abroad_is_the_last_outcome_on_both_sides() -> None:
    cmd = command()
    transfer = decide([identified(), consent()], cmd)
    assert isinstance(transfer, xb.Transfer)
    requested = xb.requested_event(cmd, package(transfer, cmd))
    ids = {
        "referral_id": requested.referral_id,
        "case_id": requested.case_id,
        "destination": "UZ",
        "package_id": uuid.uuid4(),
    }
    closed = ReferralCrossBorderClosed(**ids)
    late = ReferralCrossBorderCompleted(**{**ids, "package_id": uuid.uuid4()})
    state = fold([_at(identified(), 0), _at(requested, 1), _at(closed, 50), _at(late, 60)])
    assert _cells(state, ("direction", "outcome")) == {("outgoing", "closed"): 1}

    pkg = package(transfer, cmd)
    local_case = uuid.uuid4()
    case_events, local_request = xb.plan_reception(
        pkg,
        load_registry(country="uz"),
        local_case,
        uuid.uuid4(),
        uuid.uuid4(),
        {},
        T0,
        dt.timedelta(hours=72),
    )
    here = CaseClosed(
        case_id=local_case,
        owner="uz-coordinating-body",
        closed_by="uz-coordinating-body",
        reason=ClosureReason.REINTEGRATED,
    )
    state = fold([_at(e, 0) for e in case_events] + [_at(local_request, 0), _at(here, 30)])
    assert _cells(state, ("direction", "outcome")) == {("incoming", "closed"): 1}
