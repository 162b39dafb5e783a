"""The statistics projection equals a straightforward count over what happened.

A seeded generator writes the events of a few hundred screenings (with referrals, shelter
placements, consents, withdrawals, duplicates and erasures) and keeps the truth beside them;
every cell of every table below is compared with a plain count over that truth."""

from __future__ import annotations

import datetime as dt
import itertools
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from services.statistics.projection import StatsState, fold
from services.statistics.tables import Query, QueryError, Table, count
from tests.unit.synthetic_stats import REPORT_AT, TrueCase, TruePlacement, generate

SYNTHETIC = generate(seed=8, n=400)


def _hours(a: dt.datetime, b: dt.datetime) -> float:
    return (b - a).total_seconds() / 3600


def _service_band(case: TrueCase) -> str:
    served = [r.served_at for r in case.referrals if r.served_at and r.served_at <= REPORT_AT]
    if not served:
        return "no_service_yet"
    h = _hours(case.recorded_at, min(served))
    return (
        "under_1_day"
        if h < 24
        else "1_to_3_days"
        if h < 72
        else "3_to_7_days"
        if h < 168
        else "7_to_30_days"
        if h < 720
        else "over_30_days"
    )


def _case_fields(c: TrueCase) -> dict[str, Any]:
    return {
        "month": c.interviewed_on.strftime("%Y-%m"),
        "year": str(c.interviewed_on.year),
        "status": c.status,
        "region": c.region,
        "sector": c.sector,
        "agency_kind": c.agency_kind,
        "sex": c.sex,
        "age_group": "child" if c.is_child else "adult",
        "age_band": c.age_band,
        "citizenship": c.citizenship,
        "country_of_exploitation": c.country or "unknown",
        "form": c.forms or ("not_recorded",),
        "time_to_service": _service_band(c),
        "duplicate": "suspected" if c.duplicate else "no",
    }


def _placement_status(p: TruePlacement) -> str:
    def by(t: dt.datetime | None) -> bool:
        return t is not None and t <= REPORT_AT

    return (
        "discharged"
        if by(p.discharged_at)
        else "resident"
        if by(p.admitted_at)
        else "left_waiting_list"
        if by(p.left_at)
        else "refused"
        if p.refused
        else "waiting"
    )


def _wait(p: TruePlacement) -> str:
    if p.refused:
        return "refused"
    if p.waitlisted_at is None:
        return "admitted_at_once"
    if p.admitted_at is not None and p.admitted_at <= REPORT_AT:
        h = _hours(p.waitlisted_at, p.admitted_at)
        return (
            "under_1_day"
            if h < 24
            else "1_to_7_days"
            if h < 168
            else "7_to_30_days"
            if h < 720
            else "over_30_days"
        )
    return "left_waiting_list" if p.left_at else "still_waiting"


def _truth_rows(unit: str, cases: Iterable[TrueCase]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for c in cases:
        if unit == "cases":
            rows.append(_case_fields(c))
        elif unit == "referrals":
            for r in c.referrals:
                rows.append(
                    {
                        "month": r.requested_at.strftime("%Y-%m"),
                        "service": r.service,
                        "outcome": r.outcome,
                        "region": c.region,
                        "sex": c.sex,
                        "age_group": "child" if c.is_child else "adult",
                        "decline_reason": r.decline_reason or "none",
                        "escalated": "yes" if r.escalated else "no",
                    }
                )
        else:
            for p in c.placements:
                rows.append(
                    {
                        "month": p.first_seen_at.strftime("%Y-%m"),
                        "category": p.category,
                        "shelter_region": p.shelter_region,
                        "status": _placement_status(p),
                        "wait": _wait(p),
                    }
                )
    return rows


def _plain_count(
    rows: list[dict[str, Any]],
    by: tuple[str, ...],
    keep: Callable[[dict[str, Any]], bool] = lambda r: True,
) -> Counter[tuple]:
    counted: Counter[tuple] = Counter()
    for row in rows:
        if not keep(row):
            continue
        values = [row[f] if isinstance(row[f], tuple) else (row[f],) for f in by]
        for combo in itertools.product(*values):
            counted[combo] += 1
    return counted


def _as_counter(table: Table) -> Counter[tuple]:
    return Counter(
        {
            (r, *c): table.cells[i][j]
            for i, r in enumerate(table.rows)
            for j, c in enumerate(table.cols)
            if table.cells[i][j]
        }
    )


@pytest.fixture(scope="module")
def state() -> StatsState:
    return fold(SYNTHETIC.envelopes)


QUERIES = [
    ("cases", ("status",)),
    ("cases", ("region", "status")),
    ("cases", ("month", "region")),
    ("cases", ("sector", "agency_kind")),
    ("cases", ("sex", "age_group", "age_band")),
    ("cases", ("citizenship",)),
    ("cases", ("country_of_exploitation", "sex")),
    ("cases", ("form", "age_group")),
    ("cases", ("time_to_service",)),
    ("cases", ("duplicate", "year")),
    ("referrals", ("service", "outcome")),
    ("referrals", ("decline_reason",)),
    ("referrals", ("escalated", "region")),
    ("referrals", ("month", "sex", "age_group")),
    ("placements", ("category", "status")),
    ("placements", ("category", "wait")),
    ("placements", ("shelter_region", "month")),
]


@pytest.mark.parametrize(("unit", "by"), QUERIES)
def test_every_cell_equals_a_plain_count_of_what_happened(
    state: StatsState, unit: str, by: tuple[str, ...]
) -> None:
    table = count(state, Query(unit=unit, by=by), REPORT_AT)
    expected = _plain_count(_truth_rows(unit, SYNTHETIC.truth), by)
    assert _as_counter(table) == expected
    assert sum(expected.values()) > 0


def test_the_synthetic_stream_is_a_few_hundred_cases_of_every_kind(state: StatsState) -> None:
    truth = SYNTHETIC.truth
    assert len(truth) == 400 and len(SYNTHETIC.envelopes) > 1500
    assert {c.status for c in truth} == {"identified", "not_identified"}
    assert sum(c.erased for c in truth) >= 5 and sum(c.duplicate for c in truth) >= 5
    assert sum(c.statistics_consent for c in truth) >= 100
    assert state.ignored == Counter()


def test_period_and_where_filters_count_only_what_they_name(state: StatsState) -> None:
    start, end = dt.date(2025, 4, 1), dt.date(2025, 9, 30)
    table = count(
        state,
        Query(
            unit="cases",
            by=("region", "sex"),
            start=start,
            end=end,
            where=(("status", "identified"), ("form", "forced_labour")),
        ),
        REPORT_AT,
    )
    expected = _plain_count(
        [
            r | {"day": c.interviewed_on}
            for c, r in zip(SYNTHETIC.truth, _truth_rows("cases", SYNTHETIC.truth), strict=True)
        ],
        ("region", "sex"),
        lambda r: (
            start <= r["day"] <= end
            and r["status"] == "identified"
            and "forced_labour" in r["form"]
        ),
    )
    assert _as_counter(table) == expected and sum(expected.values()) > 0


def test_months_without_cases_are_rows_of_zeros(state: StatsState) -> None:
    table = count(
        state,
        Query(unit="cases", by=("month",), start=dt.date(2024, 11, 1), end=dt.date(2025, 2, 28)),
        REPORT_AT,
    )
    assert table.rows == ("2024-11", "2024-12", "2025-01", "2025-02")
    assert table.cells[0] == (0,) and table.cells[1] == (0,)


def test_erased_cases_stay_counted_and_their_ids_are_gone(state: StatsState) -> None:
    erased = [cid for cid, c in zip(SYNTHETIC.case_ids, SYNTHETIC.truth, strict=True) if c.erased]
    assert erased
    assert len(state.all_cases()) == len(SYNTHETIC.truth)
    assert len(state.erased_cases) == len(erased)
    for case_id in erased:
        assert case_id not in state.cases and case_id not in state.consents
    assert not any(hasattr(c, "case_id") for c in state.all_cases())


def test_public_cases_are_those_whose_consent_in_force_covers_statistics(
    state: StatsState,
) -> None:
    public = state.publishable_cases(REPORT_AT)
    table = count(state, Query(unit="cases", by=("region", "sex")), REPORT_AT, public_cases=public)
    expected = _plain_count(
        _truth_rows("cases", [c for c in SYNTHETIC.truth if c.statistics_consent]),
        ("region", "sex"),
    )
    assert _as_counter(table) == expected
    referrals = count(
        state, Query(unit="referrals", by=("service",)), REPORT_AT, public_cases=public
    )
    assert _as_counter(referrals) == _plain_count(
        _truth_rows("referrals", [c for c in SYNTHETIC.truth if c.statistics_consent]), ("service",)
    )


def test_reading_the_stream_again_from_the_start_changes_nothing() -> None:
    numbered = list(enumerate(SYNTHETIC.envelopes, start=1))
    twice = fold(numbered[:1000])
    fold(numbered, twice)  # a reader restarted from the beginning
    once = fold(SYNTHETIC.envelopes)
    q = Query(unit="referrals", by=("service", "outcome"))
    assert count(twice, q, REPORT_AT).cells == count(once, q, REPORT_AT).cells
    assert len(twice.all_cases()) == len(once.all_cases())


def test_rare_values_of_open_fields_are_pooled_as_other(state: StatsState) -> None:
    table = count(state, Query(unit="cases", by=("citizenship",)), REPORT_AT, rare_below=60)
    plain = _plain_count(_truth_rows("cases", SYNTHETIC.truth), ("citizenship",))
    assert table.rows[-1] == "other"
    assert all(plain[(r,)] >= 60 for r in table.rows[:-1])
    assert table.total == sum(plain.values())


def test_a_stream_without_cross_border_referrals_counts_none(state: StatsState) -> None:
    table = count(state, Query(unit="cross_border", by=("country", "outcome")), REPORT_AT)
    assert table.rows == () and table.total == 0


@pytest.mark.parametrize(
    ("query", "field"),
    [
        (Query(unit="cases", by=("colour",)), "--by"),
        (Query(unit="people", by=("region",)), "--of"),
        (Query(unit="cases", by=()), "--by"),
        (Query(unit="cases", by=("sex", "sex")), "--by"),
        (Query(unit="cases", by=("sex",), where=(("region", "mars"),)), "--where"),
    ],
)
def test_bad_queries_name_the_option(state: StatsState, query: Query, field: str) -> None:
    with pytest.raises(QueryError, match=field):
        count(state, query, REPORT_AT)
