"""Follow-ups of a case, as pure rules: who may schedule and record one, and when one is
overdue.

A follow-up lives on the case aggregate (`case.followup_*`), so the case fold knows which
are pending (HTCDS status `follow_up`). Scheduling is for the case's owner, the coordinating
body, or a provider that took the case on (a referral of it accepted or completed);
recording for the agency that scheduled it, the owner or the coordinating body. One not
recorded by the end of its due date is escalated once to the coordinating body. Closing the
case cancels those still pending (services/case/case.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from uuid import UUID

from contracts.commands import RecordFollowUp, ScheduleFollowUp
from contracts.events import Event, FollowUpOverdue, FollowUpRecorded, FollowUpScheduled
from contracts.replies import ErrorCode, reject
from services.agencies.registry import Agency
from services.case.case import Case, FollowUp, may_manage
from services.case.referrals import Referral, Status
from services.identifier.domain import _case_for

# A provider follows a person up once it took the case on: its referral accepted or done.
TAKEN_ON = frozenset({Status.ACCEPTED, Status.COMPLETED})


def took_the_case_on(agency: Agency, referrals: Sequence[Referral]) -> bool:
    """`agency` provides a service to the case: one of its referrals is accepted or done."""
    return any(r.request.provider_id == agency.id and r.status in TAKEN_ON for r in referrals)


def may_schedule(referrals: Sequence[Referral]) -> Callable[[Case, Agency], bool]:
    return lambda case, agency: may_manage(case, agency) or took_the_case_on(agency, referrals)


def may_record(followup: FollowUp | None) -> Callable[[Case, Agency], bool]:
    def may(case: Case, agency: Agency) -> bool:
        scheduled_it = followup is not None and followup.scheduled.scheduled_by == agency.id
        return scheduled_it or may_manage(case, agency)

    return may


def decide_schedule_followup(
    case: Case | None,
    command: ScheduleFollowUp,
    agency: Agency | None,
    referrals: Sequence[Referral],
    followup_id: UUID,
    now: dt.datetime,
) -> list[Event]:
    """Schedule a follow-up of an open case, due today or later."""
    who = "the case's owner, the coordinating body or a provider that took the case on"
    _case_for(case, agency, may=may_schedule(referrals), who=who)
    if command.due_on < now.date():
        raise reject("due_on", ErrorCode.INVALID_FIELD, "the due date is in the past")
    return [
        FollowUpScheduled(
            case_id=command.case_id,
            followup_id=followup_id,
            due_on=command.due_on,
            purpose=command.purpose,
            scheduled_by=command.agency_id,
            recorded_at=now,
        )
    ]


def decide_record_followup(
    case: Case | None, command: RecordFollowUp, agency: Agency | None, now: dt.datetime
) -> list[Event]:
    """Record a pending follow-up's outcome: that closes it. An overdue one may still be."""
    followup = case.followups.get(command.followup_id) if case is not None else None
    who = "the agency that scheduled the follow-up, the case's owner or the coordinating body"
    _case_for(case, agency, may=may_record(followup), who=who)
    if followup is None:
        raise reject("followup_id", ErrorCode.UNKNOWN_ID, "no such follow-up of the case")
    if followup.recorded:
        raise reject("followup_id", ErrorCode.INVALID_STATE, "the follow-up is already recorded")
    if followup.cancelled:
        raise reject(
            "followup_id", ErrorCode.INVALID_STATE, "the follow-up was cancelled by the closure"
        )
    return [
        FollowUpRecorded(
            case_id=command.case_id,
            followup_id=command.followup_id,
            outcome=command.outcome,
            recorded_by=command.agency_id,
            recorded_at=now,
        )
    ]


def is_overdue(due_on: dt.date, now: dt.datetime) -> bool:
    """Not recorded by its due date: the whole due day has passed (UTC)."""
    return now.date() > due_on


def decide_followup_overdue(
    case: Case | None, followup_id: UUID, now: dt.datetime, coordinating_body: str
) -> list[Event]:
    """The escalation of one follow-up, once: nothing if it is not pending (recorded, or
    cancelled by the closure), already escalated, not yet overdue, or the case is gone."""
    if case is None or case.erased or case.is_closed:
        return []
    followup = case.followups.get(followup_id)
    if followup is None or not followup.pending or followup.escalated:
        return []
    due_on = followup.scheduled.due_on
    if not is_overdue(due_on, now):
        return []
    return [
        FollowUpOverdue(
            case_id=case.record.case_id,
            followup_id=followup_id,
            due_on=due_on,
            escalated_to=coordinating_body,
        )
    ]
