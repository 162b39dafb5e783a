"""The identifier's criminal proceedings: `proceeding.*` commands on the `proceeding`
aggregate, linked to the identifier's cases by id. The rules are in proceeding_rules.py; a
proceeding opened by a command has its id derived from that command (services/case/ids.py),
so a retry lands on the same proceeding and writes nothing twice."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from uuid import UUID

import services.identifier.proceeding_rules as rules
from contracts.commands import (
    BringCharges,
    FileComplaint,
    OpenInvestigation,
    RecordCourtDecision,
    RecordVictimParticipation,
)
from services.case.case import Case, fold_case
from services.case.ids import proceeding_id_for_command
from services.case.proceedings import fold_proceeding
from services.runtime.eventstore import History
from services.runtime.messaging import Runtime, ServiceHost
from services.runtime.writer import Outcome

SERVICE = "identifier"
AGGREGATE = "proceeding"


async def read_cases(runtime: Runtime, case_ids: Iterable[UUID]) -> dict[UUID, Case | None]:
    """The named cases, folded (None: not on the hub). Read before the append: a case
    cannot cease to exist, and an erasure in between still leaves only ids behind."""
    assert runtime.store is not None, "not connected"
    found: dict[UUID, Case | None] = {}
    for case_id in sorted(set(case_ids)):
        history = await runtime.store.load("case", str(case_id))
        found[case_id] = fold_case([e.event for e in history.events])
    return found


def register(host: ServiceHost) -> None:
    runtime = host.runtime

    async def write(proceeding_id: UUID, command: Any, rule: Any) -> tuple[str, Outcome]:
        """Append what `rule(proceeding, command, agency, now)` decides on the proceeding."""
        agency = runtime.registry.get(command.agency_id)
        now = runtime.clock()

        def decide(history: History) -> list[Any]:
            proceeding = fold_proceeding([e.event for e in history.events])
            return list(rule(proceeding, command, agency, now))

        outcome = await runtime.writer(SERVICE).execute(
            AGGREGATE,
            str(proceeding_id),
            cause=str(command.command_id),
            correlation=str(command.command_id),
            decide=decide,
        )
        return str(proceeding_id), outcome

    async def file_complaint(command: FileComplaint) -> tuple[str, Outcome]:
        proceeding_id = proceeding_id_for_command(command.command_id)
        cases = await read_cases(runtime, command.case_ids)
        return await write(
            proceeding_id,
            command,
            lambda p, cmd, agency, now: rules.decide_file_complaint(
                p, cmd, agency, cases, proceeding_id, now
            ),
        )

    async def open_investigation(command: OpenInvestigation) -> tuple[str, Outcome]:
        proceeding_id = command.proceeding_id or proceeding_id_for_command(command.command_id)
        cases = await read_cases(runtime, command.case_ids)
        return await write(
            proceeding_id,
            command,
            lambda p, cmd, agency, now: rules.decide_open_investigation(
                p, cmd, agency, cases, proceeding_id, now
            ),
        )

    async def bring_charges(command: BringCharges) -> tuple[str, Outcome]:
        return await write(command.proceeding_id, command, rules.decide_bring_charges)

    async def record_decision(command: RecordCourtDecision) -> tuple[str, Outcome]:
        return await write(command.proceeding_id, command, rules.decide_record_decision)

    async def record_participation(command: RecordVictimParticipation) -> tuple[str, Outcome]:
        return await write(command.proceeding_id, command, rules.decide_record_participation)

    host.command(FileComplaint, file_complaint)
    host.command(OpenInvestigation, open_investigation)
    host.command(BringCharges, bring_charges)
    host.command(RecordCourtDecision, record_decision)
    host.command(RecordVictimParticipation, record_participation)
