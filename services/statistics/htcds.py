"""Counts of identified victims under the field names of the Human Trafficking Case Data
Standard (HTCDS, IOM, github.com/UNMigration/HTCDS), for international reporting.

HTCDS describes case records; the hub exports aggregate counts instead (one row per
combination of values, with `nrm_Count`), never a record per person. A column has its HTCDS
name where the hub holds the same thing, and an `nrm_` name where HTCDS has no such field.
The mapping, and what does not map, is in docs/STATISTICS.md.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import Counter

from contracts.vocabulary import FormOfExploitation
from services.statistics.disclosure import suppress
from services.statistics.projection import CaseFacts, StatsState
from services.statistics.publish import STANDARD, figures

COLUMNS = (
    "nrm_Year",
    "prs_Gender",
    "nrm_AgeGroup",
    "prs_Nationality",
    "vic_TypeOfExploitation",
    "vic_LocationOfExploitation",
    "nrm_Count",
)
OTHER_COMBINATIONS = "(other)"

# The hub's forms of exploitation -> HTCDS vic_TypeOfExploitation values.
TYPE_OF_EXPLOITATION: dict[str, str] = {
    FormOfExploitation.SEX_TRAFFICKING: "SexualExploitation",
    FormOfExploitation.ONLINE_SEXUAL_EXPLOITATION: "SexualExploitation",
    FormOfExploitation.FORCED_LABOUR: "ForcedLabour",
    FormOfExploitation.DOMESTIC_SERVITUDE: "ForcedLabour",
    FormOfExploitation.FORCED_CRIMINALITY: "IllicitActivities",
    FormOfExploitation.FORCED_BEGGING: "Begging",
    FormOfExploitation.FORCED_MARRIAGE: "ForcedMarriage",
    FormOfExploitation.ORGAN_REMOVAL: "OrganRemoval",
    FormOfExploitation.ARMED_CONFLICT: "ForcedMilitaryService",
}
GENDER = {"female": "Female", "male": "Male"}


def htcds_row(case: CaseFacts) -> tuple[str, ...]:
    types = sorted({TYPE_OF_EXPLOITATION[f] for f in case.forms}) or ["Unknown"]
    return (
        str(case.interviewed_on.year),
        GENDER[case.sex],
        "Child" if case.is_child else "Adult",
        case.citizenship,
        ";".join(types),  # HTCDS multiselect: one row per combination, a case counts once
        case.country_of_exploitation or "Unknown",
    )


def _public_total_hidden(
    state: StatsState, at: dt.datetime, threshold: int, start: dt.date | None, end: dt.date | None
) -> bool:
    tables = figures(state, STANDARD, at, public=True, threshold=threshold, start=start, end=end)
    by_region = next(t for t in tables.tables if t.query.by == ("region", "sex"))
    return by_region.total is None


def export(
    state: StatsState,
    at: dt.datetime,
    *,
    public: bool = False,
    threshold: int = 5,
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> str:
    """CSV of identified victims by HTCDS fields. Public: consented cases only; combinations
    seen fewer than `threshold` times are pooled as `(other)`, and the rows and total are
    suppressed like any public table."""
    allowed = state.publishable_cases(at) if public else None
    counted: Counter[tuple[str, ...]] = Counter(
        htcds_row(c)
        for c in state.all_cases()
        if c.status == "identified"
        and (start is None or c.interviewed_on >= start)
        and (end is None or c.interviewed_on <= end)
        and (allowed is None or id(c) in allowed)
    )
    rows = sorted(counted.items())
    counts: list[int | None] = [n for _, n in rows]
    total: int | None = sum(n for _, n in rows)
    if public:
        kept = [(k, n) for k, n in rows if n >= threshold]
        pooled = sum(n for _, n in rows if n < threshold)
        rows = [*kept, ((OTHER_COMBINATIONS,) * (len(COLUMNS) - 1), pooled)]
        # The total is the identified victims of the period, which the public tables also
        # print: hide it here whenever they hide it.
        hide = [(len(rows), 0)] if _public_total_hidden(state, at, threshold, start, end) else []
        hidden = suppress([[n] for _, n in rows], threshold, hide=hide)
        counts = [None if h[0] else n for (_, n), h in zip(rows, hidden.cells, strict=True)]
        total = None if hidden.total else total
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for (key, _), n in zip(rows, counts, strict=True):
        writer.writerow([*key, "x" if n is None else n])
    writer.writerow([*(["(all)"] * (len(COLUMNS) - 1)), "x" if total is None else total])
    return out.getvalue()
