"""The four services on a real nats-server: flows, the wire format, and what never leaks."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from cloudevents.core.formats.json import JSONFormat
from nats.aio.client import Client
from nats.js.errors import APIError

from contracts.commands import RegisterShelter, ScreeningInterview, SubmitScreening
from contracts.envelope import Envelope
from contracts.operations import AuditEntry
from contracts.subjects import AUDIT_STREAM, EVENTS_STREAM, command_subject
from services.client import HubClient
from services.runtime.settings import Settings
from services.runtime.topology import CASE_KEYS_BUCKET
from tests.integration.hub_reads import (
    CANARIES,
    audited_events,
    events,
    screening,
    stream_messages,
    wait_until,
)

pytestmark = pytest.mark.integration
EXAMPLES = sorted((Path(__file__).parents[2] / "contracts" / "examples").glob("*.json"))


async def test_examples_in_file_order_each_get_a_json_reply(
    hub: Settings, client: HubClient
) -> None:
    assert EXAMPLES, "contracts/examples is empty"
    replies: dict[str, dict[str, Any]] = {}
    for path in EXAMPLES:
        example = json.loads(path.read_text())
        if example["subject"] == command_subject(SubmitScreening):  # sealed by the client
            interview = ScreeningInterview.model_validate(example["payload"])
            replies[path.name] = await client.send(interview)
            continue
        body = json.dumps(example["payload"]).encode()
        reply = await client.send_raw(example["subject"], body)  # 5 s timeout
        replies[path.name] = reply["data"]
    assert replies["01-shelter.register.json"]["status"] == "accepted"
    assert replies["02-screening.submit.json"]["status"] == "accepted"
    unknown = replies["03-referral.accept.json"]
    assert unknown["status"] == "rejected"
    assert unknown["errors"][0]["code"] == "unknown_id"
    assert unknown["errors"][0]["field"] == "referral_id"
    discharge = replies["07-shelter.discharge.json"]
    assert discharge["status"] == "rejected"
    assert discharge["errors"][0]["field"] == "referral_id"
    # Reasons are fixed texts: the id is named by the field, never quoted.
    for reply in (unknown, discharge):
        assert "00000000-0000-4000-8000-00000000dead" not in json.dumps(reply["errors"])


async def test_identification_flows_to_referrals_admission_and_audit(
    hub: Settings, client: HubClient, nc: Client
) -> None:
    js = nc.jetstream()
    await client.send(
        RegisterShelter(
            command_id=uuid.uuid4(),
            agency_id="kg-ngo-osh-crisis-centre",
            capacity={"women": 2},
        )
    )
    reply = await client.send(screening())
    assert reply["status"] == "accepted"
    case_id = reply["aggregate_id"]
    screening_id = reply["command_id"]

    async def flow_done() -> list[Envelope]:
        found = [e for e in await events(js) if e.correlationid == str(screening_id)]
        types = sorted(e.type for e in found)
        return found if "referral.accepted" in types else []

    found = await wait_until(flow_done)
    types = sorted(e.type for e in found)
    assert types == [
        "consent.recorded",
        "referral.accepted",
        "referral.requested",
        "referral.requested",
        "shelter.admitted",
        "victim.identified",
    ]
    assert {e.data["case_id"] for e in found} == {case_id}

    async def audited() -> bool:
        return await audited_events(js) == len(await events(js))

    await wait_until(audited)


async def test_every_message_the_hub_emits_is_a_cloudevent_without_personal_data(
    hub: Settings, client: HubClient, nc: Client, capfd: pytest.CaptureFixture[str]
) -> None:
    js = nc.jetstream()
    emitted: list[bytes] = []
    replies = []
    for command in (screening(), screening(means=frozenset()), screening("kg-prosecutor-general")):
        sealed = await client.sealed(command)
        raw = await nc.request(
            "nrm.cmd.screening.submit", sealed.model_dump_json().encode(), timeout=5
        )
        replies.append(raw.data)
    emitted.extend(replies)

    async def settled() -> bool:
        audited = await audited_events(js)
        return audited == len(await stream_messages(js, EVENTS_STREAM)) and audited >= 6

    await wait_until(settled)
    for stream in (EVENTS_STREAM, AUDIT_STREAM):
        emitted.extend(m.data or b"" for m in await stream_messages(js, stream))
    for entry in await stream_messages(js, AUDIT_STREAM):  # audit entries follow their contract
        AuditEntry.model_validate(json.loads(entry.data or b"")["data"])
    for raw in emitted:
        event = JSONFormat().read(None, raw)  # the cloudevents SDK must read every message
        attributes = event.get_attributes()
        assert attributes["specversion"] == "1.0"
        assert attributes["id"] and attributes["source"] and attributes["type"]
        for canary in CANARIES:
            assert canary.encode() not in raw
    for raw in await stream_messages(js, EVENTS_STREAM):
        assert not any(c.encode() in raw.subject.encode() for c in CANARIES)
        assert not any(c in json.dumps(raw.headers or {}) for c in CANARIES)
    keys = await js.key_value(CASE_KEYS_BUCKET)
    for key in await keys.keys():
        entry = await keys.get(key)
        assert entry.value is not None and b"Canary" not in entry.value
    logs = capfd.readouterr()
    for canary in CANARIES:
        assert canary not in logs.out and canary not in logs.err


@pytest.mark.parametrize("stream", [EVENTS_STREAM, AUDIT_STREAM])
async def test_events_and_audit_cannot_be_purged_or_deleted(
    hub: Settings, client: HubClient, nc: Client, stream: str
) -> None:
    js = nc.jetstream()
    await client.send(screening())

    async def written() -> int:
        return (await js.stream_info(stream)).state.messages

    count = await wait_until(written)
    with pytest.raises(APIError):
        await js.purge_stream(stream)
    with pytest.raises(APIError):
        await js.delete_msg(stream, 1)
    assert (await js.stream_info(stream)).state.messages >= count
