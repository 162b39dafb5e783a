"""The event store keeps loaded histories and reads only what came after them: loads must
stay exactly what a full read gives, and optimistic concurrency and idempotency must hold
between store instances that each keep their own histories (service instances)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from nats.aio.client import Client

from contracts.envelope import Envelope, wrap_event
from contracts.events import ShelterRegistered
from contracts.vocabulary import Region, ShelterCategory
from services.bootstrap import bootstrap
from services.runtime import eventstore_jetstream
from services.runtime.eventstore import ConcurrencyConflict, History
from services.runtime.eventstore_jetstream import JetStreamEventStore as EventStore
from services.runtime.settings import Settings
from services.runtime.writer import AggregateWriter, utc_now

pytestmark = pytest.mark.integration
SHELTERS = (
    "kg-ngo-osh-crisis-centre",
    "kg-ngo-bishkek-crisis-centre",
    "kg-ngo-bishkek-mens-shelter",
)


def _registered(shelter: str, beds: int) -> Envelope:
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


def _same(left: History, right: History) -> bool:
    ids = [(e.envelope.id, e.stream_sequence) for e in left.events]
    return ids == [(e.envelope.id, e.stream_sequence) for e in right.events] and (
        left.last_sequence == right.last_sequence
    )


@pytest.fixture
async def stores(settings: Settings, nc: Client) -> tuple[EventStore, EventStore]:
    assert settings.nats_url is not None
    await bootstrap(settings.nats_url, settings)
    js = nc.jetstream()
    return EventStore(nc, js), EventStore(nc, js)


async def test_a_kept_history_sees_what_another_instance_appended_and_conflicts_when_stale(
    stores: tuple[EventStore, EventStore], nc: Client
) -> None:
    mine, theirs = stores
    shelter = SHELTERS[0]
    await mine.append("shelter", shelter, 0, [_registered(shelter, 1)])
    stale = await mine.load("shelter", shelter)  # kept
    other = await theirs.load("shelter", shelter)
    await theirs.append("shelter", shelter, other.last_sequence, [_registered(shelter, 2)])
    with pytest.raises(ConcurrencyConflict):
        await mine.append("shelter", shelter, stale.last_sequence, [_registered(shelter, 3)])
    fresh = await mine.load("shelter", shelter)
    assert len(fresh.events) == 2 and fresh.last_sequence > stale.last_sequence
    await mine.append("shelter", shelter, fresh.last_sequence, [_registered(shelter, 3)])
    assert _same(
        await mine.load("shelter", shelter),
        await EventStore(nc, nc.jetstream()).load("shelter", shelter),
    )


async def test_interleaved_loads_equal_full_reads_even_after_eviction(
    stores: tuple[EventStore, EventStore], nc: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine, theirs = stores
    # three aggregates: evictions
    monkeypatch.setattr(eventstore_jetstream, "HISTORY_CACHE_SIZE", 2)
    for round_ in range(4):
        for shelter in SHELTERS:
            history = await theirs.load("shelter", shelter)
            await theirs.append(
                "shelter", shelter, history.last_sequence, [_registered(shelter, round_ + 1)]
            )
            kept = await mine.load("shelter", shelter)
            full = await EventStore(nc, nc.jetstream()).load("shelter", shelter)  # keeps nothing
            assert _same(kept, full) and len(kept.events) == round_ + 1


async def test_a_cause_is_applied_once_across_instances_that_keep_histories(
    stores: tuple[EventStore, EventStore],
) -> None:
    mine, theirs = stores
    shelter = SHELTERS[1]
    cause = str(uuid.uuid4())

    def decide(_history: History) -> list[ShelterRegistered]:
        return [
            ShelterRegistered(
                shelter_id=shelter, region=Region.BISHKEK_CITY, capacity={ShelterCategory.MEN: 1}
            )
        ]

    first = await AggregateWriter(mine, "urn:a").execute(
        "shelter", shelter, cause=cause, correlation=None, decide=decide
    )
    again = await AggregateWriter(theirs, "urn:b").execute(
        "shelter", shelter, cause=cause, correlation=None, decide=decide
    )
    once_more = await AggregateWriter(mine, "urn:a").execute(
        "shelter", shelter, cause=cause, correlation=None, decide=decide
    )
    assert not first.duplicate and again.duplicate and once_more.duplicate
    assert first.event_ids == again.event_ids == once_more.event_ids
    assert len((await mine.load("shelter", shelter)).events) == 1


class CountedLoads:
    """Counts the writer's reads of one store."""

    def __init__(self, store: EventStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        load = store.load

        async def counted(aggregate: str, aggregate_id: str) -> History:
            self.count += 1
            return await load(aggregate, aggregate_id)

        monkeypatch.setattr(store, "load", counted)


def _beds_seen(shelter: str, history: History, at_least: int = 0) -> list[ShelterRegistered]:
    """A decision that depends on the whole history: beds = events seen + 1; nothing to do
    on fewer than `at_least` events."""
    if len(history.events) < at_least:
        return []
    beds = len(history.events) + 1
    return [
        ShelterRegistered(
            shelter_id=shelter, region=Region.OSH_CITY, capacity={ShelterCategory.WOMEN: beds}
        )
    ]


async def _write(store: EventStore, shelter: str, decide: Callable[[History], list[Any]]) -> None:
    await AggregateWriter(store, "urn:test").execute(
        "shelter", shelter, cause=str(uuid.uuid4()), correlation=None, decide=decide
    )


def _last_beds(history: History) -> int:
    last = history.events[-1].event
    assert isinstance(last, ShelterRegistered)
    return last.capacity[ShelterCategory.WOMEN]


async def test_a_writer_decides_without_reading_what_its_instance_wrote_last(
    stores: tuple[EventStore, EventStore], nc: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine, _ = stores
    shelter = f"shelter-{uuid.uuid4().hex[:8]}"
    loads = CountedLoads(mine, monkeypatch)
    for _ in range(3):  # a new aggregate, then the history it appended itself
        await _write(mine, shelter, lambda history: _beds_seen(shelter, history))
    assert loads.count == 0
    full = await EventStore(nc, nc.jetstream()).load("shelter", shelter)
    assert [_last_beds(History(full.events[: i + 1], 0)) for i in range(3)] == [1, 2, 3]


async def test_a_held_history_that_is_behind_is_never_the_one_decided_on(
    stores: tuple[EventStore, EventStore], nc: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another instance appended since: the conditional append conflicts, and so do a held
    history deciding nothing or refusing; each time the writer loads and decides again."""
    mine, theirs = stores
    shelter = f"shelter-{uuid.uuid4().hex[:8]}"
    await _write(mine, shelter, lambda history: _beds_seen(shelter, history))
    loads = CountedLoads(mine, monkeypatch)

    def refuse_on_fewer_than(n: int) -> Callable[[History], list[Any]]:
        def decide(history: History) -> list[Any]:
            if len(history.events) < n:
                raise ValueError("refused on part of the history")
            return _beds_seen(shelter, history)

        return decide

    cases: list[Callable[[History], list[Any]]] = [
        lambda history: _beds_seen(shelter, history),  # conflict
        lambda history: _beds_seen(shelter, history, at_least=4),  # nothing to do
        refuse_on_fewer_than(6),  # refusal
    ]
    for round_, decide in enumerate(cases):
        await _write(theirs, shelter, lambda history: _beds_seen(shelter, history))
        before = loads.count
        await _write(mine, shelter, decide)
        full = await EventStore(nc, nc.jetstream()).load("shelter", shelter)
        assert len(full.events) == 3 + 2 * round_
        assert _last_beds(full) == len(full.events)  # decided on every event before it
        assert loads.count == before + 1


async def test_an_aggregate_this_instance_never_saw_is_loaded_when_it_is_not_new(
    stores: tuple[EventStore, EventStore], nc: Client
) -> None:
    mine, theirs = stores
    shelter = f"shelter-{uuid.uuid4().hex[:8]}"
    await _write(theirs, shelter, lambda history: _beds_seen(shelter, history))
    assert mine.kept("shelter", shelter) is None
    await _write(mine, shelter, lambda history: _beds_seen(shelter, history))
    full = await EventStore(nc, nc.jetstream()).load("shelter", shelter)
    assert [e.event.capacity[ShelterCategory.WOMEN] for e in full.events] == [1, 2]  # type: ignore[attr-defined]


async def test_what_a_store_keeps_after_its_batches_is_what_a_load_reads(
    stores: tuple[EventStore, EventStore], nc: Client
) -> None:
    """A batch's events are kept with the sequences they were stored at (one run ending at
    the committed one), also while other aggregates are appended to at the same moment."""
    mine, theirs = stores
    shelters = [f"shelter-{uuid.uuid4().hex[:8]}" for _ in range(8)]

    async def batches(store: EventStore, shelter: str) -> None:
        last = 0
        for round_ in range(3):
            batch = [_registered(shelter, round_ + 1), _registered(shelter, round_ + 2)]
            last = await store.append("shelter", shelter, last, batch)

    await asyncio.gather(
        *(batches(mine if i % 2 else theirs, shelter) for i, shelter in enumerate(shelters))
    )
    for i, shelter in enumerate(shelters):
        kept = (mine if i % 2 else theirs).kept("shelter", shelter)
        full = await EventStore(nc, nc.jetstream()).load("shelter", shelter)
        assert kept is not None and _same(kept, full) and len(full.events) == 6
