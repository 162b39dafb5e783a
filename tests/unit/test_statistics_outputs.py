"""What `nrm stats` prints: public figures never show a count below the threshold, the
internal ones are the plain counts, and the HTCDS export adds up."""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict

import pytest

from contracts.vocabulary import FormOfExploitation
from services.statistics.disclosure import Suppression
from services.statistics.htcds import COLUMNS, TYPE_OF_EXPLOITATION, export
from services.statistics.projection import StatsState, fold
from services.statistics.publish import (
    STANDARD,
    Published,
    _is_hidden,
    as_csv,
    as_json,
    as_text,
    figures,
    shared_margins,
)
from services.statistics.report import render
from services.statistics.tables import ALL, Table, count
from tests.unit.disclosure_oracle import bounds
from tests.unit.synthetic_stats import REPORT_AT, generate

SYNTHETIC = generate(seed=21, n=300)


@pytest.fixture(scope="module")
def state() -> StatsState:
    return fold(SYNTHETIC.envelopes)


@pytest.mark.parametrize("threshold", [3, 5, 10])
def test_public_figures_never_show_a_count_below_the_threshold(
    state: StatsState, threshold: int
) -> None:
    result = figures(state, STANDARD, REPORT_AT, public=True, threshold=threshold)
    shown = [
        e["count"]
        for t in result.to_json()["tables"]
        for e in t["entries"]
        if e["count"] is not None
    ]
    assert shown and min(shown) >= threshold
    for row in csv.DictReader(io.StringIO(as_csv(result.tables))):
        assert row["count"] == "x" or int(row["count"]) >= threshold
    assert sum(t.hidden for t in result.tables) > 0


def test_public_figures_count_only_cases_consenting_to_statistics(state: StatsState) -> None:
    result = figures(state, STANDARD, REPORT_AT, public=True, threshold=1)
    by_region = next(t for t in result.tables if t.query.by == ("region", "sex"))
    consenting = sum(
        1 for c in SYNTHETIC.truth if c.statistics_consent and c.status == "identified"
    )
    assert by_region.total == consenting
    everyone = figures(state, STANDARD, REPORT_AT)
    internal = next(t for t in everyone.tables if t.query.by == ("region", "sex"))
    assert internal.total == sum(1 for c in SYNTHETIC.truth if c.status == "identified")
    assert internal.total > by_region.total


def test_internal_json_entries_are_the_table_cells_and_margins(state: StatsState) -> None:
    result = figures(state, STANDARD, REPORT_AT)
    data = json.loads(as_json(result))
    assert data["public"] is False and data["events_read"] == len(SYNTHETIC.envelopes)
    for table, published in zip(data["tables"], result.tables, strict=True):
        row_field = table["by"][0]
        cells = [e for e in table["entries"] if ALL not in e.values()]
        assert sum(e["count"] for e in cells) == published.total
        *_, grand = table["entries"]
        assert grand == {**{f: ALL for f in table["by"]}, "count": published.total}
        assert row_field in grand


def test_no_output_carries_a_case_id(state: StatsState) -> None:
    outputs = [
        as_text(figures(state, STANDARD, REPORT_AT)),
        as_json(figures(state, STANDARD, REPORT_AT, public=True)),
        as_csv(figures(state, STANDARD, REPORT_AT).tables),
        render(figures(state, STANDARD, REPORT_AT)),
        export(state, REPORT_AT),
    ]
    for case_id in SYNTHETIC.case_ids:
        assert not any(str(case_id) in out for out in outputs)


def test_every_form_of_exploitation_has_an_htcds_type() -> None:
    assert set(TYPE_OF_EXPLOITATION) == set(FormOfExploitation)


def test_htcds_export_counts_every_identified_victim_once(state: StatsState) -> None:
    rows = list(csv.DictReader(io.StringIO(export(state, REPORT_AT))))
    assert tuple(rows[0]) == COLUMNS
    *cells, total = rows
    identified = sum(1 for c in SYNTHETIC.truth if c.status == "identified")
    assert sum(int(r["nrm_Count"]) for r in cells) == identified == int(total["nrm_Count"])
    assert {r["prs_Gender"] for r in cells} <= {"Female", "Male"}
    assert any(";" in r["vic_TypeOfExploitation"] for r in cells)  # multiselect combinations


def test_public_htcds_export_pools_rare_combinations_and_hides_small_counts(
    state: StatsState,
) -> None:
    rows = list(csv.DictReader(io.StringIO(export(state, REPORT_AT, public=True, threshold=3))))
    assert rows[-2]["prs_Gender"] == "(other)"
    for r in rows:
        assert r["nrm_Count"] == "x" or int(r["nrm_Count"]) >= 3


def _suppression_of(t: Published) -> Suppression:
    return Suppression(
        cells=tuple(tuple(v is None for v in row) for row in t.cells),
        row_totals=tuple(v is None for v in t.row_totals),
        col_totals=tuple(v is None for v in t.col_totals),
        total=t.total is None,
    )


@pytest.mark.parametrize("threshold", [3, 5])
def test_a_figure_two_public_tables_share_is_hidden_in_both_or_in_neither(
    state: StatsState, threshold: int
) -> None:
    result = figures(state, STANDARD, REPORT_AT, public=True, threshold=threshold)
    seen: dict[tuple, set[int | None]] = defaultdict(set)
    for t in result.tables:
        if not t.rows:
            continue
        hidden = _suppression_of(t)
        n_rows, n_cols = len(t.rows), len(t.cols)
        table = Table(t.query, t.rows, t.cols, ())
        for (i, j), key in shared_margins(table).items():
            hide = _is_hidden(hidden, (i, j), n_rows, n_cols)
            value = None if hide else extended(t)[i][j]
            seen[key].add(value)
    shared = {k: v for k, v in seen.items() if len(v) > 1}
    assert not shared, f"shown in one table, hidden or different in another: {shared}"
    # Region totals appear in two standard tables: the check above has something to check.
    regions = [k for k in seen if k[3] == (("region", "osh_city"), ("status", "identified"))]
    assert regions


@pytest.mark.parametrize("threshold", [3, 5])
def test_no_hidden_public_figure_can_be_worked_out_from_its_table(
    state: StatsState, threshold: int
) -> None:
    public = state.publishable_cases(REPORT_AT)
    result = figures(state, STANDARD, REPORT_AT, public=True, threshold=threshold)
    for t in result.tables:
        if not t.rows:
            continue
        cells = count(state, t.query, REPORT_AT, public_cases=public, rare_below=threshold).cells
        for p, (low, high) in bounds([list(r) for r in cells], _suppression_of(t)).items():
            assert high is None or low < high, f"{t.query.title}: hidden {p} is recoverable"


def extended(t: Published) -> list[list[int | None]]:
    return [[*r, t.row_totals[i]] for i, r in enumerate(t.cells)] + [[*t.col_totals, t.total]]


@pytest.mark.parametrize("threshold", [5, 200, 1000])
def test_the_public_htcds_total_is_shown_exactly_when_the_public_tables_show_it(
    state: StatsState, threshold: int
) -> None:
    rows = list(
        csv.DictReader(io.StringIO(export(state, REPORT_AT, public=True, threshold=threshold)))
    )
    tables = figures(state, STANDARD, REPORT_AT, public=True, threshold=threshold)
    by_region = next(t for t in tables.tables if t.query.by == ("region", "sex"))
    shown = rows[-1]["nrm_Count"]
    assert shown == ("x" if by_region.total is None else str(by_region.total))
