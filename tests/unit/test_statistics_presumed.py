"""Presumed victims in the statistics: a case counts once, by its latest outcome; presumed
cases are their own status, and the `presumption` field says how many were decided which way.
Public figures are unchanged: identified victims, consented cases only."""

from __future__ import annotations

import datetime as dt
import uuid

from contracts.commands import Consent
from contracts.envelope import Envelope, wrap_event
from contracts.events import (
    Event,
    ScreeningRecord,
    UnmetCriterion,
    VictimIdentified,
    VictimNotIdentified,
    VictimPresumed,
)
from contracts.vocabulary import (
    AgeBand,
    AgencyKind,
    FormOfExploitation,
    Region,
    Sector,
    Sex,
)
from services.identifier.presumed import profile_of
from services.statistics.projection import fold
from services.statistics.publish import STANDARD, figures
from services.statistics.tables import Query, count

NOW = dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC)
AT = NOW + dt.timedelta(days=1)


def _wrap(event: Event) -> Envelope:
    return wrap_event(
        event,
        event_id=uuid.uuid4(),
        source="urn:nrm-hub:kg:test",
        time=NOW,
        correlation_id=None,
        causation_id=None,
    )


def _presumed() -> VictimPresumed:
    return VictimPresumed(
        case_id=uuid.uuid4(),
        agency_id="kg-health-osh",
        agency_kind=AgencyKind.HEALTH,
        sector=Sector.GOVERNMENT,
        region=Region.OSH_CITY,
        interviewed_on=NOW.date(),
        sex=Sex.FEMALE,
        age_band=AgeBand.FROM_25_TO_34,
        is_child=False,
        citizenship="KG",
        country_of_exploitation=None,
        forms_of_exploitation=(),
        vulnerabilities=(),
        personal_data={},
        needs=(),
        consent=Consent(),
        decision_due=NOW + dt.timedelta(days=30),
    )


def _identified(record: ScreeningRecord) -> VictimIdentified:
    profile = {**profile_of(record), "forms_of_exploitation": (FormOfExploitation.FORCED_LABOUR,)}
    return VictimIdentified.model_validate(
        {**profile, "purposes": (), "needs": (), "consent": Consent()}
    )


def _not_identified(record: ScreeningRecord) -> VictimNotIdentified:
    unmet = (UnmetCriterion(criterion="means", reason="no means found"),)
    return VictimNotIdentified.model_validate({**profile_of(record), "unmet_criteria": unmet})


def _cells(by: str) -> dict[str, int]:
    table = count(STATE, Query("cases", (by,)), AT)
    return dict(zip(table.rows, table.row_totals, strict=True))


# Three presumed: one still pending, one identified, one not identified and later
# overturned on review; and one screened not identified from the start.
PENDING, IDENTIFIED, OVERTURNED = _presumed(), _presumed(), _presumed()
FROM_THE_START = _not_identified(_presumed())
HISTORY = [
    PENDING,
    IDENTIFIED,
    OVERTURNED,
    FROM_THE_START,
    _identified(IDENTIFIED),
    _not_identified(OVERTURNED),
    _identified(OVERTURNED),
]
# Delivered twice, the second time out of order: nothing changes.
STATE = fold([_wrap(e) for e in (*HISTORY, *reversed(HISTORY))])


def test_a_case_counts_once_by_its_latest_outcome() -> None:
    assert len(STATE.all_cases()) == 4
    assert _cells("status") == {"identified": 2, "not_identified": 1, "presumed": 1}
    identified = STATE.cases[IDENTIFIED.case_id]
    assert identified.forms == ("forced_labour",)  # the decision's forms


def test_presumed_cases_are_counted_pending_and_decided() -> None:
    assert _cells("presumption") == {
        "none": 1,
        "pending": 1,
        "decided_identified": 1,
        "decided_not_identified": 1,  # since overturned on review: identified now
    }


def test_public_figures_leave_the_presumption_out() -> None:
    public = figures(STATE, STANDARD, AT, public=True, threshold=1)
    assert all("presumption" not in p.query.by for p in public.tables)
    internal = figures(STATE, STANDARD, AT)
    assert any(p.query.by == ("presumption",) for p in internal.tables)
