"""Malformed or unauthorised commands get a typed error naming the problem and write nothing."""

from __future__ import annotations

import json

import pytest
from nats.aio.client import Client

from contracts.subjects import EVENTS_STREAM
from services.client import HubClient
from services.runtime.settings import Settings
from tests.integration.hub_reads import CANARIES, screening

pytestmark = pytest.mark.integration
SUBMIT = "nrm.cmd.screening.submit"


def _valid() -> dict[str, object]:
    payload: dict[str, object] = json.loads(screening().model_dump_json())
    return payload


def _without(field: str) -> bytes:
    payload = _valid()
    del payload[field]
    return json.dumps(payload).encode()


def _with(**changes: object) -> bytes:
    return json.dumps({**_valid(), **changes}).encode()


CASES = [
    ("bad JSON", b'{"command_id": ', "", "invalid_json"),
    ("not an object", b"[1, 2, 3]", "", "invalid_json"),
    ("not UTF-8", b"\xff\xfe\x00", "", "invalid_json"),
    ("missing field", _without("region"), "region", "invalid_field"),
    ("wrong type", _with(age="thirty"), "age", "invalid_field"),
    ("out of range", _with(age=300), "age", "invalid_field"),
    ("unknown enum", _with(sex="unknown"), "sex", "invalid_field"),
    ("unknown field", _with(surname="x"), "surname", "invalid_field"),
    ("bad country", _with(citizenship="Kyrgyzstan"), "citizenship", "invalid_field"),
    ("unknown agency", _with(agency_id="kg-no-such-agency"), "agency_id", "unknown_agency"),
    ("prosecution", _with(agency_id="kg-prosecutor-general"), "agency_id", "not_authorised"),
    ("NGO not agreed", _with(agency_id="kg-ngo-osh-legal-clinic"), "agency_id", "not_authorised"),
    (
        "oversized",
        _with(personal_data={"full_name": "x" * 5000}),
        "personal_data.full_name",
        "invalid_field",
    ),
]


@pytest.mark.parametrize(("label", "body", "field", "code"), CASES, ids=[c[0] for c in CASES])
async def test_rejected_with_the_field_and_reason_and_nothing_written(
    hub: Settings, client: HubClient, nc: Client, label: str, body: bytes, field: str, code: str
) -> None:
    js = nc.jetstream()
    before = (await js.stream_info(EVENTS_STREAM)).state.last_seq
    reply = await client.send_raw(SUBMIT, body)
    assert reply["type"] == "command.rejected", label
    errors = reply["data"]["errors"]
    assert any(e["field"] == field and e["code"] == code for e in errors), errors
    assert all(e["reason"] for e in errors)
    raw = json.dumps(reply)
    assert not any(canary in raw for canary in CANARIES), "a rejection echoed personal data"
    # The service is still up and answers the next valid command.
    ok = await client.send(screening())
    assert ok["status"] == "accepted"
    after = (await js.stream_info(EVENTS_STREAM)).state.last_seq
    assert after >= before + 1
    # Nothing was written for the rejected command: every event since traces to the valid one.
    for seq in range(before + 1, after + 1):
        msg = await js.get_msg(EVENTS_STREAM, seq)
        assert json.loads(msg.data or b"")["correlationid"] == ok["command_id"]
