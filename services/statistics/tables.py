"""Counting: units (cases, referrals, placements, cross-border referrals), their dimensions,
periods, and group-by into two-way tables (rows = the first field, columns = the rest).

Everything here is pure: it reads a folded `StatsState` and a report time.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from contracts.vocabulary import (
    AgeBand,
    AgencyKind,
    ClosureReason,
    ControlMethod,
    CourtOutcome,
    CriminalArticle,
    DataPurpose,
    DeclineReason,
    FormOfExploitation,
    Gender,
    LabourIndustry,
    Means,
    OnlinePlatform,
    RecruitmentMethod,
    Region,
    Sector,
    SentenceBand,
    Service,
    Sex,
    SexualExploitationType,
    ShelterCategory,
    UnmetReason,
    VictimParticipation,
    Vulnerability,
    region_country,
)
from services.statistics.projection import (
    PROCEEDING_STAGES,
    CaseFacts,
    CrossBorderFacts,
    PlacementFacts,
    ProceedingFacts,
    ReferralFacts,
    StatsState,
)

ALL = "(all)"  # the value of a summed-over field in margins
OTHER = "other"  # rare values of an open field, in public output
NOT_RECORDED = "not_recorded"

Value = str | tuple[str, ...]  # a tuple: the fact counts once under each value


class QueryError(ValueError):
    """A bad --by / --where / period: names the field and the reason."""


def _enum(values: type[StrEnum]) -> tuple[str, ...]:
    return tuple(v.value for v in values)


def _band(hours: float, bands: Sequence[tuple[float, str]], last: str) -> str:
    for limit, name in bands:
        if hours < limit:
            return name
    return last


SERVICE_BANDS = (
    (24.0, "under_1_day"),
    (72.0, "1_to_3_days"),
    (168.0, "3_to_7_days"),
    (720.0, "7_to_30_days"),
)
SERVICE_BAND_VALUES = (*(n for _, n in SERVICE_BANDS), "over_30_days", "no_service_yet")
WAIT_BANDS = ((24.0, "under_1_day"), (168.0, "1_to_7_days"), (720.0, "7_to_30_days"))
WAIT_VALUES = (
    "admitted_at_once",
    *(n for _, n in WAIT_BANDS),
    "over_30_days",
    "still_waiting",
    "left_waiting_list",
    "refused",
)
CLOSURE_BANDS = (
    (30 * 24.0, "under_30_days"),
    (90 * 24.0, "30_to_90_days"),
    (180 * 24.0, "90_to_180_days"),
)
CLOSURE_BAND_VALUES = (*(n for _, n in CLOSURE_BANDS), "over_180_days", "not_closed")
CASE_STATUSES = ("active", "follow_up", "closed", "closed_referred")
PLACEMENT_STATUS = ("resident", "discharged", "waiting", "left_waiting_list", "refused")
PRESUMPTIONS = ("none", "pending", "decided_identified", "decided_not_identified")
REFERRAL_OUTCOMES = ("pending", "accepted", "waitlisted", "declined", "completed", "revoked")


def _hours(start: dt.datetime, end: dt.datetime) -> float:
    return (end - start).total_seconds() / 3600


def time_to_service(case: CaseFacts, at: dt.datetime) -> str:
    if case.first_service_at is None or case.first_service_at > at:
        return "no_service_yet"
    return _band(_hours(case.recorded_at, case.first_service_at), SERVICE_BANDS, "over_30_days")


def _closed_by(case: CaseFacts, at: dt.datetime) -> bool:
    return case.closed_at is not None and case.closed_at <= at


def case_status(case: CaseFacts, at: dt.datetime) -> str:
    """HTCDS `cas_Status` at `at`: a case closed because the person was referred on
    (transferred abroad) is `closed_referred`; an open one with a follow-up pending (as the
    stream ends: follow-ups are not dated back) is `follow_up`."""
    if not _closed_by(case, at):
        return "follow_up" if case.follow_ups_pending else "active"
    return "closed_referred" if case.closure_reason == "transferred_abroad" else "closed"


def time_to_closure(case: CaseFacts, at: dt.datetime) -> str:
    if case.closed_at is None or not _closed_by(case, at):
        return "not_closed"
    return _band(_hours(case.recorded_at, case.closed_at), CLOSURE_BANDS, "over_180_days")


def placement_status(p: PlacementFacts, at: dt.datetime) -> str:
    def by(t: dt.datetime | None) -> bool:
        return t is not None and t <= at

    if by(p.discharged_at):
        return "discharged"
    if by(p.admitted_at):
        return "resident"
    if by(p.left_list_at):
        return "left_waiting_list"
    if p.refused:
        return "refused"
    return "waiting"


def waiting_time(p: PlacementFacts, at: dt.datetime) -> str:
    if p.refused and p.admitted_at is None and p.waitlisted_at is None:
        return "refused"
    if p.waitlisted_at is None:
        return "admitted_at_once"
    if p.admitted_at is not None and p.admitted_at <= at:
        return _band(_hours(p.waitlisted_at, p.admitted_at), WAIT_BANDS, "over_30_days")
    if p.left_list_at is not None and p.left_list_at <= at:
        return "left_waiting_list"
    return "still_waiting"


@dataclass(frozen=True)
class Dimension:
    name: str
    meaning: str
    get: Callable[[Any, dt.datetime], Value]
    values: tuple[str, ...] | None = None  # the full vocabulary; None: an open field
    multi: bool = False  # a fact may have several values (it counts once under each)


@dataclass(frozen=True)
class Unit:
    name: str
    meaning: str
    facts: Callable[[StatsState], Sequence[Any]]
    day: Callable[[Any], dt.date]  # what --from/--to and the period fields look at
    case: Callable[[Any], CaseFacts | None]  # whose consent decides publication
    dimensions: tuple[Dimension, ...]
    # A fact about several cases (a criminal proceeding): published only if every one of
    # them may be. None: `case` alone decides.
    cases: Callable[[Any], Sequence[CaseFacts]] | None = None

    def publishable(self, fact: Any, public_cases: set[int]) -> bool:
        if self.cases is None:
            return id(self.case(fact)) in public_cases
        linked = self.cases(fact)
        return bool(linked) and all(id(c) in public_cases for c in linked)

    def dimension(self, name: str) -> Dimension:
        for d in (*_period_dimensions(self), *self.dimensions):
            if d.name == name:
                return d
        known = ", ".join(self.field_names())
        raise QueryError(f"--by/--where: {self.name} have no field {name!r} (fields: {known})")

    def field_names(self) -> tuple[str, ...]:
        return tuple(d.name for d in (*_period_dimensions(self), *self.dimensions))


PERIODS = ("month", "quarter", "year")


def period_label(name: str, day: dt.date) -> str:
    if name == "month":
        return day.strftime("%Y-%m")
    if name == "quarter":
        return f"{day.year}-Q{(day.month - 1) // 3 + 1}"
    return str(day.year)


def _period_dimensions(unit: Unit) -> tuple[Dimension, ...]:
    meanings = {
        "month": "calendar month (YYYY-MM)",
        "quarter": "calendar quarter (YYYY-Qn)",
        "year": "calendar year",
    }

    def getter(name: str) -> Callable[[Any, dt.datetime], Value]:
        return lambda fact, at: period_label(name, unit.day(fact))

    return tuple(Dimension(name, meanings[name], getter(name)) for name in PERIODS)


def _recorded(values: tuple[str, ...]) -> tuple[str, ...]:
    """A multi-valued data-standard field: each value, or `not_recorded`."""
    return values or (NOT_RECORDED,)


def _standard(
    name: str, meaning: str, get: Callable[[CaseFacts], tuple[str, ...]], values: type[StrEnum]
) -> Dimension:
    return Dimension(
        name,
        f"{meaning}; a case counts once under each (not_recorded: none given)",
        lambda c, at: _recorded(get(c)),
        (*_enum(values), NOT_RECORDED),
        multi=True,
    )


def _age_group(is_child: bool) -> str:
    return "child" if is_child else "adult"


CASES = Unit(
    name="cases",
    meaning="screened persons (one per case), dated by the interview",
    facts=lambda s: s.all_cases(),
    day=lambda c: c.interviewed_on,
    case=lambda c: c,
    dimensions=(
        Dimension(
            "status",
            "identified / not_identified / presumed: the case's latest outcome",
            lambda c, at: c.status,
            ("identified", "not_identified", "presumed"),
        ),
        Dimension(
            "presumption",
            "presumed victims: none (never presumed) / pending / decided_identified / "
            "decided_not_identified",
            lambda c, at: c.presumption,
            PRESUMPTIONS,
        ),
        Dimension(
            "region",
            "where the person was identified (oblast, city, abroad)",
            lambda c, at: c.region,
            _enum(Region),
        ),
        Dimension(
            "sector",
            "identifying agency: government or civil society",
            lambda c, at: c.sector,
            _enum(Sector),
        ),
        Dimension(
            "agency_kind",
            "kind of identifying agency",
            lambda c, at: c.agency_kind,
            _enum(AgencyKind),
        ),
        Dimension("sex", "female / male", lambda c, at: c.sex, _enum(Sex)),
        Dimension(
            "age_group",
            "child (under 18) / adult",
            lambda c, at: _age_group(c.is_child),
            ("child", "adult"),
        ),
        Dimension(
            "age_band", "age band at the interview", lambda c, at: c.age_band, _enum(AgeBand)
        ),
        Dimension(
            "citizenship", "ISO 3166-1 alpha-2, XX stateless/unknown", lambda c, at: c.citizenship
        ),
        Dimension(
            "country_of_exploitation",
            "ISO 3166-1 alpha-2, or unknown",
            lambda c, at: c.country_of_exploitation or "unknown",
        ),
        Dimension(
            "form",
            "form of exploitation; a case counts once under each of its forms",
            lambda c, at: c.forms or (NOT_RECORDED,),
            (*_enum(FormOfExploitation), NOT_RECORDED),
            multi=True,
        ),
        Dimension(
            "time_to_service",
            "identification to first accepted referral",
            time_to_service,
            SERVICE_BAND_VALUES,
        ),
        Dimension(
            "case_status",
            "HTCDS case status at report time: active / follow_up / closed / closed_referred",
            case_status,
            CASE_STATUSES,
        ),
        Dimension(
            "closure_reason",
            "why the case was closed (HTCDS ReasonForCaseClosure), or not_closed",
            lambda c, at: (c.closure_reason or "not_closed") if _closed_by(c, at) else "not_closed",
            (*_enum(ClosureReason), "not_closed"),
        ),
        Dimension(
            "time_to_closure",
            "identification to closure",
            time_to_closure,
            CLOSURE_BAND_VALUES,
        ),
        Dimension(
            "followed_up",
            "at least one follow-up was recorded for the case",
            lambda c, at: "yes" if c.follow_ups_recorded else "no",
            ("no", "yes"),
        ),
        Dimension(
            "reopened",
            "the case was closed and reopened at least once",
            lambda c, at: "yes" if c.reopened else "no",
            ("no", "yes"),
        ),
        Dimension(
            "transferred",
            "ownership was transferred to another agency at least once",
            lambda c, at: "yes" if c.transfers else "no",
            ("no", "yes"),
        ),
        Dimension(
            "duplicate",
            "flagged as a likely duplicate of an earlier case",
            lambda c, at: "suspected" if c.duplicate_suspected else "no",
            ("no", "suspected"),
        ),
        # The data standard (HTCDS): docs/STATISTICS.md "HTCDS export".
        Dimension(
            "gender",
            "HTCDS gender: as recorded, else the sex",
            lambda c, at: c.gender or c.sex,
            _enum(Gender),
        ),
        _standard(
            "vulnerability",
            "vulnerability or vulnerable group",
            lambda c: c.vulnerabilities,
            Vulnerability,
        ),
        _standard("means", "the criteria's means answers", lambda c: c.means, Means),
        _standard(
            "recruitment",
            "method of recruitment",
            lambda c: c.recruitment_methods,
            RecruitmentMethod,
        ),
        _standard(
            "online_platform",
            "site or app of an online recruitment",
            lambda c: c.online_platforms,
            OnlinePlatform,
        ),
        _standard(
            "control",
            "method of control beyond the means",
            lambda c: c.methods_of_control,
            ControlMethod,
        ),
        _standard(
            "labour_industry",
            "industry of labour exploitation",
            lambda c: c.labour_industries,
            LabourIndustry,
        ),
        _standard(
            "sexual_exploitation",
            "type of sexual exploitation",
            lambda c: c.sexual_exploitation_types,
            SexualExploitationType,
        ),
        Dimension(
            "proceeding_stage",
            "the furthest stage a criminal proceeding naming the case reached: none / "
            "complaint / investigation / charged / decided",
            lambda c, at: c.proceeding_stage,
            PROCEEDING_STAGES,
        ),
        Dimension(
            "reached_court",
            "a criminal proceeding naming the case reached court (charges brought)",
            lambda c, at: "yes" if c.proceeding_stage in ("charged", "decided") else "no",
            ("no", "yes"),
        ),
    ),
)


def _referral_age_group(r: ReferralFacts, at: dt.datetime) -> str:
    return _age_group(r.is_child)


REFERRALS = Unit(
    name="referrals",
    meaning="referrals to a service provider (each attempt of each need), dated by request",
    facts=lambda s: list(s.referrals.values()),
    day=lambda r: r.requested_at.date(),
    case=lambda r: r.case,
    dimensions=(
        Dimension("service", "service referred to", lambda r, at: r.service, _enum(Service)),
        Dimension(
            "outcome", "latest answer to the referral", lambda r, at: r.outcome, REFERRAL_OUTCOMES
        ),
        Dimension("region", "region of the referral", lambda r, at: r.region, _enum(Region)),
        Dimension("sex", "female / male", lambda r, at: r.sex, _enum(Sex)),
        Dimension("age_group", "child / adult", _referral_age_group, ("child", "adult")),
        Dimension("age_band", "age band", lambda r, at: r.age_band, _enum(AgeBand)),
        Dimension(
            "decline_reason",
            "why a provider declined",
            lambda r, at: r.decline_reason or "none",
            (*_enum(DeclineReason), "none"),
        ),
        Dimension(
            "referral_kind",
            "first referral of a need, or a re-referral (after a decline, revocation or "
            "reassignment)",
            lambda r, at: "re_referral" if r.attempt else "first",
            ("first", "re_referral"),
        ),
        Dimension(
            "escalated",
            "escalated to the coordinating body for want of an answer",
            lambda r, at: "yes" if r.escalated else "no",
            ("no", "yes"),
        ),
    ),
)

PLACEMENTS = Unit(
    name="placements",
    meaning="shelter referrals as the shelter saw them, dated by the first shelter event",
    facts=lambda s: list(s.placements.values()),
    day=lambda p: p.first_seen_at.date(),
    case=lambda p: p.case,
    dimensions=(
        Dimension(
            "category",
            "bed category: women / men / children",
            lambda p, at: p.category,
            _enum(ShelterCategory),
        ),
        Dimension(
            "shelter_region",
            "region of the shelter",
            lambda p, at: p.shelter_region,
            (*_enum(Region), "unknown"),
        ),
        Dimension(
            "status",
            "resident / discharged / waiting / left list / refused, at report time",
            placement_status,
            PLACEMENT_STATUS,
        ),
        Dimension("wait", "time on the waiting list before admission", waiting_time, WAIT_VALUES),
    ),
)

ANSWER_BANDS = ((24.0, "under_1_day"), (168.0, "1_to_7_days"), (720.0, "7_to_30_days"))
ANSWER_VALUES = (*(n for _, n in ANSWER_BANDS), "over_30_days", "no_answer_yet")
CROSS_BORDER_OUTCOMES = (
    "requested",
    "refused",
    "received",
    "accepted",
    "declined",
    "completed",
    "closed",
)


def time_to_answer(x: CrossBorderFacts, at: dt.datetime) -> str:
    if x.answered_at is None or x.answered_at > at:
        return "no_answer_yet"
    return _band(_hours(x.requested_at, x.answered_at), ANSWER_BANDS, "over_30_days")


CROSS_BORDER = Unit(
    name="cross_border",
    meaning="cross-border referrals sent to or received from a partner country's hub, "
    "dated when sent (outgoing) or received (incoming)",
    facts=lambda s: list(s.cross_border.values()),
    day=lambda x: x.requested_at.date(),
    case=lambda x: x.case,
    dimensions=(
        Dimension("country", "the other country (ISO 3166-1 alpha-2)", lambda x, at: x.country),
        Dimension(
            "direction", "outgoing / incoming", lambda x, at: x.direction, ("outgoing", "incoming")
        ),
        Dimension(
            "outcome",
            "the latest outcome code: requested / refused (never left) / received / accepted / "
            "declined / completed / closed",
            lambda x, at: x.outcome,
            CROSS_BORDER_OUTCOMES,
        ),
        Dimension("purpose", "why it was sent", lambda x, at: x.purpose, _enum(DataPurpose)),
        Dimension("service", "the service asked for", lambda x, at: x.service, _enum(Service)),
        Dimension(
            "time_to_answer",
            "from sending (or receiving) to the first answer",
            time_to_answer,
            ANSWER_VALUES,
        ),
    ),
)

UNMET_NEEDS = Unit(
    name="unmet_needs",
    meaning="needs no provider in the registry could take (one per service per case), "
    "dated when recorded",
    facts=lambda s: list(s.unmet_needs.values()),
    day=lambda u: u.recorded_at.date(),
    case=lambda u: u.case,
    dimensions=(
        Dimension("service", "service needed", lambda u, at: u.service, _enum(Service)),
        Dimension(
            "region", "where the person was identified", lambda u, at: u.region, _enum(Region)
        ),
        Dimension(
            "category",
            "the person's category: women / men / children",
            lambda u, at: u.category,
            _enum(ShelterCategory),
        ),
        Dimension("reason", "why it is unmet", lambda u, at: u.reason, _enum(UnmetReason)),
    ),
)

# --- Criminal proceedings -------------------------------------------------------------------

DECISION_BANDS = ((183, "under_6_months"), (365, "6_to_12_months"), (730, "1_to_2_years"))
DECISION_BAND_VALUES = (*(n for _, n in DECISION_BANDS), "over_2_years", "not_decided")
VICTIM_BANDS = ("1", "2_to_5", "6_or_more")
COMPLAINANT_KINDS = ("none", "ngo", "ombudsperson", "prosecution", "internal_affairs")
CONVICTED = (CourtOutcome.CONVICTION.value, CourtOutcome.RECLASSIFIED.value)


def _reached(p: ProceedingFacts, stage: str) -> str:
    return "yes" if PROCEEDING_STAGES.index(p.stage) >= PROCEEDING_STAGES.index(stage) else "no"


def time_to_decision(p: ProceedingFacts, at: dt.datetime) -> str:
    """From the earliest interview of the cases it names to the court's decision."""
    if p.decided_on is None or p.decided_on > at.date() or not p.cases:
        return "not_decided"
    days = (p.decided_on - min(c.interviewed_on for c in p.cases)).days
    return _band(float(days), [(float(d), n) for d, n in DECISION_BANDS], "over_2_years")


def _victims(p: ProceedingFacts, at: dt.datetime) -> str:
    n = len(p.cases)
    return "1" if n <= 1 else ("2_to_5" if n <= 5 else "6_or_more")


def _proceeding_forms(p: ProceedingFacts, at: dt.datetime) -> tuple[str, ...]:
    return tuple(sorted({f for c in p.cases for f in c.forms})) or (NOT_RECORDED,)


PROCEEDINGS = Unit(
    name="proceedings",
    meaning="criminal proceedings naming the hub's cases (a complaint or an investigation), "
    "dated by their first date (the complaint's, else the investigation's)",
    facts=lambda s: list(s.proceedings.values()),
    day=lambda p: p.opened_on,
    case=lambda p: p.cases[0] if p.cases else None,
    cases=lambda p: p.cases,
    dimensions=(
        Dimension(
            "stage",
            "the furthest stage: complaint / investigation / charged / decided",
            lambda p, at: p.stage,
            PROCEEDING_STAGES[1:],
        ),
        Dimension(
            "investigated",
            "an investigation was opened",
            lambda p, at: _reached(p, "investigation"),
            ("no", "yes"),
        ),
        Dimension(
            "charged",
            "charges were brought (a prosecution)",
            lambda p, at: _reached(p, "charged"),
            ("no", "yes"),
        ),
        Dimension(
            "outcome",
            "the court's decision, or pending",
            lambda p, at: p.outcome,
            ("pending", *_enum(CourtOutcome)),
        ),
        Dimension(
            "convicted",
            "convicted, under the article charged or another (reclassified)",
            lambda p, at: "yes" if p.outcome in CONVICTED else "no",
            ("no", "yes"),
        ),
        Dimension(
            "article",
            "criminal code article: the decision's, else the charges', else the "
            "investigation's; none for a complaint only",
            lambda p, at: p.article,
            (*_enum(CriminalArticle), "none"),
        ),
        Dimension(
            "form",
            "form of exploitation of the cases it names; a proceeding counts once under each",
            _proceeding_forms,
            (*_enum(FormOfExploitation), NOT_RECORDED),
            multi=True,
        ),
        Dimension(
            "sentence",
            "sentence band of the decision (none: no decision or no sentence)",
            lambda p, at: p.sentence,
            _enum(SentenceBand),
        ),
        Dimension(
            "complaint_by",
            "kind of agency that filed the complaint (ngo, ombudsperson: on the victim's "
            "behalf), or none",
            lambda p, at: p.complaint_by,
            COMPLAINANT_KINDS,
        ),
        Dimension(
            "investigated_by",
            "kind of agency that opened the investigation, or none",
            lambda p, at: p.investigated_by or "none",
            ("none", "prosecution", "internal_affairs"),
        ),
        Dimension("victims", "number of cases (victims) it names", _victims, VICTIM_BANDS),
        Dimension(
            "participation",
            "how victims took part; a proceeding counts once under each form recorded",
            lambda p, at: tuple(sorted(p.participation)) or ("none_recorded",),
            (*_enum(VictimParticipation), "none_recorded"),
            multi=True,
        ),
        Dimension(
            "time_to_decision",
            "from the earliest identification interview of its cases to the court's decision",
            time_to_decision,
            DECISION_BAND_VALUES,
        ),
    ),
)

UNITS: dict[str, Unit] = {
    u.name: u for u in (CASES, REFERRALS, PLACEMENTS, CROSS_BORDER, UNMET_NEEDS, PROCEEDINGS)
}


@dataclass(frozen=True)
class Query:
    unit: str = "cases"
    by: tuple[str, ...] = ("status",)
    where: tuple[tuple[str, str], ...] = ()
    start: dt.date | None = None
    end: dt.date | None = None
    title: str = ""
    published: bool = True  # False: for the coordinating body only, never in --public


@dataclass(frozen=True)
class Table:
    """A two-way table: rows are values of `by[0]`, columns value tuples of `by[1:]` (one
    column `()` for a one-way table). Margins are sums of cells: for a multi-valued field
    (form) they count mentions, not cases."""

    query: Query
    rows: tuple[str, ...]
    cols: tuple[tuple[str, ...], ...]
    cells: tuple[tuple[int, ...], ...]

    @property
    def row_totals(self) -> tuple[int, ...]:
        return tuple(sum(r) for r in self.cells)

    @property
    def col_totals(self) -> tuple[int, ...]:
        return tuple(sum(r[j] for r in self.cells) for j in range(len(self.cols)))

    @property
    def total(self) -> int:
        return sum(self.row_totals)


def parse_where(items: Sequence[str]) -> tuple[tuple[str, str], ...]:
    parsed = []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise QueryError(f"--where: {item!r} is not FIELD=VALUE")
        parsed.append((name.strip(), value.strip()))
    return tuple(parsed)


def _values(v: Value) -> tuple[str, ...]:
    return v if isinstance(v, tuple) else (v,)


def _months_between(first: dt.date, last: dt.date) -> list[dt.date]:
    months, day = [], first.replace(day=1)
    while day <= last:
        months.append(day)
        day = (day + dt.timedelta(days=32)).replace(day=1)
    return months


def _period_values(name: str, days: list[dt.date], q: Query) -> tuple[str, ...]:
    """Every period between the first and the last (a gap is a zero, not a missing row)."""
    if not days and not (q.start and q.end):
        return ()
    first = q.start or min(days)
    last = q.end or max(days)
    months = _months_between(min(first, last), max(first, last))
    return tuple(dict.fromkeys(period_label(name, m) for m in months))


def check(query: Query) -> Unit:
    """The query's unit, or a QueryError naming the option that is wrong."""
    unit = UNITS.get(query.unit)
    if unit is None:
        raise QueryError(f"--of: unknown unit {query.unit!r} (one of {', '.join(UNITS)})")
    if not query.by:
        raise QueryError("--by: give at least one field")
    if len(set(query.by)) != len(query.by):
        raise QueryError("--by: a field is given twice")
    for name in query.by:
        unit.dimension(name)
    for name, value in query.where:
        dim = unit.dimension(name)
        if dim.values is not None and value not in dim.values:
            raise QueryError(f"--where: {dim.name} has no value {value!r}")
    return unit


def _for_hub(
    values: tuple[str, ...], country: str, labelled: list[list[tuple[str, ...]]], i: int
) -> tuple[str, ...]:
    """A region field lists the hub's own country's regions and abroad, not its partners'
    (a Kyrgyz table has no row of zeros for Almaty); a value actually counted always stays."""
    if not country or not set(values) & _REGIONS:
        return values
    seen = {v for row in labelled for v in row[i]}
    return tuple(
        v for v in values if v not in _REGIONS or region_country(v) in (country, None) or v in seen
    )


_REGIONS = frozenset(_enum(Region))


def count(
    state: StatsState,
    query: Query,
    at: dt.datetime,
    *,
    public_cases: set[int] | None = None,
    rare_below: int = 0,
) -> Table:
    """Count `query.unit` facts by `query.by`. `public_cases`: only facts of these cases
    (publication); `rare_below`: values of open fields seen fewer times are shown as
    `other`, so that a listed value does not itself reveal a rare person."""
    unit = check(query)
    dims = [unit.dimension(name) for name in query.by]
    filters = [(unit.dimension(name), value) for name, value in query.where]

    all_facts = list(unit.facts(state))
    days = [unit.day(f) for f in all_facts]
    facts = [
        f
        for f in all_facts
        if (query.start is None or unit.day(f) >= query.start)
        and (query.end is None or unit.day(f) <= query.end)
        and all(value in _values(dim.get(f, at)) for dim, value in filters)
        and (public_cases is None or unit.publishable(f, public_cases))
    ]
    in_range = [
        d
        for d in days
        if (query.start is None or d >= query.start) and (query.end is None or d <= query.end)
    ]

    labelled: list[list[tuple[str, ...]]] = [[_values(d.get(f, at)) for d in dims] for f in facts]
    vocab: list[tuple[str, ...]] = []
    for i, dim in enumerate(dims):
        if dim.name in PERIODS:
            vocab.append(_period_values(dim.name, in_range, query))
        elif dim.values is not None:
            vocab.append(_for_hub(dim.values, state.country, labelled, i))
        else:
            seen = Counter(v for row in labelled for v in row[i])
            rare = {v for v, n in seen.items() if n < rare_below}
            for row in labelled:
                row[i] = tuple(dict.fromkeys(OTHER if v in rare else v for v in row[i]))
            kept = sorted(v for v in seen if v not in rare)
            # Public: `other` is always listed (when the unit has any facts), so that its
            # presence says nothing about a rare person.
            vocab.append((*kept, OTHER) if rare_below and all_facts else tuple(kept))

    counts: Counter[tuple[str, ...]] = Counter()
    for row in labelled:
        for combo in itertools.product(*row):
            counts[combo] += 1
    rows = vocab[0]
    cols = tuple(itertools.product(*vocab[1:]))
    cells = tuple(tuple(counts[(r, *c)] for c in cols) for r in rows)
    return Table(query, rows, cols, cells)
