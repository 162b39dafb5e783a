"""Follow-ups on a real hub: scheduled and recorded over NATS, one left unrecorded escalated
once by the identifier's sweep (its clock moved past the due date), another agency refused,
a retry writing nothing, a closed case refusing them."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import pytest
from nats.aio.client import Client
from nats.js.errors import NoKeysError

from contracts.commands import CloseCase, RecordFollowUp, ScheduleFollowUp
from contracts.envelope import Envelope
from contracts.vocabulary import ClosureReason, FollowUpOutcome, FollowUpPurpose
from services.agencies.registry import load_registry
from services.bootstrap import bootstrap, running_services
from services.case.ids import followup_id_for_command
from services.client import HubClient
from services.runtime.settings import Settings
from services.runtime.topology import FOLLOWUPS_DUE_BUCKET
from tests.integration.hub_reads import CANARIES, events, screening, wait_until

pytestmark = pytest.mark.integration
OWNER = "kg-ngo-osh-crisis-centre"  # screening()'s agency: it identifies, so owns the case
OTHER = "kg-health-osh"


async def test_follow_ups_are_scheduled_recorded_escalated_and_refused_on_a_real_hub(
    settings: Settings, nc: Client
) -> None:
    now = [dt.datetime.now(dt.UTC)]
    today = now[0].date()
    assert settings.nats_url is not None
    await bootstrap(settings.nats_url, settings)
    js = nc.jetstream()
    async with running_services(settings.nats_url, settings, clock=lambda: now[0]):
        client = HubClient(nc)
        reply = await client.send(screening(needs=frozenset()))
        case_id = reply["aggregate_id"]

        def schedule(by: str = OWNER) -> ScheduleFollowUp:
            return ScheduleFollowUp(
                command_id=uuid.uuid4(),
                agency_id=by,
                case_id=case_id,
                due_on=today + dt.timedelta(days=1),
                purpose=FollowUpPurpose.SAFETY_CHECK,
            )

        async def of_type(name: str) -> list[Envelope]:
            return [e for e in await events(js) if e.type == name]

        # Scheduled and recorded; a retry of each is answered from the record.
        first = schedule()
        scheduled = await client.send(first)
        assert scheduled["status"] == "accepted", scheduled
        again = await client.send(first)
        assert again["duplicate"] and again["event_ids"] == scheduled["event_ids"]
        recording = RecordFollowUp(
            command_id=uuid.uuid4(),
            agency_id=OWNER,
            case_id=case_id,
            followup_id=followup_id_for_command(first.command_id),
            outcome=FollowUpOutcome.IN_CONTACT_STABLE,
        )
        recorded = await client.send(recording)
        assert recorded["status"] == "accepted", recorded
        assert (await client.send(recording))["duplicate"]
        assert len(await of_type("case.followup_scheduled")) == 1
        assert len(await of_type("case.followup_recorded")) == 1

        # Another agency's follow-up of this case: refused, nothing written.
        before = len(await events(js))
        refused = await client.send(schedule(OTHER))
        assert refused["status"] == "rejected"
        assert [(e["field"], e["code"]) for e in refused["errors"]] == [
            ("agency_id", "not_authorised")
        ]
        assert len(await events(js)) == before

        # One left unrecorded: escalated once to the coordinating body after its due day.
        late = schedule()
        assert (await client.send(late))["status"] == "accepted"
        bucket = await js.key_value(FOLLOWUPS_DUE_BUCKET)

        async def projected() -> list[str]:
            try:
                return list(await bucket.keys())
            except NoKeysError:  # nats-py's answer for an empty bucket
                return []

        async def dropped() -> bool:
            return not await projected()

        await wait_until(projected)
        await asyncio.sleep(0.5)  # sweeps before the due day is over: nothing escalated
        assert await of_type("case.followup_overdue") == []
        now[0] += dt.timedelta(days=2)
        [overdue] = await wait_until(lambda: of_type("case.followup_overdue"))
        assert overdue.data["followup_id"] == str(followup_id_for_command(late.command_id))
        assert overdue.data["escalated_to"] == load_registry().coordinating_body
        await wait_until(dropped)
        await asyncio.sleep(1.0)  # several more sweeps
        assert len(await of_type("case.followup_overdue")) == 1

        # A closed case takes no follow-up.
        close = CloseCase(
            command_id=uuid.uuid4(),
            agency_id=OWNER,
            case_id=case_id,
            reason=ClosureReason.REINTEGRATED,
        )
        assert (await client.send(close))["status"] == "accepted"
        after_close = schedule().model_copy(update={"due_on": now[0].date()})
        closed = await client.send(after_close)
        assert [(e["field"], e["code"]) for e in closed["errors"]] == [("case_id", "invalid_state")]
        stored = b"".join(e.to_bytes() for e in await events(js))
        assert not any(canary.encode() in stored for canary in CANARIES)
