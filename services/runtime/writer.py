"""Load an aggregate, let a pure function decide, append what it decided: with retries on
concurrency conflicts and at-most-once effect per cause.

Event ids are derived from the cause (the command id or the triggering event id), and a
cause already present in the aggregate's history is answered from the history: a retried
command or a redelivered event changes nothing.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from contracts.envelope import wrap_event
from contracts.events import Event
from services.case.ids import derived_event_id
from services.runtime.eventstore import ConcurrencyConflict, EventStore, History

MAX_CONFLICT_RETRIES = 20
EMPTY = History((), 0)  # what a new aggregate's history is; the append proves it is new

Decide = Callable[[History], Sequence[Event]]
Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Outcome:
    event_ids: tuple[uuid.UUID, ...]
    duplicate: bool


class AggregateWriter:
    def __init__(self, store: EventStore, source: str, clock: Clock = utc_now) -> None:
        self._store = store
        self._source = source
        self._clock = clock

    async def execute(
        self,
        aggregate: str,
        aggregate_id: str,
        *,
        cause: str,
        correlation: str | None,
        decide: Decide,
    ) -> Outcome:
        """Decide on the history the store already holds (none: an empty one) and append on
        the condition that it is still the whole history: no read on the way when it is,
        which is most writes (an aggregate this instance wrote or read last, or a new one
        with an id derived from its cause). When the append conflicts, or the held history
        decides nothing or refuses (it may be behind), the history is loaded and the
        decision made again: only a decision on a loaded or proven history is final."""
        history: History | None = self._store.kept(aggregate, aggregate_id) or EMPTY
        loaded = False
        for _ in range(MAX_CONFLICT_RETRIES):
            if history is None:
                history, loaded = await self._store.load(aggregate, aggregate_id), True
            earlier = history.caused_by(cause)
            if earlier:  # a prefix of the history holds it: stored, whatever came after
                return Outcome(tuple(uuid.UUID(e.envelope.id) for e in earlier), duplicate=True)
            try:
                events = decide(history)
            except Exception:
                if loaded:
                    raise
                history = None  # refused on what may be only part of it
                continue
            if not events:
                if loaded:
                    return Outcome((), duplicate=False)
                history = None  # nothing to do, on what may be only part of it
                continue
            now = self._clock()
            ids = tuple(
                derived_event_id(cause, aggregate, aggregate_id, index)
                for index in range(len(events))
            )
            envelopes = [
                wrap_event(
                    event,
                    event_id=event_id,
                    source=self._source,
                    time=now,
                    correlation_id=correlation,
                    causation_id=cause,
                )
                for event, event_id in zip(events, ids, strict=True)
            ]
            try:
                await self._store.append(aggregate, aggregate_id, history.last_sequence, envelopes)
            except ConcurrencyConflict:
                history = None
                continue
            return Outcome(ids, duplicate=False)  # not parsed back from the envelopes
        raise ConcurrencyConflict(aggregate, aggregate_id, -1)
