"""Malformed or unauthorised commands get a typed error naming the problem and write nothing."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from nats.aio.client import Client

from contracts.public_key_sealing import intake_info, seal_to
from contracts.subjects import EVENTS_STREAM
from services.client import HubClient
from services.runtime.settings import Settings
from tests.integration.hub_reads import CANARIES, screening

pytestmark = pytest.mark.integration
SUBMIT = "nrm.cmd.screening.submit"


Payload = dict[str, Any]
Mutation = Callable[[Payload, Callable[[object], object]], bytes]


def _without(field: str) -> Mutation:
    def mutate(payload: Payload, _seal: Callable[[object], object]) -> bytes:
        return json.dumps({k: v for k, v in payload.items() if k != field}).encode()

    return mutate


def _with(**changes: object) -> Mutation:
    return lambda payload, _seal: json.dumps({**payload, **changes}).encode()


def _with_json(**changes: bytes) -> Mutation:
    """Fields set to raw JSON text (json.dumps refuses an integer of 5,000 digits)."""

    def mutate(payload: Payload, _seal: Callable[[object], object]) -> bytes:
        body = json.dumps({**payload, **{k: f"<{k}>" for k in changes}}).encode()
        for field, raw in changes.items():
            body = body.replace(f'"<{field}>"'.encode(), raw)
        return body

    return mutate


def _raw(body: bytes) -> Mutation:
    return lambda _payload, _seal: body


def _sealed_personal_data(personal_data: object) -> Mutation:
    """Personal data sealed correctly to the hub but invalid once opened."""
    return lambda payload, seal: json.dumps(
        {**payload, "personal_data": seal(personal_data)}
    ).encode()


CASES: list[tuple[str, Mutation, str, str]] = [
    ("bad JSON", _raw(b'{"command_id": '), "", "invalid_json"),
    ("not an object", _raw(b"[1, 2, 3]"), "", "invalid_json"),
    ("not UTF-8", _raw(b"\xff\xfe\x00"), "", "invalid_json"),
    ("too deep", _raw(b"[" * 2000 + b"]" * 2000), "", "invalid_json"),
    ("huge integer", _with_json(age=b"1" + b"0" * 5000), "", "invalid_json"),
    ("age as text", _with(age="34"), "age", "invalid_field"),
    (
        "upper-case command_id",
        _with(command_id=str(uuid.uuid4()).upper()),
        "command_id",
        "invalid_field",
    ),
    (
        "sealed personal data too deep",
        _sealed_personal_data(b'{"full_name": ' + b"[" * 2000 + b"]" * 2000 + b"}"),
        "personal_data",
        "invalid_field",
    ),
    ("missing field", _without("region"), "region", "invalid_field"),
    ("wrong type", _with(age="thirty"), "age", "invalid_field"),
    ("out of range", _with(age=300), "age", "invalid_field"),
    ("unknown enum", _with(sex="unknown"), "sex", "invalid_field"),
    ("unknown field", _with(surname="x"), "(other)", "invalid_field"),
    ("bad country", _with(citizenship="Kyrgyzstan"), "citizenship", "invalid_field"),
    ("unknown agency", _with(agency_id="kg-no-such-agency"), "agency_id", "unknown_agency"),
    ("prosecution", _with(agency_id="kg-prosecutor-general"), "agency_id", "not_authorised"),
    ("NGO not agreed", _with(agency_id="kg-ngo-osh-legal-clinic"), "agency_id", "not_authorised"),
    (
        "personal data in clear",
        _with(personal_data={"full_name": CANARIES[0]}),
        "personal_data.kid",
        "invalid_field",
    ),
    (
        "sealed for another command",
        _with(command_id=str(uuid.uuid4())),
        "personal_data",
        "invalid_field",
    ),
    (
        "sealed personal data too long",
        _sealed_personal_data({"full_name": "x" * 5000}),
        "personal_data.full_name",
        "invalid_field",
    ),
    (
        "sealed personal data with an unknown field",
        _sealed_personal_data({"full_name": "x", "surname": CANARIES[0]}),
        "personal_data.(other)",
        "invalid_field",
    ),
    (
        "sealed personal data not JSON",
        _sealed_personal_data(b"\x00not json"),
        "personal_data",
        "invalid_field",
    ),
]


@pytest.mark.parametrize(("label", "mutate", "field", "code"), CASES, ids=[c[0] for c in CASES])
async def test_rejected_with_the_field_and_reason_and_nothing_written(
    hub: Settings,
    client: HubClient,
    nc: Client,
    label: str,
    mutate: Mutation,
    field: str,
    code: str,
) -> None:
    js = nc.jetstream()
    valid = await client.sealed(screening())
    intake = await client.intake_key()

    def seal(personal_data: object) -> object:
        clear = personal_data if isinstance(personal_data, bytes) else json.dumps(personal_data)
        raw = clear if isinstance(clear, bytes) else clear.encode()
        info = intake_info(str(valid.command_id), valid.agency_id)
        return seal_to(intake, info, raw).model_dump()

    body = mutate(json.loads(valid.model_dump_json()), seal)
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
