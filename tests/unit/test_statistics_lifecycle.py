"""The case lifecycle in the statistics: open and closed cases (HTCDS status), closure
reasons, time from identification to closure, reopened and transferred cases, counted from
the events and with the same public suppression as every other table."""

from __future__ import annotations

import datetime as dt
import uuid

from contracts.envelope import Envelope, wrap_event
from contracts.events import (
    CaseClosed,
    CaseReopened,
    CaseTransferred,
    Event,
    FollowUpRecorded,
    FollowUpScheduled,
)
from contracts.vocabulary import (
    ClosureReason,
    FollowUpOutcome,
    FollowUpPurpose,
    LegalBasis,
    Region,
    ReopenReason,
    Service,
)
from services.statistics.projection import fold
from services.statistics.publish import figures
from services.statistics.tables import Query, count
from tests.unit.test_statistics_unmet_needs import _case, _statistics_consent

T0 = dt.datetime(2026, 3, 1, 9, tzinfo=dt.UTC)
OWNER = "kg-health-osh"


def _at(event: Event, days: float) -> Envelope:
    return wrap_event(
        event,
        event_id=uuid.uuid4(),
        source="urn:nrm-hub:kg:test",
        time=T0 + dt.timedelta(days=days),
        correlation_id=None,
        causation_id=None,
    )


def _closed(case_id: uuid.UUID, reason: ClosureReason) -> CaseClosed:
    return CaseClosed(case_id=case_id, owner=OWNER, closed_by=OWNER, reason=reason)


def _cells(state: object, by: tuple[str, ...], at: dt.datetime) -> dict[str, int]:
    table = count(state, Query("cases", by), at)  # type: ignore[arg-type]
    return {row: total for row, total in zip(table.rows, table.row_totals, strict=True) if total}


def test_open_closed_and_closed_referred_cases_with_their_reasons() -> None:
    kept, reintegrated, abroad = (
        _case(Region.OSH_CITY, False, (Service.LEGAL_AID,)) for _ in "abc"
    )
    state = fold(
        [
            _at(kept, 0),
            _at(reintegrated, 0),
            _at(abroad, 0),
            _at(_closed(reintegrated.case_id, ClosureReason.REINTEGRATED), 40),
            _at(_closed(abroad.case_id, ClosureReason.TRANSFERRED_ABROAD), 200),
        ]
    )
    late = T0 + dt.timedelta(days=365)
    assert _cells(state, ("case_status",), late) == {"active": 1, "closed": 1, "closed_referred": 1}
    assert _cells(state, ("closure_reason",), late) == {
        "reintegrated": 1,
        "transferred_abroad": 1,
        "not_closed": 1,
    }
    assert _cells(state, ("time_to_closure",), late) == {
        "30_to_90_days": 1,
        "over_180_days": 1,
        "not_closed": 1,
    }
    # At an earlier report time, what closed later is still active.
    assert _cells(state, ("case_status",), T0 + dt.timedelta(days=50)) == {
        "active": 2,
        "closed": 1,
    }


def test_reopening_and_transfer_are_counted() -> None:
    case = _case(Region.CHUY, False, (Service.SHELTER,))
    reopened = CaseReopened(
        case_id=case.case_id, owner=OWNER, reopened_by=OWNER, reason=ReopenReason.RE_TRAFFICKED
    )
    transferred = CaseTransferred(
        case_id=case.case_id, from_agency=OWNER, to_agency="kg-social-osh"
    )
    state = fold(
        [
            _at(case, 0),
            _at(_closed(case.case_id, ClosureReason.LOST_CONTACT), 10),
            _at(reopened, 20),
            _at(transferred, 21),
        ]
    )
    late = T0 + dt.timedelta(days=30)
    assert _cells(state, ("case_status",), late) == {"active": 1}
    assert _cells(state, ("reopened",), late) == {"yes": 1}
    assert _cells(state, ("time_to_closure",), late) == {"not_closed": 1}
    assert _cells(state, ("transferred",), late) == {"yes": 1}


def test_public_closure_figures_are_suppressed_like_the_others() -> None:
    cases = [_case(Region.OSH_CITY, False, (Service.LEGAL_AID,)) for _ in range(6)]
    envelopes = []
    for case in cases:
        envelopes += [_at(case, 0), _at(_statistics_consent(case), 0)]
    envelopes += [_at(_closed(c.case_id, ClosureReason.REINTEGRATED), 60) for c in cases[:5]]
    envelopes.append(_at(_closed(cases[5].case_id, ClosureReason.DECEASED), 60))
    state = fold(envelopes)
    query = Query("cases", ("closure_reason",), title="Closure reasons")
    at = T0 + dt.timedelta(days=90)
    public = figures(state, [query], at, public=True, threshold=5).tables[0]
    rows = dict(zip(public.rows, public.row_totals, strict=True))
    assert rows["reintegrated"] == 5
    assert rows["deceased"] is None  # one person: never published


def test_a_pending_follow_up_makes_an_open_case_follow_up() -> None:
    case = _case(Region.CHUY, False, (Service.SHELTER,))
    followup = uuid.uuid4()
    scheduled = FollowUpScheduled(
        case_id=case.case_id,
        followup_id=followup,
        due_on=dt.date(2026, 6, 1),
        purpose=FollowUpPurpose.POST_DISCHARGE,
        scheduled_by=OWNER,
        recorded_at=T0,
    )
    recorded = FollowUpRecorded(
        case_id=case.case_id,
        followup_id=followup,
        outcome=FollowUpOutcome.IN_CONTACT_STABLE,
        recorded_by=OWNER,
        recorded_at=T0,
    )
    late = T0 + dt.timedelta(days=100)
    pending = fold([_at(case, 0), _at(scheduled, 1)])
    assert _cells(pending, ("case_status",), late) == {"follow_up": 1}
    done = fold([_at(case, 0), _at(scheduled, 1), _at(recorded, 90)])
    assert _cells(done, ("case_status",), late) == {"active": 1}
    assert _cells(done, ("followed_up",), late) == {"yes": 1}
    closed = fold(
        [_at(case, 0), _at(scheduled, 1), _at(_closed(case.case_id, ClosureReason.OTHER), 2)]
    )
    assert _cells(closed, ("case_status",), late) == {"closed": 1}


def test_re_referrals_are_counted_apart_from_first_referrals() -> None:
    from services.referral.domain import plan_needs
    from tests.unit.test_statistics_unmet_needs import REGISTRY

    case = _case(Region.OSH_CITY, False, (Service.LEGAL_AID,))
    [(_, first)] = plan_needs(case, REGISTRY, T0, dt.timedelta(hours=72))[0]
    again = first.model_copy(update={"referral_id": uuid.uuid4(), "attempt": 1})
    state = fold([_at(case, 0), _at(first, 0), _at(again, 3)])
    table = count(state, Query("referrals", ("service", "referral_kind")), T0)
    row = dict(zip(table.rows, table.cells, strict=True))["legal_aid"]
    assert dict(zip((c[0] for c in table.cols), row, strict=True)) == {
        "first": 1,
        "re_referral": 1,
    }


def test_a_childs_own_consent_does_not_make_the_case_public() -> None:
    child = _case(Region.BATKEN, True, (Service.SHELTER,))
    own = _statistics_consent(child)  # informed consent: the child's own
    guardian = own.model_copy(update={"legal_basis": LegalBasis.GUARDIAN_CONSENT})
    at = T0 + dt.timedelta(days=1)
    assert fold([_at(child, 0), _at(own, 0)]).publishable_cases(at) == set()
    assert len(fold([_at(child, 0), _at(guardian, 0)]).publishable_cases(at)) == 1
