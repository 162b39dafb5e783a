"""Figures as the coordinating body or the public sees them: the standard tables, public
filtering and suppression, and the table / CSV / JSON formats.

Public figures (`public=True`) count only cases whose consent in force covers `statistics`,
pool rare values of open fields (citizenship, country) as `other`, and hide every entry below
the threshold plus whatever else `disclosure.suppress` needs. Hidden entries are `x` in
tables and CSV, `null` in JSON.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from services.i18n.catalogue import Language, language
from services.statistics.disclosure import Position, Suppression, suppress
from services.statistics.projection import StatsState
from services.statistics.tables import ALL, UNITS, Query, Table, count

DEFAULT_THRESHOLD = 5
HIDDEN = "x"
_IDENTIFIED = (("status", "identified"),)

# What `nrm stats` prints without --by, and what the report draws.
STANDARD: tuple[Query, ...] = (
    # Not identified persons rarely consent to statistics: in public this table would be a
    # row of zeros whose protection hides the identified total in every other table.
    Query(
        "cases",
        ("status", "sector"),
        title="Screened persons by decision and sector",
        published=False,
    ),
    # Presumed victims, pending and decided: for the coordinating body (few, and rarely
    # consented to statistics before the decision).
    Query(
        "cases",
        ("presumption",),
        title="Presumed victims: awaiting a decision, decided (none: never presumed)",
        published=False,
    ),
    Query("cases", ("sector",), _IDENTIFIED, title="Identified victims by identifying sector"),
    Query("cases", ("region", "sex"), _IDENTIFIED, title="Identified victims by region and sex"),
    Query("cases", ("month", "region"), _IDENTIFIED, title="Identifications by month and region"),
    Query(
        "cases",
        ("form", "age_group"),
        _IDENTIFIED,
        title="Forms of exploitation (mentions) by age group",
    ),
    Query("cases", ("age_band", "sex"), _IDENTIFIED, title="Identified victims by age and sex"),
    Query("cases", ("citizenship",), _IDENTIFIED, title="Identified victims by citizenship"),
    Query(
        "cases",
        ("country_of_exploitation",),
        _IDENTIFIED,
        title="Identified victims by country of exploitation",
    ),
    Query("cases", ("agency_kind",), _IDENTIFIED, title="Identifications by kind of agency"),
    Query(
        "cases",
        ("time_to_service",),
        _IDENTIFIED,
        title="Time from identification to first service",
    ),
    Query(
        "cases",
        ("case_status", "closure_reason"),
        _IDENTIFIED,
        title="Identified victims' cases by status and closure reason",
    ),
    Query(
        "cases",
        ("time_to_closure",),
        _IDENTIFIED,
        title="Time from identification to closure",
    ),
    Query("referrals", ("service", "outcome"), title="Referrals by service and outcome"),
    Query(
        "referrals",
        ("service", "referral_kind"),
        title="First referrals and re-referrals by service",
    ),
    Query("placements", ("category", "status"), title="Shelter placements by category"),
    Query("placements", ("category", "wait"), title="Shelter waiting time by category"),
    Query(
        "cross_border",
        ("country", "direction"),
        title="Cross-border referrals by country, sent and received",
    ),
    Query(
        "cross_border",
        ("direction", "outcome"),
        title="Cross-border referrals by outcome",
    ),
    Query(
        "cross_border",
        ("direction", "time_to_answer"),
        title="Cross-border referrals: time to the first answer",
    ),
    Query("unmet_needs", ("service", "region"), title="Unmet needs by service and region"),
    Query("unmet_needs", ("service", "category"), title="Unmet needs by service and category"),
    # Criminal proceedings naming the hub's cases (docs/STATISTICS.md "Criminal proceedings").
    Query(
        "proceedings",
        ("article", "stage"),
        title="Criminal proceedings by article and furthest stage",
    ),
    Query(
        "proceedings",
        ("investigated", "charged"),
        title="Criminal proceedings: investigations and prosecutions (charges brought)",
    ),
    Query(
        "proceedings",
        ("form", "charged"),
        title="Criminal proceedings by form of exploitation (mentions) and prosecution",
    ),
    Query(
        "proceedings",
        ("article", "outcome"),
        (("charged", "yes"),),
        title="Prosecutions by article and court decision",
    ),
    Query(
        "proceedings",
        ("form", "convicted"),
        (("stage", "decided"),),
        title="Court decisions: convictions by form of exploitation (mentions)",
    ),
    Query(
        "proceedings",
        ("sentence",),
        (("convicted", "yes"),),
        title="Convictions by sentence band",
    ),
    Query(
        "proceedings",
        ("time_to_decision",),
        (("stage", "decided"),),
        title="Time from identification to the court's decision",
    ),
    Query(
        "proceedings",
        ("complaint_by",),
        title="Criminal proceedings by who filed the complaint",
    ),
    Query(
        "cases",
        ("reached_court",),
        _IDENTIFIED,
        title="Identified victims whose cases reached court",
    ),
)


@dataclass(frozen=True)
class Published:
    """A table ready to show: counts, or None where hidden."""

    query: Query
    rows: tuple[str, ...]
    cols: tuple[tuple[str, ...], ...]
    cells: tuple[tuple[int | None, ...], ...]
    row_totals: tuple[int | None, ...]
    col_totals: tuple[int | None, ...]
    total: int | None
    hidden: int = 0

    def entries(self) -> list[dict[str, Any]]:
        """Long format: one entry per cell, then the margins with `(all)` for the summed
        fields; `count` None where hidden."""
        row_field, col_fields = self.query.by[0], self.query.by[1:]
        out: list[dict[str, Any]] = []
        for i, r in enumerate(self.rows):
            for j, c in enumerate(self.cols):
                out.append(
                    {
                        row_field: r,
                        **dict(zip(col_fields, c, strict=True)),
                        "count": self.cells[i][j],
                    }
                )
        if col_fields:
            for i, r in enumerate(self.rows):
                out.append(
                    {row_field: r, **{f: ALL for f in col_fields}, "count": self.row_totals[i]}
                )
        for j, c in enumerate(self.cols):
            if col_fields:
                out.append(
                    {
                        row_field: ALL,
                        **dict(zip(col_fields, c, strict=True)),
                        "count": self.col_totals[j],
                    }
                )
        out.append({row_field: ALL, **{f: ALL for f in col_fields}, "count": self.total})
        return out


def publish(
    table: Table, threshold: int | None, suppression: Suppression | None = None
) -> Published:
    """`threshold` None: the coordinating body's figures, nothing hidden. `suppression`:
    decided already (for tables published together, see `suppress_together`)."""
    rows, cols, cells = table.rows, table.cols, table.cells
    if threshold is None:
        return Published(
            table.query, rows, cols, cells, table.row_totals, table.col_totals, table.total
        )
    s = suppression or (suppress([list(r) for r in cells], threshold) if rows else None)

    def shown(value: int, hidden: bool) -> int | None:
        return None if hidden else value

    if s is None:  # no rows at all: the only figure is a zero total, hidden
        return Published(table.query, rows, (), (), (), (), None, hidden=1)
    return Published(
        table.query,
        rows,
        cols,
        tuple(
            tuple(shown(v, h) for v, h in zip(r, hr, strict=True))
            for r, hr in zip(cells, s.cells, strict=True)
        ),
        tuple(shown(v, h) for v, h in zip(table.row_totals, s.row_totals, strict=True)),
        tuple(shown(v, h) for v, h in zip(table.col_totals, s.col_totals, strict=True)),
        shown(table.total, s.total),
        hidden=s.hidden_count(),
    )


SharedKey = tuple[Any, ...]


def shared_margins(table: Table) -> dict[Position, SharedKey]:
    """The margins of `table` (positions in its extended grid) by what they count, so that
    the same figure in two tables has the same key: the unit, the period, the fixed values
    (filters included), and the multi-valued fields summed over (a sum over `form` counts
    mentions, a different figure from a count of cases)."""
    q = table.query
    multi = {d.name for d in UNITS[q.unit].dimensions if d.multi}
    n_rows, n_cols = len(table.rows), len(table.cols)
    row_field, col_fields = q.by[0], q.by[1:]

    def key(fixed: Sequence[tuple[str, str]], summed: Sequence[str]) -> SharedKey:
        return (
            q.unit,
            q.start,
            q.end,
            tuple(sorted({*q.where, *fixed})),
            tuple(sorted(f for f in summed if f in multi)),
        )

    keys: dict[Position, SharedKey] = {}
    for i, r in enumerate(table.rows):
        keys[(i, n_cols)] = key([(row_field, r)], col_fields)
        if not col_fields:  # a one-way table: its cells are its row margins
            keys[(i, 0)] = keys[(i, n_cols)]
    for j, c in enumerate(table.cols):
        if col_fields:
            keys[(n_rows, j)] = key(list(zip(col_fields, c, strict=True)), [row_field])
    keys[(n_rows, n_cols)] = key([], q.by)
    if not col_fields:
        keys[(n_rows, 0)] = keys[(n_rows, n_cols)]
    return keys


def _is_hidden(s: Suppression, pos: Position, n_rows: int, n_cols: int) -> bool:
    i, j = pos
    if i < n_rows and j < n_cols:
        return s.cells[i][j]
    if i < n_rows:
        return s.row_totals[i]
    return s.col_totals[j] if j < n_cols else s.total


def suppress_together(tables: Sequence[Table], threshold: int) -> list[Suppression | None]:
    """Suppress tables published together so that a figure they share (the identified
    victims of a region, in "by region and sex" and in "by month and region") is hidden in
    all of them or in none: otherwise one table would print what another hides to protect a
    cell. Hiding more never exposes anything, so hidden wins and the loop only grows."""
    keys = [shared_margins(t) for t in tables]
    hidden_keys: set[SharedKey] = set()
    while True:
        decided: list[Suppression | None] = []
        now_hidden: set[SharedKey] = set()
        for t, k in zip(tables, keys, strict=True):
            if not t.rows:
                decided.append(None)
                now_hidden.add(k[(0, len(t.cols))])  # the (zero) total: hidden
                continue
            s = suppress(
                [list(r) for r in t.cells],
                threshold,
                hide=[p for p, key in k.items() if key in hidden_keys],
            )
            decided.append(s)
            now_hidden |= {
                key for p, key in k.items() if _is_hidden(s, p, len(t.rows), len(t.cols))
            }
        if now_hidden <= hidden_keys:
            return decided
        hidden_keys |= now_hidden


@dataclass(frozen=True)
class Figures:
    generated_at: dt.datetime
    public: bool
    threshold: int | None
    start: dt.date | None
    end: dt.date | None
    events_read: int
    tables: tuple[Published, ...]
    shelter_capacity: dict[str, int] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "generated_at": self.generated_at.isoformat(),
            "public": self.public,
            "threshold": self.threshold,
            "from": self.start.isoformat() if self.start else None,
            "to": self.end.isoformat() if self.end else None,
            "events_read": self.events_read,
            "shelter_capacity": self.shelter_capacity,
            "notes": list(self.notes),
            "tables": [
                {
                    "title": t.query.title,
                    "unit": t.query.unit,
                    "by": list(t.query.by),
                    "where": dict(t.query.where),
                    "hidden": t.hidden,
                    "entries": t.entries(),
                }
                for t in self.tables
            ],
        }


def figures(
    state: StatsState,
    queries: Sequence[Query],
    at: dt.datetime,
    *,
    public: bool = False,
    threshold: int = DEFAULT_THRESHOLD,
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> Figures:
    public_cases = state.publishable_cases(at) if public else None
    counted = []
    for q in queries:
        if public and not q.published:
            continue
        q = Query(q.unit, q.by, q.where, start or q.start, end or q.end, q.title)
        table = count(
            state, q, at, public_cases=public_cases, rare_below=threshold if public else 0
        )
        counted.append(table)
    if public:
        decided = suppress_together(counted, threshold)
        tables = [publish(t, threshold, s) for t, s in zip(counted, decided, strict=True)]
    else:
        tables = [publish(t, None) for t in counted]
    capacity: dict[str, int] = {}
    for shelter in state.shelters.values():
        for category, beds in shelter.capacity.items():
            capacity[category] = capacity.get(category, 0) + beds
    notes = []
    if state.ignored and not public:  # operational detail, for the coordinating body only
        notes.append(
            "events not used: "
            + ", ".join(f"{name} x{n}" for name, n in sorted(state.ignored.items()))
        )
    return Figures(
        at,
        public,
        threshold if public else None,
        start,
        end,
        state.events_applied,
        tuple(tables),
        dict(sorted(capacity.items())),
        tuple(notes),
    )


def _show(value: int | None) -> str:
    return HIDDEN if value is None else str(value)


def _words(lang: Language, values: Sequence[str]) -> str:
    return " / ".join(lang.word(v) for v in values)


def as_text(f: Figures, lang: Language | None = None) -> str:
    """The figures as text tables for people: titles, headers and codes in `lang`'s words."""
    lang = lang or language()
    period = lang.text("period")
    frame = (
        f"{lang.text('NRM statistics')}{' ' + lang.text('(public)') if f.public else ''} "
        f"{lang.text('as of')} {f.generated_at:%Y-%m-%d %H:%M} UTC; {period} "
        f"{f.start or lang.text('start')} - {f.end or lang.text('now')}; "
        f"{f.events_read} {lang.text('events read')}"
    )
    lines = [frame]
    if f.public:
        lines.append(
            lang.text(
                "Only cases whose consent covers statistics; entries below {threshold} and "
                "those that would reveal them are shown as {hidden}.",
                threshold=f.threshold,
                hidden=HIDDEN,
            )
        )
    total = lang.field("total")
    for t in f.tables:
        title = t.query.title or f"{t.query.unit} by {', '.join(t.query.by)}"
        lines += ["", lang.text(title)]
        head = [lang.field(t.query.by[0])] + [
            _words(lang, c) or lang.field("count") for c in t.cols
        ]
        two_way = len(t.query.by) > 1
        if two_way:
            head.append(total)
        body = [
            [lang.word(r), *(_show(v) for v in t.cells[i])]
            + ([_show(t.row_totals[i])] if two_way else [])
            for i, r in enumerate(t.rows)
        ]
        foot = [total, *(_show(v) for v in t.col_totals)] if two_way else [total]
        foot.append(_show(t.total))
        grid = [head, *body, foot]
        widths = [max(len(row[k]) for row in grid) for k in range(len(head))]
        for row in grid:
            lines.append(
                "  ".join(
                    c.ljust(w) if k == 0 else c.rjust(w)
                    for k, (c, w) in enumerate(zip(row, widths, strict=True))
                )
            )
    beds = ", ".join(f"{lang.word(k)} {v}" for k, v in f.shelter_capacity.items()) or lang.text(
        "none registered"
    )
    lines += ["", f"{lang.text('Shelter beds')}: {beds}"]
    lines += [f"{lang.text('Note')}: {n}" for n in f.notes]
    return "\n".join(lines) + "\n"


def as_csv(
    tables: Sequence[Published], *, with_table: bool = True, lang: Language | None = None
) -> str:
    """One row per entry. The header and the table titles are in `lang`; the values stay
    codes, the same in every language, for whoever reads the file with a program."""
    lang = lang or language()
    fields: list[str] = []
    for t in tables:
        fields += [f for f in t.query.by if f not in fields]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    names = (["table", "unit"] if with_table else []) + fields + ["count"]
    writer.writerow([lang.field(n) for n in names])
    for t in tables:
        for entry in t.entries():
            prefix = [lang.text(t.query.title), t.query.unit] if with_table else []
            writer.writerow(prefix + [entry.get(f, "") for f in fields] + [_show(entry["count"])])
    return out.getvalue()


def as_json(f: Figures) -> str:
    return json.dumps(f.to_json(), indent=2)
