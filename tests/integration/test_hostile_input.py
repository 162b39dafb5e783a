"""Malformed, oversized, wrongly typed, unicode-heavy and hostile payloads on every command
subject of a running hub: each gets a typed reply, a rejection writes nothing, the hub stays up."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from nats.aio.client import Client

from contracts.public_key_sealing import intake_info, seal_to
from contracts.subjects import EVENTS_STREAM, REJECTIONS_STREAM, command_subject
from services.client import HubClient
from services.runtime.service_table import command_owners
from services.runtime.settings import Settings
from tests.hostile_corpus import MARKER, Body, domain_rejected, parse_rejected
from tests.hostile_corpus import examples as corpus_examples
from tests.integration.hub_reads import screening, stream_messages

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


REPLY_TIMEOUT = 5.0  # the agency client's request timeout


async def _answer_without_an_echo(nc: Client, subject: str, case: Body) -> dict[str, Any]:
    """The reply to one corpus body: typed, in time, and repeating nothing that was sent."""
    reply = await nc.request(subject, case.body, timeout=REPLY_TIMEOUT)
    assert MARKER not in reply.data.decode().lower(), (subject, case.label)
    envelope: dict[str, Any] = json.loads(reply.data)
    return envelope


async def _rejected_without_an_echo(nc: Client, subject: str, case: Body) -> list[dict[str, Any]]:
    envelope = await _answer_without_an_echo(nc, subject, case)
    assert envelope["type"] == "command.rejected", (subject, case.label)
    errors: list[dict[str, Any]] = envelope["data"]["errors"]
    assert errors and all(e["code"] != "unavailable" and e["reason"] for e in errors), errors
    return errors


async def test_the_hostile_corpus_gets_a_typed_rejection_on_every_subject(
    hub: Settings, nc: Client
) -> None:
    js = nc.jetstream()
    before = (await js.stream_info(EVENTS_STREAM)).state.last_seq
    sent = 0
    for subject in sorted(corpus_examples()):
        for case in parse_rejected(subject):
            errors = await _rejected_without_an_echo(nc, subject, case)
            assert all(e["code"] in ("invalid_json", "invalid_field") for e in errors), errors
            sent += 1
    assert (await js.stream_info(EVENTS_STREAM)).state.last_seq == before, "a rejection wrote"
    # One connection, no agency the hub can name: each service keeps its notices within a
    # rate budget and counts those held back in the next one it keeps; after a pause, one
    # more body per service shows the counts, so every rejection is accounted for.
    await asyncio.sleep(1.0)
    owners = {command_subject(c): owner for c, owner in command_owners().items()}
    one_per_service = {owners[s]: s for s in sorted(corpus_examples())}
    for subject in one_per_service.values():
        await _rejected_without_an_echo(nc, subject, parse_rejected(subject)[0])
    notices = await stream_messages(js, REJECTIONS_STREAM)
    held_back = sum(json.loads(m.data or b"")["data"]["held_back"] for m in notices)
    assert held_back > 0, "the corpus is larger than the budget: some must be held back"
    assert len(notices) + held_back == sent + len(one_per_service)
    assert not any(MARKER in (m.data or b"").decode().lower() for m in notices)


async def test_unknown_agency_ids_are_answered_without_an_echo(hub: Settings, nc: Client) -> None:
    """Well-formed agency ids that no registry lists: rejected by a reason that does not
    quote them (access.request included: no access.refused is recorded for an id nobody
    registered, the record keeps no text the sender chose), and no notice keeps them."""
    js = nc.jetstream()
    before = (await js.stream_info(EVENTS_STREAM)).state.last_seq
    for subject in sorted(corpus_examples()):
        for case in domain_rejected(subject):
            envelope = await _answer_without_an_echo(nc, subject, case)
            # Whichever check comes first (the agency, the case, the key) rejects it.
            assert envelope["type"] == "command.rejected", case.label
            codes = {e["code"] for e in envelope["data"]["errors"]}
            assert codes and not codes & {"invalid_json", "unavailable"}, codes
    assert (await js.stream_info(EVENTS_STREAM)).state.last_seq == before
    notices = await stream_messages(js, REJECTIONS_STREAM)
    assert notices
    assert not any(MARKER in (m.data or b"").decode().lower() for m in notices)


SEALED_CONTENTS: list[tuple[str, bytes]] = [
    ("deep", b"[" * 2000 + b"]" * 2000),
    ("deep objects", b'{"a": ' * 2000 + b"1" + b"}" * 2000),
    ("huge integer", b'{"full_name": "x", "age": 1' + b"7" * 5000 + b"}"),
    ("NaN", b'{"full_name": NaN}'),
    ("duplicate key", b'{"full_name": "x", "full_name": "' + MARKER.encode() + b'"}'),
    ("lone surrogate", b'{"full_name": "\\ud800' + MARKER.encode() + b'"}'),
    ("byte-order mark", b'\xef\xbb\xbf{"full_name": "x"}'),
    ("UTF-16", '{"full_name": "x"}'.encode("utf-16")),
    ("unknown key", b'{"full_name": "x", "' + MARKER.encode() + b'_surname": 1}'),
    ("not an object", b'["' + MARKER.encode() + b'"]'),
    ("empty", b""),
]


@pytest.mark.parametrize(("label", "content"), SEALED_CONTENTS, ids=[c[0] for c in SEALED_CONTENTS])
async def test_hostile_sealed_personal_data_is_rejected_as_personal_data(
    hub: Settings, client: HubClient, nc: Client, label: str, content: bytes
) -> None:
    """The same limits inside the sealed personal data, once opened: `personal_data` is named,
    never `unavailable` (which would tell the agency to resend forever)."""
    command = await client.sealed(screening())
    info = intake_info(str(command.command_id), command.agency_id)
    sealed = seal_to(await client.intake_key(), info, content)
    body = json.loads(command.model_dump_json())
    body["personal_data"] = sealed.model_dump()
    errors = await _rejected_without_an_echo(
        nc, "nrm.cmd.screening.submit", Body(label, json.dumps(body).encode())
    )
    assert all(e["code"] == "invalid_field" for e in errors), errors
    assert all(e["field"].startswith("personal_data") for e in errors), errors
