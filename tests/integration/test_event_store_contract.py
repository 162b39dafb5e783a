"""The event store contract (pyeventsourcing style): one suite, run against every adapter.

`memory` runs without a server (a unit test: `-m "not integration"` keeps it); `jetstream`
runs against a real nats-server bootstrapped with the hub's topology. Both must give the same
answers: an adapter that passes here can stand in for the other in the handlers' tests."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import pytest
from nats.aio.client import Client
from nats.js.api import StreamConfig

from contracts.envelope import Envelope, wrap_event
from contracts.events import ShelterRegistered
from contracts.subjects import AUDIT_STREAM, EVENT_PREFIX, EVENTS_STREAM
from contracts.vocabulary import Region, ShelterCategory
from services.bootstrap import bootstrap
from services.runtime.eventstore import ConcurrencyConflict, EventStore, History
from services.runtime.eventstore_jetstream import JetStreamEventStore
from services.runtime.in_memory import InMemoryEventStore, subject_matches
from services.runtime.settings import Settings
from services.runtime.stored_messages import (
    UNREADABLE,
    NoDirectGet,
    ReadFailed,
    StreamReader,
    replay_batches,
)
from services.runtime.topology import stream_configs
from services.runtime.writer import utc_now

# A new view of the same stream: another service instance (the JetStream one keeps its own
# history cache of `cache_size` aggregates; the in-memory one is the stream itself).
Stores = Callable[[], EventStore]


@pytest.fixture
async def bootstrapped(settings: Settings, nc: Client) -> Client:
    assert settings.nats_url is not None
    await bootstrap(settings.nats_url, settings)
    return nc


# Not async: it asks for the server's fixtures only for the JetStream run, outside the loop.
@pytest.fixture(params=["memory", pytest.param("jetstream", marks=pytest.mark.integration)])
def stores(request: pytest.FixtureRequest) -> Stores:
    if request.param == "memory":
        stream = InMemoryEventStore()
        return lambda: stream
    nc: Client = request.getfixturevalue("bootstrapped")
    return lambda: JetStreamEventStore(nc, cache_size=2)


def registered(shelter: str, beds: int = 1, event_id: uuid.UUID | None = None) -> Envelope:
    event = ShelterRegistered(
        shelter_id=shelter, region=Region.OSH_CITY, capacity={ShelterCategory.WOMEN: beds}
    )
    return wrap_event(
        event,
        event_id=event_id or uuid.uuid4(),
        source="urn:test",
        time=utc_now(),
        correlation_id=None,
        causation_id=str(uuid.uuid4()),
    )


def ids(history: History) -> list[str]:
    return [e.envelope.id for e in history.events]


def new_id() -> str:
    return f"shelter-{uuid.uuid4().hex[:12]}"


async def test_a_new_aggregate_has_no_events_and_version_zero(stores: Stores) -> None:
    history = await stores().load("shelter", new_id())
    assert history.events == () and history.last_sequence == 0
    assert await stores().read(f"{EVENT_PREFIX}.shelter.{new_id()}.>") == ()


async def test_appended_events_load_in_order_with_their_stream_sequences(stores: Stores) -> None:
    store, shelter = stores(), new_id()
    first = [registered(shelter, 1)]
    last = await store.append("shelter", shelter, 0, first)
    batch = [registered(shelter, 2), registered(shelter, 3)]
    last = await store.append("shelter", shelter, last, batch)
    history = await stores().load("shelter", shelter)
    assert ids(history) == [e.id for e in first + batch]
    sequences = [e.stream_sequence for e in history.events]
    assert sequences == sorted(sequences) and len(set(sequences)) == 3
    assert history.last_sequence == last == sequences[-1]
    assert [e.event.capacity[ShelterCategory.WOMEN] for e in history.events] == [1, 2, 3]


async def test_of_two_writers_at_the_same_version_only_one_wins(stores: Stores) -> None:
    shelter = new_id()
    await stores().append("shelter", shelter, 0, [registered(shelter)])
    mine, theirs = stores(), stores()
    seen = (await mine.load("shelter", shelter)).last_sequence
    assert (await theirs.load("shelter", shelter)).last_sequence == seen
    results = await asyncio.gather(
        mine.append("shelter", shelter, seen, [registered(shelter, 2)]),
        theirs.append("shelter", shelter, seen, [registered(shelter, 3), registered(shelter, 4)]),
        return_exceptions=True,
    )
    conflicts = [r for r in results if isinstance(r, ConcurrencyConflict)]
    assert len(conflicts) == 1 and sum(isinstance(r, int) for r in results) == 1
    history = await stores().load("shelter", shelter)
    assert len(history.events) in (2, 3)  # the winner's events, whole
    with pytest.raises(ConcurrencyConflict):  # the loser's version is stale for good
        await mine.append("shelter", shelter, seen, [registered(shelter, 5)])
    with pytest.raises(ConcurrencyConflict):  # a version from the future is no better
        await mine.append("shelter", shelter, history.last_sequence + 10, [registered(shelter)])
    with pytest.raises(ConcurrencyConflict):  # nor is "new" for an aggregate that exists
        await mine.append("shelter", shelter, 0, [registered(shelter)])
    assert ids(await stores().load("shelter", shelter)) == ids(history)


async def test_versions_are_per_aggregate_and_sequences_one_global_order(stores: Stores) -> None:
    store, a, b = stores(), new_id(), new_id()
    a1 = await store.append("shelter", a, 0, [registered(a)])
    b1 = await store.append("shelter", b, 0, [registered(b)])
    assert b1 > a1
    with pytest.raises(ConcurrencyConflict):  # b's last sequence is not a's version
        await store.append("shelter", a, b1, [registered(a)])
    a2 = await store.append("shelter", a, a1, [registered(a)])  # b's append did not move a
    assert a2 > b1
    assert (await stores().load("shelter", b)).last_sequence == b1


async def test_a_batch_is_stored_whole_or_not_at_all(stores: Stores) -> None:
    store, shelter = stores(), new_id()
    stored = [registered(shelter)]
    last = await store.append("shelter", shelter, 0, stored)
    refused = [registered(shelter, 2), registered(shelter, 3), registered(shelter, 4)]
    with pytest.raises(ConcurrencyConflict):
        await store.append("shelter", shelter, 0, refused)  # stale: none of the three
    # One id of the batch is already stored: the other two are not stored either.
    mixed = [registered(shelter, 5), stored[0], registered(shelter, 6)]
    with pytest.raises(ConcurrencyConflict):
        await store.append("shelter", shelter, last, mixed)
    history = await stores().load("shelter", shelter)
    assert ids(history) == [stored[0].id] and history.last_sequence == last
    prefix = f"{EVENT_PREFIX}.shelter.{shelter}.>"
    assert [e.envelope.id for e in await stores().read(prefix)] == [stored[0].id]


async def test_a_re_appended_event_id_is_not_a_second_fact(stores: Stores) -> None:
    store, shelter = stores(), new_id()
    event = registered(shelter)
    first = await store.append("shelter", shelter, 0, [event])
    # Retried after a lost ack, at the version it was decided at (now stale): the version
    # is checked first, and reloading finds the event there.
    with pytest.raises(ConcurrencyConflict):
        await store.append("shelter", shelter, 0, [event])
    # At the current version, the same id again answers with the sequence first stored.
    again = registered(shelter, event_id=uuid.UUID(event.id))
    assert await stores().append("shelter", shelter, first, [again]) == first
    pair = [registered(shelter, 2), registered(shelter, 3)]
    last = await store.append("shelter", shelter, first, pair)
    with pytest.raises(ConcurrencyConflict):  # a repeated batch: reload finds its cause
        await store.append("shelter", shelter, first, pair)
    history = await stores().load("shelter", shelter)
    assert ids(history) == [event.id, pair[0].id, pair[1].id]
    assert history.last_sequence == last


async def test_events_are_read_from_a_position_on_any_of_several_filters(
    stores: Stores,
) -> None:
    store, a, b, c = stores(), new_id(), new_id(), new_id()
    sequences = {}
    for shelter in (a, b, c, a, b):
        expected = (await store.load("shelter", shelter)).last_sequence
        envelope = registered(shelter)
        sequences[envelope.id] = await store.append("shelter", shelter, expected, [envelope])
    order = sorted(sequences, key=sequences.__getitem__)  # a, b, c, a, b
    filters = (f"{EVENT_PREFIX}.shelter.{a}.>", f"{EVENT_PREFIX}.shelter.{b}.>")
    both = await stores().read(*filters)
    assert [e.envelope.id for e in both] == [order[0], order[1], order[3], order[4]]
    assert [e.stream_sequence for e in both] == [sequences[e.envelope.id] for e in both]
    from_fourth = await stores().read(*filters, start=sequences[order[3]])
    assert [e.envelope.id for e in from_fourth] == [order[3], order[4]]
    every = await stores().read(f"{EVENT_PREFIX}.>", start=sequences[order[0]])
    assert [e.envelope.id for e in every if e.envelope.id in sequences] == order
    beyond = await stores().read(f"{EVENT_PREFIX}.>", start=sequences[order[-1]] + 1)
    assert beyond == ()


async def test_histories_stay_whole_after_eviction_from_a_cache(stores: Stores) -> None:
    mine, theirs = stores(), stores()  # the JetStream views keep two aggregates each
    shelters = [new_id() for _ in range(3)]
    for round_ in range(3):
        for shelter in shelters:
            history = await theirs.load("shelter", shelter)
            await theirs.append(
                "shelter", shelter, history.last_sequence, [registered(shelter, round_ + 1)]
            )
            kept = await mine.load("shelter", shelter)
            fresh = await stores().load("shelter", shelter)
            assert ids(kept) == ids(fresh) and kept.last_sequence == fresh.last_sequence
            assert len(kept.events) == round_ + 1


async def test_what_a_store_keeps_is_a_true_prefix_of_the_history(stores: Stores) -> None:
    """`kept` asks nobody: None, or events and a version a load agrees with up to there.
    After this instance's own append it holds that append (no read needed to decide next);
    after another instance's, it may be behind, never different."""
    mine, theirs, shelter = stores(), stores(), new_id()
    assert mine.kept("shelter", shelter) is None
    last = await mine.append("shelter", shelter, 0, [registered(shelter)])
    own = mine.kept("shelter", shelter)
    assert own is not None and own.last_sequence == last
    assert ids(own) == ids(await stores().load("shelter", shelter))
    await theirs.append("shelter", shelter, last, [registered(shelter, 2)])
    full = await stores().load("shelter", shelter)
    behind = mine.kept("shelter", shelter)
    assert behind is not None and behind.last_sequence in (last, full.last_sequence)
    assert ids(behind) == ids(full)[: len(behind.events)]
    assert [e.stream_sequence for e in behind.events] == [
        e.stream_sequence for e in full.events[: len(behind.events)]
    ]
    assert [e.event for e in behind.events] == [e.event for e in full.events[: len(behind.events)]]


def test_subject_matching_follows_nats_wildcards() -> None:
    assert subject_matches("nrm.evt.>", "nrm.evt.case.1.victim.identified")
    assert subject_matches("nrm.evt.case.*.victim.identified", "nrm.evt.case.1.victim.identified")
    assert not subject_matches("nrm.evt.case.1.>", "nrm.evt.case.1")
    assert not subject_matches("nrm.evt.case.1.>", "nrm.evt.case.12.x")
    assert not subject_matches("nrm.evt.case.*", "nrm.evt.case.1.x")


@pytest.mark.integration
async def test_bootstrap_turns_on_direct_get_for_streams_created_without_it(
    settings: Settings, nc: Client
) -> None:
    js = nc.jetstream()
    for name in (EVENTS_STREAM, AUDIT_STREAM):  # as an older bootstrap created them
        config = next(c for c in stream_configs() if c.name == name)
        await js.add_stream(StreamConfig.from_response({**config.as_dict(), "allow_direct": False}))
        assert not (await js.stream_info(name)).config.allow_direct
    assert settings.nats_url is not None
    await bootstrap(settings.nats_url, settings)
    for name in (EVENTS_STREAM, AUDIT_STREAM):
        assert (await js.stream_info(name)).config.allow_direct


@pytest.mark.integration
async def test_the_reader_pages_through_batches_and_skips_what_is_not_an_event(
    bootstrapped: Client,
) -> None:
    nc, shelter = bootstrapped, new_id()
    store = JetStreamEventStore(nc)
    last = 0
    for beds in range(1, 8):
        last = await store.append("shelter", shelter, last, [registered(shelter, beds)])
    poison = f"{EVENT_PREFIX}.shelter.{shelter}.shelter.registered"
    await nc.jetstream().publish(poison, b"{not json")  # as a hand-typed publish would
    await store.append("shelter", shelter, last + 1, [registered(shelter, 8)])
    before = UNREADABLE.labels(EVENTS_STREAM)._value.get()

    reader = StreamReader(nc, EVENTS_STREAM, batch=3)  # 9 messages: four requests
    subject = f"{EVENT_PREFIX}.shelter.{shelter}.>"
    messages = [m async for m in reader.messages(subject)]
    assert len(messages) == 9 and messages[7].data == b"{not json"
    stop = messages[4].sequence
    assert [m.sequence for m in messages if m.sequence <= stop] == [
        m.sequence async for m in reader.messages(subject, stop=stop)
    ]
    history = await JetStreamEventStore(nc).load("shelter", shelter)
    assert [e.event.capacity[ShelterCategory.WOMEN] for e in history.events] == list(range(1, 9))
    assert history.last_sequence == messages[-1].sequence
    assert UNREADABLE.labels(EVENTS_STREAM)._value.get() == before + 1


@pytest.mark.integration
async def test_reads_side_by_side_share_one_reply_subscription_and_get_their_own_messages(
    bootstrapped: Client,
) -> None:
    """Twenty aggregates loaded at once, by two readers of one connection: each read gets
    exactly its own aggregate's events, and the connection made one reply subscription for
    all of them (nats-py numbers its subscriptions: before, each read made its own)."""
    nc, store = bootstrapped, JetStreamEventStore(bootstrapped)
    shelters = [new_id() for _ in range(20)]
    for beds, shelter in enumerate(shelters, 1):
        first = await store.append("shelter", shelter, 0, [registered(shelter, beds)])
        await store.append("shelter", shelter, first, [registered(shelter, beds + 100)])
    subscriptions = nc._sid  # the sid of nats-py's last subscription: they count up
    histories = await asyncio.gather(
        *(JetStreamEventStore(nc).load("shelter", s) for s in shelters),
        *(JetStreamEventStore(nc).load("shelter", s) for s in reversed(shelters)),
    )
    for history, beds in zip(histories, [*range(1, 21), *range(20, 0, -1)], strict=True):
        capacities = [e.event.capacity[ShelterCategory.WOMEN] for e in history.events]
        assert capacities == [beds, beds + 100]
    assert nc._sid - subscriptions <= 1


@pytest.mark.integration
async def test_a_read_of_a_stream_that_does_not_exist_fails_loudly(nc: Client) -> None:
    with pytest.raises(NoDirectGet):  # a ReadFailed: never an empty, complete-looking read
        [m async for m in StreamReader(nc, "NO_SUCH_STREAM", timeout=1.0).messages(">")]
    assert issubclass(NoDirectGet, ReadFailed)


@pytest.mark.integration
async def test_a_replay_reads_every_message_stored_when_it_began_in_order(
    bootstrapped: Client,
) -> None:
    """`replay_batches` (the operators' whole-stream replay, an ordered consumer) gives what
    the batched direct get gives, stops at the last message stored when it began even while
    more arrive, reads a subject filter to its last message, and an empty stream is empty."""
    nc, shelter = bootstrapped, new_id()
    store = JetStreamEventStore(nc)
    assert [run async for run in replay_batches(nc, EVENTS_STREAM)] == []
    last = 0
    for beds in range(1, 600):  # more than one run of the reader
        last = await store.append("shelter", shelter, last, [registered(shelter, beds)])
    await store.append("shelter", other := new_id(), 0, [registered(other, 1)])
    expected = [(m.sequence, m.data) async for m in StreamReader(nc, EVENTS_STREAM).messages(">")]
    replayed: list[tuple[int, bytes]] = []
    async for run in replay_batches(nc, EVENTS_STREAM):
        if not replayed:  # stored after the replay began: not part of it
            await store.append("shelter", other, run[0][0] + 599, [registered(other, 2)])
        replayed.extend(run)
    assert replayed == expected
    subject = f"{EVENT_PREFIX}.shelter.{shelter}.>"
    assert (
        len([item async for run in replay_batches(nc, EVENTS_STREAM, subject) for item in run])
        == 599
    )
    with pytest.raises(ReadFailed):
        [run async for run in replay_batches(nc, "NO_SUCH_STREAM")]
