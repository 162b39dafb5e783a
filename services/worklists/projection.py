"""The coordinating body's worklists as a pure fold of the event stream.

What the secretariat looks at every morning: needs nobody could take (`unmet`), people on a
shelter's waiting list (`waiting`), and everything past its date (`overdue`): referrals
nobody answered by their deadline, escalated referrals still open, follow-ups not recorded by
their due date, presumed victims whose identification decision is late.

Rows carry ids, codes and dates only: never a sealed field, never anything an event does not
carry in clear. `apply` keeps the open items; `rows(list, at)` answers at a given time, so
the same state answers "overdue today" and "overdue on Monday" without a clock inside.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any
from uuid import UUID

from contracts.envelope import EnvelopeAttributes
from contracts.events import (
    CaseClosed,
    CaseReopened,
    Event,
    FollowUpRecorded,
    FollowUpScheduled,
    NeedRemoved,
    NeedUnmet,
    ReferralAccepted,
    ReferralCompleted,
    ReferralDeclined,
    ReferralEscalated,
    ReferralRequested,
    ReferralRevoked,
    ReferralWaitlisted,
    ScreeningRecord,
    VictimPresumed,
)
from services.case.ids import need_id_for


class Worklist(StrEnum):
    UNMET = "unmet"
    WAITING = "waiting"
    OVERDUE = "overdue"


@dataclass(frozen=True)
class Row:
    """One line of a worklist: what, for which case, where, since when, how late."""

    case_id: str
    item: str  # need | referral | followup | decision
    item_id: str
    service: str  # "" where the item is not about one service
    region: str
    agency: str  # who is expected to act: the provider, the owner, the coordinating body
    since: str  # ISO date the item opened (unmet recorded, waitlisted, requested, scheduled)
    due: str  # ISO date it was due, "" where nothing is due
    days: int  # days waiting (unmet, waiting) or days overdue (overdue)
    detail: str  # a code: the unmet reason, the waiting-list position, the escalation cause

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


COLUMNS = tuple(Row.__dataclass_fields__)


@dataclass
class _Referral:
    case_id: UUID
    service: str
    region: str
    provider: str
    requested_at: dt.datetime
    respond_by: dt.datetime
    waitlisted_at: dt.datetime | None = None
    position: int | None = None
    escalated: str = ""  # the escalation cause, "" while not escalated


@dataclass
class _Unmet:
    case_id: UUID
    service: str
    region: str
    reason: str
    recorded_at: dt.datetime
    agency: str


@dataclass
class _FollowUp:
    case_id: UUID
    due_on: dt.date
    scheduled_by: str
    scheduled_at: dt.datetime


@dataclass
class _Decision:
    """A presumed victim whose identification is still to be decided."""

    case_id: UUID
    due: dt.datetime
    agency: str
    presumed_at: dt.datetime


@dataclass
class WorklistState:
    regions: dict[UUID, str] = field(default_factory=dict)  # case id -> region
    closed: set[UUID] = field(default_factory=set)
    referrals: dict[UUID, _Referral] = field(default_factory=dict)  # open ones only
    unmet: dict[UUID, _Unmet] = field(default_factory=dict)  # by need id, still unmet
    follow_ups: dict[UUID, _FollowUp] = field(default_factory=dict)  # not yet recorded
    decisions: dict[UUID, _Decision] = field(default_factory=dict)  # by case id
    last_sequence: int = 0


Handler = Callable[[WorklistState, Any, EnvelopeAttributes], None]
_HANDLERS: dict[type[Event], Handler] = {}


def handles(*types: type[Event]) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        for event_type in types:
            _HANDLERS[event_type] = handler
        return handler

    return register


def _open_referrals_of_need(state: WorklistState, case_id: UUID, service: str) -> bool:
    return any(r.case_id == case_id and r.service == service for r in state.referrals.values())


@handles(ScreeningRecord)
def _screened(state: WorklistState, event: ScreeningRecord, envelope: EnvelopeAttributes) -> None:
    state.regions[event.case_id] = event.region.value
    # A later outcome of a presumed victim (identified or not) is the decision.
    state.decisions.pop(event.case_id, None)


@handles(VictimPresumed)
def _presumed(state: WorklistState, event: VictimPresumed, envelope: EnvelopeAttributes) -> None:
    state.regions[event.case_id] = event.region.value
    state.decisions[event.case_id] = _Decision(
        case_id=event.case_id,
        due=event.decision_due,
        agency=event.agency_id,
        presumed_at=envelope.time,
    )


@handles(ReferralRequested)
def _requested(
    state: WorklistState, event: ReferralRequested, envelope: EnvelopeAttributes
) -> None:
    state.referrals[event.referral_id] = _Referral(
        case_id=event.case_id,
        service=event.service.value,
        region=event.region.value,
        provider=event.provider_id,
        requested_at=event.requested_at,
        respond_by=event.respond_by,
    )
    # A need referred again is no longer unmet (its id derives from case and service).
    state.unmet.pop(need_id_for(event.case_id, event.service), None)


@handles(ReferralWaitlisted)
def _waitlisted(
    state: WorklistState, event: ReferralWaitlisted, envelope: EnvelopeAttributes
) -> None:
    referral = state.referrals.get(event.referral_id)
    if referral is not None:
        referral.waitlisted_at = referral.waitlisted_at or envelope.time
        referral.position = event.position


@handles(ReferralEscalated)
def _escalated(
    state: WorklistState, event: ReferralEscalated, envelope: EnvelopeAttributes
) -> None:
    referral = state.referrals.get(event.referral_id)
    if referral is not None:
        referral.escalated = str(getattr(event, "cause", "no_answer"))


@handles(ReferralAccepted, ReferralDeclined, ReferralCompleted, ReferralRevoked)
def _answered(state: WorklistState, event: Any, envelope: EnvelopeAttributes) -> None:
    state.referrals.pop(event.referral_id, None)


@handles(NeedRemoved)
def _removed(state: WorklistState, event: NeedRemoved, envelope: EnvelopeAttributes) -> None:
    state.unmet.pop(event.need_id, None)  # off the case plan: nothing left to find


@handles(NeedUnmet)
def _unmet(state: WorklistState, event: NeedUnmet, envelope: EnvelopeAttributes) -> None:
    if _open_referrals_of_need(state, event.case_id, event.service.value):
        return  # recorded late, after the need was referred again
    state.unmet[event.need_id] = _Unmet(
        case_id=event.case_id,
        service=event.service.value,
        region=event.region.value,
        reason=event.reason.value,
        recorded_at=event.recorded_at,
        agency=event.coordinating_body,
    )


@handles(FollowUpScheduled)
def _scheduled(
    state: WorklistState, event: FollowUpScheduled, envelope: EnvelopeAttributes
) -> None:
    state.follow_ups[event.followup_id] = _FollowUp(
        case_id=event.case_id,
        due_on=event.due_on,
        scheduled_by=event.scheduled_by,
        scheduled_at=event.recorded_at,
    )


@handles(FollowUpRecorded)
def _followed_up(
    state: WorklistState, event: FollowUpRecorded, envelope: EnvelopeAttributes
) -> None:
    state.follow_ups.pop(event.followup_id, None)


@handles(CaseClosed)
def _closed(state: WorklistState, event: CaseClosed, envelope: EnvelopeAttributes) -> None:
    state.closed.add(event.case_id)
    # Closing cancels the case's pending follow-ups (services/case/case.py): a reopened
    # case does not bring them back.
    for followup_id, follow_up in list(state.follow_ups.items()):
        if follow_up.case_id == event.case_id:
            del state.follow_ups[followup_id]


@handles(CaseReopened)
def _reopened(state: WorklistState, event: CaseReopened, envelope: EnvelopeAttributes) -> None:
    state.closed.discard(event.case_id)


def handler_for(event: Event) -> Handler | None:
    for cls in type(event).__mro__:
        handler = _HANDLERS.get(cls)
        if handler is not None:
            return handler
    return None


def apply(
    state: WorklistState, envelope: EnvelopeAttributes, event: Event, sequence: int = 0
) -> None:
    """Fold one stored event (already unwrapped) into the worklists."""
    handler = handler_for(event)
    if handler is not None:
        handler(state, event, envelope)
    state.last_sequence = max(state.last_sequence, sequence)


# --- answering -------------------------------------------------------------------------------


def _days(since: dt.datetime | dt.date, at: dt.datetime) -> int:
    start = since.date() if isinstance(since, dt.datetime) else since
    return max(0, (at.date() - start).days)


def _unmet_rows(state: WorklistState, at: dt.datetime) -> Iterable[Row]:
    for need_id, unmet in state.unmet.items():
        yield Row(
            case_id=str(unmet.case_id),
            item="need",
            item_id=str(need_id),
            service=unmet.service,
            region=unmet.region,
            agency=unmet.agency,
            since=unmet.recorded_at.date().isoformat(),
            due="",
            days=_days(unmet.recorded_at, at),
            detail=unmet.reason,
        )


def _waiting_rows(state: WorklistState, at: dt.datetime) -> Iterable[Row]:
    for referral_id, referral in state.referrals.items():
        if referral.waitlisted_at is None:
            continue
        yield Row(
            case_id=str(referral.case_id),
            item="referral",
            item_id=str(referral_id),
            service=referral.service,
            region=referral.region,
            agency=referral.provider,
            since=referral.waitlisted_at.date().isoformat(),
            due="",
            days=_days(referral.waitlisted_at, at),
            detail=f"position {referral.position}" if referral.position else "",
        )


def _overdue_rows(state: WorklistState, at: dt.datetime) -> Iterable[Row]:
    for referral_id, referral in state.referrals.items():
        late = referral.waitlisted_at is None and referral.respond_by <= at
        if not (late or referral.escalated):
            continue
        yield Row(
            case_id=str(referral.case_id),
            item="referral",
            item_id=str(referral_id),
            service=referral.service,
            region=referral.region,
            agency=referral.provider,
            since=(referral.waitlisted_at or referral.requested_at).date().isoformat(),
            due=referral.respond_by.date().isoformat(),
            days=_days(referral.respond_by, at),
            detail=referral.escalated or "no_answer",
        )
    for followup_id, follow_up in state.follow_ups.items():
        if follow_up.due_on >= at.date():
            continue
        yield Row(
            case_id=str(follow_up.case_id),
            item="followup",
            item_id=str(followup_id),
            service="",
            region=state.regions.get(follow_up.case_id, ""),
            agency=follow_up.scheduled_by,
            since=follow_up.scheduled_at.date().isoformat(),
            due=follow_up.due_on.isoformat(),
            days=_days(follow_up.due_on, at),
            detail="followup_not_recorded",
        )
    for case_id, decision in state.decisions.items():
        if decision.due > at:
            continue
        yield Row(
            case_id=str(case_id),
            item="decision",
            item_id=str(case_id),
            service="",
            region=state.regions.get(case_id, ""),
            agency=decision.agency,
            since=decision.presumed_at.date().isoformat(),
            due=decision.due.date().isoformat(),
            days=_days(decision.due, at),
            detail="identification_decision_due",
        )


_ROWS: dict[Worklist, Callable[[WorklistState, dt.datetime], Iterable[Row]]] = {
    Worklist.UNMET: _unmet_rows,
    Worklist.WAITING: _waiting_rows,
    Worklist.OVERDUE: _overdue_rows,
}


def rows(
    state: WorklistState,
    worklist: Worklist,
    at: dt.datetime,
    *,
    region: str | None = None,
    service: str | None = None,
) -> list[Row]:
    """One worklist at `at`, oldest first; closed cases are left out (nothing is expected of
    anyone on them)."""
    found = [
        row
        for row in _ROWS[worklist](state, at)
        if UUID(row.case_id) not in state.closed
        and (region is None or row.region == region)
        and (service is None or row.service == service)
    ]
    return sorted(found, key=lambda r: (-r.days, r.since, r.case_id, r.item_id))
