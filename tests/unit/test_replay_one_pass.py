"""The fast paths of reading stored events give what the general paths give:
`read_current_event` (envelope and event in one pass) reads what `Envelope.from_bytes` +
`unwrap_event` read and leaves the rest to them, and `read_stored_event` (consumers, loads,
appends, the audit writer) falls back to them; a process remembers decodings by the bytes;
the statistics folded from it equal the statistics folded from envelopes; the projection
replay's read loop keeps what it kept; a delivery's position is read from its reply subject
as nats-py reads it."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections import defaultdict
from typing import Any

import pytest
from nats.aio.msg import Msg

from contracts.envelope import (
    Envelope,
    EnvelopeAttributes,
    read_current_event,
    read_stored_event,
    schema_uri,
    unwrap_event,
    wrap_event,
)
from contracts.events import UPCASTERS, Event, ShelterRegistered
from contracts.vocabulary import Region, ShelterCategory
from services.audit.replay import Key, ReadEvents, project
from services.runtime.stored_messages import delivery_position, stored_event_of
from services.statistics.projection import StatsState, apply, apply_event, fold
from tests.unit.synthetic_stats import generate


def _registered() -> ShelterRegistered:
    return ShelterRegistered(
        shelter_id="kg-ngo-bishkek-mens-shelter",
        region=Region.BISHKEK_CITY,
        capacity={ShelterCategory.MEN: 3},
    )


def _stored_bytes(dataschema: str | None, type_: str = "shelter.registered", **data: Any) -> bytes:
    envelope = wrap_event(
        _registered(),
        event_id=uuid.uuid4(),
        source="urn:nrm-hub:kg:shelter",
        time=dt.datetime.now(dt.UTC),
        correlation_id=None,
        causation_id=None,
    )
    changed = {"dataschema": dataschema, "type": type_}
    if data:
        changed["data"] = {**envelope.data, **data}
    return envelope.model_copy(update=changed).to_bytes()


def _attributes(envelope: EnvelopeAttributes) -> tuple[object, ...]:
    return (
        envelope.id,
        envelope.source,
        envelope.type,
        envelope.time,
        envelope.subject,
        envelope.correlationid,
        envelope.causationid,
    )


def test_one_pass_gives_the_envelope_attributes_and_event_of_the_general_path() -> None:
    for envelope in generate(seed=5, n=60).envelopes:
        raw = envelope.to_bytes()
        read = read_current_event(raw)
        assert read is not None, envelope.type
        attributes, event = read
        general = Envelope.from_bytes(raw)
        assert event == unwrap_event(general)
        assert _attributes(attributes) == _attributes(general)
        assert read_stored_event(raw) == read


def test_what_one_pass_leaves_is_read_or_refused_by_the_general_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`read_stored_event`, what consumers, loads and appends decode with: an older
    version is upcast as before, and what the general path refuses it refuses the same way."""
    older = _stored_bytes(schema_uri("shelter.registered", 0))
    monkeypatch.setitem(UPCASTERS, ("shelter.registered", 0), lambda data: data)
    attributes, event = read_stored_event(older)
    general = Envelope.from_bytes(older)
    assert event == unwrap_event(general) and _attributes(attributes) == _attributes(general)
    monkeypatch.delitem(UPCASTERS, ("shelter.registered", 0))
    for refused in (
        older,
        _stored_bytes(schema_uri("shelter.registered", 2)),
        _stored_bytes(schema_uri("shelter.discharged", 1)),
        _stored_bytes(None, "shelter.unheard_of"),
        _stored_bytes(None, region="atlantis"),
        b"{not json",
    ):
        with pytest.raises(ValueError) as general_error:
            unwrap_event(Envelope.from_bytes(refused))
        with pytest.raises(ValueError) as error:
            read_stored_event(refused)
        assert type(error.value) is type(general_error.value)
        assert str(error.value) == str(general_error.value)


@pytest.mark.parametrize(
    "raw",
    [
        _stored_bytes(schema_uri("shelter.registered", 0)),  # older: the general path upcasts
        _stored_bytes(schema_uri("shelter.registered", 2)),  # newer than this code
        _stored_bytes(schema_uri("shelter.discharged", 1)),  # names another type
        _stored_bytes(None, "shelter.unheard_of"),
        _stored_bytes(None, region="atlantis"),  # data the model refuses
        b"{not json",
    ],
)
def test_one_pass_leaves_to_the_general_path_what_it_must_decide(raw: bytes) -> None:
    assert read_current_event(raw) is None


def test_statistics_folded_in_one_pass_equal_statistics_folded_from_envelopes() -> None:
    envelopes = generate(seed=7, n=400).envelopes
    expected = fold(enumerate(envelopes, 1))
    state = StatsState()
    for sequence, envelope in enumerate(envelopes, 1):
        read = read_current_event(envelope.to_bytes())
        assert read is not None
        apply_event(state, read[1], read[0], sequence)
    assert state == expected
    assert state.events_applied == len(envelopes)
    # Re-reading what was applied changes nothing, on either path.
    read = read_current_event(envelopes[0].to_bytes())
    assert read is not None
    assert apply_event(state, read[1], read[0], 1) == expected
    assert apply(state, envelopes[0], 1) == expected


def test_the_replay_read_loop_keeps_histories_hashes_and_unreadable_as_before() -> None:
    raws = [e.to_bytes() for e in generate(seed=9, n=80).envelopes]
    raws.insert(5, b"{not json")
    raws.insert(9, _stored_bytes(None, region="atlantis"))
    numbered = list(enumerate(raws, 1))
    read = ReadEvents()
    read.read(numbered[:40])  # in runs, as the reader hands them over
    read.read(numbered[40:])
    histories: dict[Key, list[Event]] = defaultdict(list)
    unreadable = 0
    for _, raw in numbered:  # the loop `nrm audit replay` had
        try:
            event = unwrap_event(Envelope.from_bytes(raw))
        except ValueError:
            unreadable += 1
            continue
        histories[(event.AGGREGATE, event.aggregate_id())].append(event)
    assert read.histories == histories and read.unreadable == unreadable == 2
    assert read.hashes == {s: hashlib.sha256(raw).hexdigest() for s, raw in numbered}
    assert project(read.histories) == project(histories)


@pytest.mark.parametrize(
    "reply",
    [
        "$JS.ACK.NRM_EVENTS.mO5vnPSB.1.1234.17.1796163896139161565.4321",
        "$JS.ACK.hub.ACCHASH.NRM_EVENTS.mO5vnPSB.1.1234.17.1796163896139161565.4321.tok",
        "$JS.ACK.NRM_EVENTS.c.1.1.1.1796163896139161565.0",
    ],
)
def test_a_delivery_position_is_read_as_nats_py_reads_it(reply: str) -> None:
    metadata = Msg(_client=None, subject="s", reply=reply).metadata  # type: ignore[arg-type]
    assert delivery_position(reply) == (metadata.sequence.stream, metadata.num_pending)


def test_the_process_remembers_a_decoding_by_the_bytes_and_never_a_refusal() -> None:
    """`stored_event_of`: a second decoding of equal bytes (another durable of the process
    taking the event it appended, say) is the first one's result; what is refused is
    refused again each time, never answered from memory."""
    raw = _stored_bytes(None)
    first = stored_event_of(raw)
    assert first == read_stored_event(raw)
    assert stored_event_of(bytes(bytearray(raw))) is first  # equal bytes, another object
    other = _stored_bytes(None)  # another event id: other bytes, its own decoding
    assert stored_event_of(other) is not first and stored_event_of(other)[0].id != first[0].id
    refused = _stored_bytes(None, region="atlantis")
    for _ in range(2):
        with pytest.raises(ValueError):
            stored_event_of(refused)
