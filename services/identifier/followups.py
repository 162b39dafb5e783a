"""The identifier's follow-ups of a case: `followup.schedule` and `followup.record`, the
projection of follow-ups due (KV bucket FOLLOWUPS_DUE_BUCKET) and the periodic sweep that
escalates those overdue to the coordinating body. The rules are in followup_rules.py."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import json
from uuid import UUID

import services.identifier.followup_rules as rules
from contracts.commands import RecordFollowUp, ScheduleFollowUp
from contracts.events import (
    CaseClosed,
    CaseErased,
    Event,
    FollowUpOverdue,
    FollowUpRecorded,
    FollowUpScheduled,
)
from services.case.case import fold_case
from services.case.ids import followup_id_for_command
from services.case.plan_reader import read_case_plan
from services.case.referrals import Referral
from services.runtime.eventstore import History
from services.runtime.keyvalue import KeyNotFound, KeyValue, WrongRevision
from services.runtime.logging import get_logger
from services.runtime.messaging import Delivery, Runtime, ServiceHost
from services.runtime.service_table import consumer
from services.runtime.topology import FOLLOWUPS_DUE_BUCKET
from services.runtime.writer import Decide, Outcome

SERVICE = "identifier"
FOLLOWUPS_DURABLE = "identifier-followups"
log = get_logger("nrm.identifier")


async def case_referrals(runtime: Runtime, case_id: str) -> list[Referral]:
    """Every referral of the case, whatever its state (every attempt of every need, found
    through the case's needs: services/case/plan_reader.py)."""
    assert runtime.store is not None, "not connected"
    plan = await read_case_plan(runtime.store, case_id)
    return list(plan.referrals().values())


def due_key(case_id: str, followup_id: str) -> str:
    """Keyed by case first: closing or erasing the case drops all of its follow-ups."""
    return f"{case_id}.{followup_id}"


def register(host: ServiceHost) -> None:
    runtime = host.runtime

    async def schedule(command: ScheduleFollowUp) -> tuple[str, Outcome]:
        case_id = str(command.case_id)
        referrals = await case_referrals(runtime, case_id)
        agency = runtime.registry.get(command.agency_id)
        followup_id = followup_id_for_command(command.command_id)
        now = runtime.clock()

        def decide(history: History) -> list[Event]:
            case = fold_case([e.event for e in history.events])
            return rules.decide_schedule_followup(
                case, command, agency, referrals, followup_id, now
            )

        return case_id, await _write(runtime, case_id, str(command.command_id), decide)

    async def record(command: RecordFollowUp) -> tuple[str, Outcome]:
        case_id = str(command.case_id)
        agency = runtime.registry.get(command.agency_id)
        now = runtime.clock()
        outcome = await _write(
            runtime,
            case_id,
            str(command.command_id),
            lambda history: rules.decide_record_followup(
                fold_case([e.event for e in history.events]), command, agency, now
            ),
        )
        return case_id, outcome

    host.command(ScheduleFollowUp, schedule)
    host.command(RecordFollowUp, record)
    host.consume(consumer(FOLLOWUPS_DURABLE), functools.partial(on_case_event, runtime))
    host.needs_bucket(FOLLOWUPS_DUE_BUCKET)


async def _write(runtime: Runtime, case_id: str, cause: str, decide: Decide) -> Outcome:
    return await runtime.writer(SERVICE).execute(
        "case", case_id, cause=cause, correlation=cause, decide=decide
    )


async def on_case_event(runtime: Runtime, delivery: Delivery) -> None:
    """Keeps the projection of follow-ups due: scheduled ones in, recorded or escalated ones
    out, and all of a case's out when it is closed (that cancels them) or erased."""
    event = delivery.event
    bucket = await runtime.bucket(FOLLOWUPS_DUE_BUCKET)
    case_id = event.aggregate_id()
    if isinstance(event, FollowUpScheduled):
        due = json.dumps({"due_on": event.due_on.isoformat()}).encode()
        await bucket.put(due_key(case_id, str(event.followup_id)), due)
    elif isinstance(event, FollowUpRecorded | FollowUpOverdue):
        await _drop(bucket, due_key(case_id, str(event.followup_id)))
    elif isinstance(event, CaseClosed | CaseErased):
        for key in await bucket.keys(under=case_id):
            await _drop(bucket, key)


async def _drop(bucket: KeyValue, key: str) -> None:
    with contextlib.suppress(KeyNotFound):
        await bucket.delete(key)


async def escalate_overdue(runtime: Runtime) -> int:
    """One sweep: escalate every follow-up past its due date, once. Returns how many. A key
    whose follow-up needs no watching any more (recorded, cancelled, escalated) is dropped,
    unless it was written again since it was read. Each follow-up on its own: one that fails
    is logged and retried at the next sweep, the others go on."""
    bucket = await runtime.bucket(FOLLOWUPS_DUE_BUCKET)
    now = runtime.clock()
    coordinating_body = runtime.registry.coordinating_body
    escalated = 0
    for entry in await bucket.entries():
        if not entry.value:
            continue
        due_on = dt.date.fromisoformat(json.loads(entry.value)["due_on"])
        if not rules.is_overdue(due_on, now):
            continue
        case_id, _, followup_id = entry.key.partition(".")
        try:
            outcome = await runtime.writer(SERVICE).execute(
                "case",
                case_id,
                cause=f"followup-overdue/{followup_id}",
                correlation=None,
                decide=_overdue(UUID(followup_id), now, coordinating_body),
            )
            with contextlib.suppress(WrongRevision):  # written again since: kept
                await bucket.delete(entry.key, last=entry.revision)
        except Exception as exc:
            log.warning(
                "followup_sweep.followup_failed",
                case_id=case_id,
                followup_id=followup_id,
                error=type(exc).__name__,
            )
            continue
        if outcome.event_ids and not outcome.duplicate:
            escalated += 1
            log.info("followup.overdue", case_id=case_id, followup_id=followup_id)
    return escalated


def _overdue(followup_id: UUID, now: dt.datetime, coordinating_body: str) -> Decide:
    return lambda history: rules.decide_followup_overdue(
        fold_case([e.event for e in history.events]), followup_id, now, coordinating_body
    )


async def run_overdue_sweeps(runtime: Runtime) -> None:
    """The identifier's background loop (services/bootstrap.py starts it)."""
    while True:
        try:
            await escalate_overdue(runtime)
        except Exception as exc:  # a failed sweep is retried at the next tick
            log.warning("followup_sweep.failed", error=type(exc).__name__)
        await asyncio.sleep(runtime.settings.deadline_sweep_seconds)
