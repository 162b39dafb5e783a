"""Criminal proceedings linked to cases, as pure rules: who may record what, in which order.

A proceeding (aggregate `proceeding`) is opened by a complaint or, without one, by an
investigation; charges follow an investigation, and the court's decision follows charges.
Who may record what follows the agency kinds (Counter-Trafficking Law, art. 6):

- a complaint: an NGO or the ombudsperson on the victim's behalf, or the prosecution or
  internal affairs (a complaint they received);
- an investigation, charges, a victim's participation: the prosecution or internal affairs;
- the court's decision: the prosecution.

Every case a proceeding names must be a case of the hub that is not erased; ids, codes and
dates only. No date may be in the future, nor before the stage it follows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from uuid import UUID

from contracts.commands import (
    BringCharges,
    FileComplaint,
    OpenInvestigation,
    RecordCourtDecision,
    RecordVictimParticipation,
)
from contracts.events import (
    ChargesBrought,
    ComplaintFiled,
    CourtDecisionRecorded,
    Event,
    InvestigationOpened,
    VictimParticipationRecorded,
)
from contracts.replies import ErrorCode, reject
from contracts.vocabulary import AgencyKind, CourtOutcome, SentenceBand
from services.agencies.registry import Agency
from services.case.case import Case
from services.case.proceedings import Proceeding

LAW_ENFORCEMENT = frozenset({AgencyKind.PROSECUTION, AgencyKind.INTERNAL_AFFAIRS})
REPRESENTATIVES = frozenset({AgencyKind.NGO, AgencyKind.OMBUDSPERSON})
COMPLAINANTS = LAW_ENFORCEMENT | REPRESENTATIVES
COURT_RECORDERS = frozenset({AgencyKind.PROSECUTION})
# No sentence goes with these outcomes.
NOT_CONVICTED = frozenset({CourtOutcome.ACQUITTAL, CourtOutcome.DISMISSAL})


def _agency(agency: Agency | None, kinds: frozenset[AgencyKind], who: str) -> Agency:
    if agency is None:
        raise reject("agency_id", ErrorCode.UNKNOWN_AGENCY, "the agency is not in the registry")
    if agency.kind not in kinds:
        raise reject("agency_id", ErrorCode.NOT_AUTHORISED, f"only {who} may do this")
    return agency


def _linkable(case_ids: Iterable[UUID], cases: Mapping[UUID, Case | None]) -> None:
    """Every case named exists on the hub and is not erased."""
    for case_id in sorted(case_ids):
        case = cases.get(case_id)
        if case is None:
            raise reject("case_ids", ErrorCode.UNKNOWN_ID, "no such case")
        if case.erased:
            raise reject("case_ids", ErrorCode.INVALID_STATE, "a case named was erased")


def _dated(name: str, day: dt.date, now: dt.datetime, after: dt.date | None = None) -> None:
    if day > now.date():
        raise reject(name, ErrorCode.INVALID_FIELD, "the date is in the future")
    if after is not None and day < after:
        raise reject(name, ErrorCode.INVALID_FIELD, "the date is before the stage it follows")


def _existing(proceeding: Proceeding | None) -> Proceeding:
    if proceeding is None:
        raise reject("proceeding_id", ErrorCode.UNKNOWN_ID, "no such proceeding")
    return proceeding


def decide_file_complaint(
    proceeding: Proceeding | None,
    command: FileComplaint,
    agency: Agency | None,
    cases: Mapping[UUID, Case | None],
    proceeding_id: UUID,
    now: dt.datetime,
) -> list[Event]:
    """Open a proceeding with a complaint (its id derived from the command)."""
    found = _agency(agency, COMPLAINANTS, "an NGO, the ombudsperson, prosecution or police")
    if proceeding is not None:  # only another command with a colliding id could get here
        raise reject("command_id", ErrorCode.CONFLICT, "the proceeding already exists")
    _linkable(command.case_ids, cases)
    _dated("filed_on", command.filed_on, now)
    return [
        ComplaintFiled(
            proceeding_id=proceeding_id,
            case_ids=tuple(sorted(command.case_ids)),
            filed_by=found.id,
            filer_kind=found.kind,
            on_behalf_of_victim=found.kind in REPRESENTATIVES,
            filed_on=command.filed_on,
            recorded_at=now,
        )
    ]


def decide_open_investigation(
    proceeding: Proceeding | None,
    command: OpenInvestigation,
    agency: Agency | None,
    cases: Mapping[UUID, Case | None],
    proceeding_id: UUID,
    now: dt.datetime,
) -> list[Event]:
    """Open the investigation of a complaint's proceeding (`proceeding_id` given), or open a
    new proceeding with it (`proceeding_id` derived from the command)."""
    found = _agency(agency, LAW_ENFORCEMENT, "the prosecution or internal affairs")
    if command.proceeding_id is None:
        if proceeding is not None:
            raise reject("command_id", ErrorCode.CONFLICT, "the proceeding already exists")
        if not command.case_ids:
            raise reject(
                "case_ids", ErrorCode.INVALID_FIELD, "a new proceeding needs at least one case"
            )
        after = None
        linked: frozenset[UUID] = frozenset()
    else:
        existing = _existing(proceeding)
        if existing.investigation is not None:
            raise reject(
                "proceeding_id", ErrorCode.INVALID_STATE, "an investigation is already open"
            )
        after, linked = existing.opened_on, existing.case_ids
    added = command.case_ids - linked
    _linkable(added, cases)
    _dated("opened_on", command.opened_on, now, after)
    return [
        InvestigationOpened(
            proceeding_id=proceeding_id,
            case_ids=tuple(sorted(added)),
            article=command.article,
            opened_by=found.id,
            agency_kind=found.kind,
            opened_on=command.opened_on,
            recorded_at=now,
        )
    ]


def decide_bring_charges(
    proceeding: Proceeding | None,
    command: BringCharges,
    agency: Agency | None,
    now: dt.datetime,
) -> list[Event]:
    found = _agency(agency, LAW_ENFORCEMENT, "the prosecution or internal affairs")
    existing = _existing(proceeding)
    if existing.investigation is None:
        raise reject(
            "proceeding_id", ErrorCode.INVALID_STATE, "charges need an investigation opened"
        )
    if existing.charges is not None:
        raise reject("proceeding_id", ErrorCode.INVALID_STATE, "charges were already brought")
    _dated("charged_on", command.charged_on, now, existing.last_date)
    return [
        ChargesBrought(
            proceeding_id=command.proceeding_id,
            article=command.article,
            defendants=command.defendants,
            charged_by=found.id,
            charged_on=command.charged_on,
            recorded_at=now,
        )
    ]


def decide_record_decision(
    proceeding: Proceeding | None,
    command: RecordCourtDecision,
    agency: Agency | None,
    now: dt.datetime,
) -> list[Event]:
    """The court's decision on the charges, once. A reclassification names the other
    article; an acquittal or a dismissal carries no sentence."""
    found = _agency(agency, COURT_RECORDERS, "the prosecution")
    existing = _existing(proceeding)
    charges = existing.charges
    if charges is None:
        raise reject(
            "proceeding_id", ErrorCode.INVALID_STATE, "a court decision needs charges brought"
        )
    if existing.decision is not None:
        raise reject("proceeding_id", ErrorCode.INVALID_STATE, "the decision is already recorded")
    article = command.article or charges.article
    if command.outcome is CourtOutcome.RECLASSIFIED and article is charges.article:
        raise reject("article", ErrorCode.INVALID_FIELD, "a reclassification names another article")
    if command.outcome is not CourtOutcome.RECLASSIFIED and article is not charges.article:
        raise reject(
            "article",
            ErrorCode.INVALID_FIELD,
            "another article than charged is a reclassification (outcome reclassified)",
        )
    if command.outcome in NOT_CONVICTED and command.sentence is not SentenceBand.NONE:
        raise reject("sentence", ErrorCode.INVALID_FIELD, "no sentence without a conviction")
    _dated("decided_on", command.decided_on, now, charges.charged_on)
    return [
        CourtDecisionRecorded(
            proceeding_id=command.proceeding_id,
            outcome=command.outcome,
            article=article,
            sentence=command.sentence,
            decided_on=command.decided_on,
            recorded_by=found.id,
            recorded_at=now,
        )
    ]


def decide_record_participation(
    proceeding: Proceeding | None,
    command: RecordVictimParticipation,
    agency: Agency | None,
    now: dt.datetime,
) -> list[Event]:
    """How the victim of one of the proceeding's cases took part; nothing new to record
    (every form already recorded) writes nothing."""
    found = _agency(agency, LAW_ENFORCEMENT, "the prosecution or internal affairs")
    existing = _existing(proceeding)
    if command.case_id not in existing.case_ids:
        raise reject("case_id", ErrorCode.UNKNOWN_ID, "not a case of this proceeding")
    _dated("recorded_on", command.recorded_on, now, existing.opened_on)
    if command.participation <= existing.participation.get(command.case_id, frozenset()):
        return []
    return [
        VictimParticipationRecorded(
            proceeding_id=command.proceeding_id,
            case_id=command.case_id,
            participation=tuple(sorted(command.participation)),
            recorded_on=command.recorded_on,
            recorded_by=found.id,
            recorded_at=now,
        )
    ]
