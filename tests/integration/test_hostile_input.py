"""Malformed, oversized, wrongly typed, unicode-heavy and hostile payloads on every command
subject of a running hub: each gets a typed reply, a rejection writes nothing, the hub stays up."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from nats.aio.client import Client

from contracts.subjects import EVENTS_STREAM
from services.client import HubClient
from services.runtime.settings import Settings

pytestmark = pytest.mark.integration
ACCEPTED: set[str] = set()
EXAMPLES = {
    json.loads(p.read_text())["subject"]: json.loads(p.read_text())["payload"]
    for p in sorted((Path(__file__).parents[2] / "contracts" / "examples").glob("*.json"))
}
hostile_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=300
) | st.sampled_from(["\u202e\u0000", "' OR 1=1 --", "${jndi:ldap://x}", "nrm.evt.>", "A" * 70_000])
hostile_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | hostile_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(hostile_text, inner, max_size=4),
    max_leaves=12,
)


@st.composite
def bodies(draw: st.DrawFn) -> tuple[str, bytes]:
    subject = draw(st.sampled_from(sorted(EXAMPLES)))
    kind = draw(st.sampled_from(["bytes", "mutated", "object"]))
    if kind == "bytes":
        return subject, draw(st.binary(max_size=2000))
    if kind == "object":
        return subject, json.dumps(draw(st.dictionaries(hostile_text, hostile_value))).encode()
    payload: dict[str, Any] = dict(EXAMPLES[subject])
    field = draw(st.sampled_from(sorted(payload)))
    payload[field] = draw(hostile_value)
    return subject, json.dumps(payload).encode()


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=bodies())
async def test_every_command_subject_survives_hostile_bodies(
    hub: Settings, client: HubClient, nc: Client, case: tuple[str, bytes]
) -> None:
    subject, body = case
    # Bodies over NATS's max_payload (1 MB) never leave the client: nothing to test there.
    assume(len(body) < 900_000)
    js = nc.jetstream()
    before = (await js.stream_info(EVENTS_STREAM)).state.last_seq
    reply = await client.send_raw(subject, body)
    recorded = ("command.accepted", "access.denied", "cross_border.refused")
    assert reply["type"] in (*recorded, "command.rejected")
    if reply["type"] in recorded:  # each records what it decided
        # A mutation can leave a valid command; its referrals arrive later, asynchronously.
        ACCEPTED.add(reply["data"]["command_id"])
        return
    for error in reply["data"]["errors"]:
        assert error["code"] != "unavailable", error  # the hub did not break
        assert error["reason"]
    # Nothing was written for the rejected body: every event since traces to an accepted one.
    last = (await js.stream_info(EVENTS_STREAM)).state.last_seq
    for seq in range(before + 1, last + 1):
        written = json.loads((await js.get_msg(EVENTS_STREAM, seq)).data or b"")
        assert written["correlationid"] in ACCEPTED
