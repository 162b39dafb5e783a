"""The event store port: what the hub needs from an event store, with no NATS in it.

Adapters: `JetStreamEventStore` (eventstore_jetstream.py, the product) and
`InMemoryEventStore` (in_memory.py, for handler tests without a server). One contract test
suite (tests/integration/test_event_store_contract.py) holds both to the same semantics:

- One global order: every stored event has a stream sequence, increasing across aggregates.
- An aggregate's events are the events on its subject filter (`aggregate_filter`); its
  version is the stream sequence of its last event (0: no events yet).
- `append` is conditional on that version and atomic: all the given events are stored, in
  order, or none; a stale `expected` raises `ConcurrencyConflict` (reload, decide again).
- The event id is the deduplication key: an event id already stored is not a second fact.
  The version is checked first (a stale one is a conflict, duplicate or not); then a single
  re-appended event answers with the sequence first stored, and a batch holding a stored id
  is refused as a conflict (reloading finds the cause in the history).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from contracts.envelope import Envelope, EnvelopeAttributes
from contracts.events import Event


class ConcurrencyConflict(Exception):
    def __init__(self, aggregate: str, aggregate_id: str, expected: int) -> None:
        super().__init__(f"{aggregate} {aggregate_id} moved past sequence {expected}")


class AppendFailed(Exception):
    pass


@dataclass(frozen=True)
class StoredEvent:
    envelope: EnvelopeAttributes
    event: Event
    stream_sequence: int


@dataclass(frozen=True)
class History:
    """One aggregate's events in order, and the stream sequence to expect when appending."""

    events: tuple[StoredEvent, ...]
    last_sequence: int
    # Positions in `events` by causation id, built on the first `caused_by` and shared with
    # the histories made by `extended`: every write asks for its cause, and a shelter's
    # history grows with every placement, so a walk of the events made each write cost more
    # than the one before.
    _by_cause: dict[str | None, list[int]] | None = field(default=None, compare=False, repr=False)

    def caused_by(self, causation_id: str) -> tuple[StoredEvent, ...]:
        if not self.events:  # nothing to index (and the writer's shared empty history
            return ()  # must not become an index every new aggregate extends)
        index = self._by_cause
        if index is None:
            index = {}
            _index_causes(index, self.events, 0)
            object.__setattr__(self, "_by_cause", index)
        events, length = self.events, len(self.events)
        # A shared index may also hold positions of a longer history, or of another one
        # extending the same prefix: only this history's own events with that cause count.
        return tuple(
            events[position]
            for position in sorted(set(index.get(causation_id, ())))
            if position < length and events[position].envelope.causationid == causation_id
        )

    def extended(self, more: Sequence[StoredEvent], last_sequence: int) -> History:
        """This history with `more` stored after it, up to `last_sequence`."""
        if self._by_cause is not None:
            _index_causes(self._by_cause, more, len(self.events))
        return History(self.events + tuple(more), last_sequence, self._by_cause)


def _index_causes(
    index: dict[str | None, list[int]], events: Sequence[StoredEvent], first: int
) -> None:
    for position, stored in enumerate(events, start=first):
        index.setdefault(stored.envelope.causationid, []).append(position)


class EventStore(Protocol):
    async def load(self, aggregate: str, aggregate_id: str) -> History:
        """The aggregate's whole history (empty, at sequence 0, for a new aggregate)."""
        ...

    def kept(self, aggregate: str, aggregate_id: str) -> History | None:
        """What the store already holds of the aggregate, without asking anyone: a true
        prefix of its history (the stream is append-only), possibly behind it, or None.
        A decision made on it is sound only once an append conditional on its
        `last_sequence` succeeds (services/runtime/writer.py)."""
        ...

    async def read(self, *filters: str, start: int = 1) -> tuple[StoredEvent, ...]:
        """Every stored event on any of the subject `filters` (NATS wildcards) from stream
        sequence `start` on, in stream order: what replays and projections read."""
        ...

    async def append(
        self, aggregate: str, aggregate_id: str, expected: int, envelopes: Sequence[Envelope]
    ) -> int:
        """Append atomically if the aggregate is still at `expected`; return the stream
        sequence of the last event appended."""
        ...
