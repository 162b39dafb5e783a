"""The operators' replay reader on a real nats-server: `replay_batches` gives what the
direct get gives, in runs; it starts at a given sequence (the statistics resume there),
stops at the last message stored when it began, and a filter that matches nothing is an
empty read at once (not a stall)."""

from __future__ import annotations

import time
import uuid

import pytest
from nats.aio.client import Client

from contracts.envelope import Envelope, wrap_event
from contracts.events import ShelterRegistered
from contracts.subjects import EVENT_PREFIX, EVENTS_STREAM
from contracts.vocabulary import Region, ShelterCategory
from services.bootstrap import bootstrap
from services.runtime.eventstore_jetstream import JetStreamEventStore
from services.runtime.settings import Settings
from services.runtime.stored_messages import StreamReader, replay_batches
from services.runtime.writer import utc_now

pytestmark = pytest.mark.integration


def registered(shelter: str, beds: int) -> Envelope:
    event = ShelterRegistered(
        shelter_id=shelter, region=Region.OSH_CITY, capacity={ShelterCategory.WOMEN: beds}
    )
    return wrap_event(
        event,
        event_id=uuid.uuid4(),
        source="urn:test",
        time=utc_now(),
        correlation_id=None,
        causation_id=str(uuid.uuid4()),
    )


async def test_runs_start_where_asked_and_end_where_the_replay_began(
    settings: Settings, nc: Client
) -> None:
    assert settings.nats_url is not None
    await bootstrap(settings.nats_url, settings)
    store = JetStreamEventStore(nc)
    shelter, other = f"shelter-{uuid.uuid4().hex[:8]}", f"shelter-{uuid.uuid4().hex[:8]}"
    assert [run async for run in replay_batches(nc, EVENTS_STREAM)] == []
    last = 0
    for beds in range(1, 700):
        last = await store.append("shelter", shelter, last, [registered(shelter, beds)])
    other_last = await store.append("shelter", other, 0, [registered(other, 1)])
    expected = [(m.sequence, m.data) async for m in StreamReader(nc, EVENTS_STREAM).messages(">")]
    assert len(expected) == 700

    runs = []
    async for run in replay_batches(nc, EVENTS_STREAM):
        if not runs:  # stored after the replay began: not part of it
            await store.append("shelter", other, other_last, [registered(other, 2)])
        runs.append(run)
    assert [item for run in runs for item in run] == expected
    everything = [(m.sequence, m.data) async for m in StreamReader(nc, EVENTS_STREAM).messages(">")]
    assert len(everything) == 701
    assert [item async for run in replay_batches(nc, EVENTS_STREAM) for item in run] == everything

    # From a start sequence, as the statistics resume; past the end, nothing.
    start = everything[300][0]
    resumed = replay_batches(nc, EVENTS_STREAM, start=start)
    assert [item async for run in resumed for item in run] == everything[300:]
    assert [run async for run in replay_batches(nc, EVENTS_STREAM, start=start + 1000)] == []
    filtered = replay_batches(nc, EVENTS_STREAM, f"{EVENT_PREFIX}.shelter.{other}.>", start=start)
    assert len([item async for run in filtered for item in run]) == 2

    # A filter nothing matches: an empty read, without waiting for the stall timeout.
    began = time.monotonic()
    nothing = f"{EVENT_PREFIX}.shelter.nobody-{uuid.uuid4().hex[:8]}.>"
    assert [run async for run in replay_batches(nc, EVENTS_STREAM, nothing, timeout=30)] == []
    assert time.monotonic() - began < 5
