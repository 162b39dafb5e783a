"""In-memory adapters of the hub's ports (event store, key-value buckets), for handler tests
that need no nats-server: the same semantics as the JetStream adapters (the contract suites
in tests/integration/ hold both to it)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from contracts.envelope import Envelope, unwrap_event
from contracts.subjects import EVENT_PREFIX, aggregate_filter
from services.runtime.eventstore import ConcurrencyConflict, History, StoredEvent
from services.runtime.keyvalue import Entry, KeyNotFound, WrongRevision, checked_key


def subject_matches(filter_subject: str, subject: str) -> bool:
    """NATS subject matching: `*` is one token, a final `>` one or more."""
    wanted, tokens = filter_subject.split("."), subject.split(".")
    for index, token in enumerate(wanted):
        if token == ">":
            return len(tokens) > index
        if index >= len(tokens) or token not in ("*", tokens[index]):
            return False
    return len(tokens) == len(wanted)


class InMemoryEventStore:
    """An event stream in a list: a global sequence, per-aggregate versions, atomic appends
    and deduplication by event id (for ever: JetStream's window is the stream's
    duplicate_window, two minutes in the hub)."""

    def __init__(self) -> None:
        self._stored: list[tuple[str, StoredEvent]] = []  # (subject, event), sequence = index+1
        self._last: dict[tuple[str, str], int] = {}
        self._ids: dict[str, int] = {}
        self._lock = asyncio.Lock()  # an append checks and stores in one step, like the server

    async def load(self, aggregate: str, aggregate_id: str) -> History:
        events = await self.read(aggregate_filter(aggregate, aggregate_id))
        return History(events, self._last.get((aggregate, aggregate_id), 0))

    def kept(self, aggregate: str, aggregate_id: str) -> History | None:
        last = self._last.get((aggregate, aggregate_id))
        if last is None:
            return None
        wanted = aggregate_filter(aggregate, aggregate_id)
        return History(
            tuple(event for subject, event in self._stored if subject_matches(wanted, subject)),
            last,
        )

    async def read(self, *filters: str, start: int = 1) -> tuple[StoredEvent, ...]:
        return tuple(
            event
            for subject, event in self._stored[max(start, 1) - 1 :]
            if any(subject_matches(f, subject) for f in filters)
        )

    async def append(
        self, aggregate: str, aggregate_id: str, expected: int, envelopes: Sequence[Envelope]
    ) -> int:
        if not envelopes:
            raise ValueError("nothing to append")
        async with self._lock:
            # The version is checked first, as JetStream does; then the event ids.
            if self._last.get((aggregate, aggregate_id), 0) != expected:
                raise ConcurrencyConflict(aggregate, aggregate_id, expected)
            known = [self._ids[e.id] for e in envelopes if e.id in self._ids]
            if known and len(envelopes) == 1:
                return known[0]  # a duplicate, not a second fact
            if known:
                raise ConcurrencyConflict(aggregate, aggregate_id, expected)
            # Decode all first: a batch is stored whole or not at all.
            decoded = [(e, unwrap_event(e)) for e in envelopes]
            for envelope, event in decoded:
                sequence = len(self._stored) + 1
                subject = f"{EVENT_PREFIX}.{aggregate}.{aggregate_id}.{envelope.type}"
                self._stored.append((subject, StoredEvent(envelope, event, sequence)))
                self._ids[envelope.id] = sequence
            self._last[(aggregate, aggregate_id)] = len(self._stored)
            return len(self._stored)


class InMemoryKeyValue:
    """A KV bucket in a dict: each key's latest record (a value, or None for a delete or purge
    marker, as NATS keeps one) and its revision, from one counter for the whole bucket. No
    await inside a method, so each one checks and writes in one step, like the server."""

    def __init__(self) -> None:
        self._latest: dict[str, tuple[bytes | None, int]] = {}
        self._revision = 0

    def _write(self, key: str, value: bytes | None) -> int:
        self._revision += 1
        self._latest[key] = (value, self._revision)
        return self._revision

    async def get(self, key: str) -> Entry:
        value, revision = self._latest.get(checked_key(key), (None, 0))
        if value is None:
            raise KeyNotFound(key)
        return Entry(key, value, revision)

    async def create(self, key: str, value: bytes) -> int:
        if self._latest.get(checked_key(key), (None, 0))[0] is not None:
            raise WrongRevision(key)
        return self._write(key, value)

    async def update(self, key: str, value: bytes, last: int) -> int:
        self._check_last(key, last)
        return self._write(key, value)

    def _check_last(self, key: str, last: int) -> None:
        # Compared with the latest record, a marker included, as JetStream compares the
        # subject's last sequence.
        if last < 1 or self._latest.get(checked_key(key), (None, 0))[1] != last:
            raise WrongRevision(key)

    async def put(self, key: str, value: bytes) -> int:
        return self._write(checked_key(key), value)

    async def delete(self, key: str, last: int | None = None) -> None:
        if last is not None:
            self._check_last(key, last)
        self._write(checked_key(key), None)

    async def purge(self, key: str) -> None:
        self._write(key, None)  # the earlier revisions are not kept anyway

    async def keys(self, under: str | None = None) -> list[str]:
        group = "" if under is None else f"{checked_key(under)}."
        return [
            key
            for key, (value, _) in self._latest.items()
            if value is not None and key.startswith(group)
        ]

    async def entries(self) -> list[Entry]:
        return [
            Entry(key, value, revision)
            for key, (value, revision) in self._latest.items()
            if value is not None
        ]
