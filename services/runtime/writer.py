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
        for _ in range(MAX_CONFLICT_RETRIES):
            history = await self._store.load(aggregate, aggregate_id)
            earlier = history.caused_by(cause)
            if earlier:
                return Outcome(tuple(uuid.UUID(e.envelope.id) for e in earlier), duplicate=True)
            events = decide(history)
            if not events:
                return Outcome((), duplicate=False)
            now = self._clock()
            envelopes = [
                wrap_event(
                    event,
                    event_id=derived_event_id(cause, aggregate, aggregate_id, index),
                    source=self._source,
                    time=now,
                    correlation_id=correlation,
                    causation_id=cause,
                )
                for index, event in enumerate(events)
            ]
            try:
                await self._store.append(aggregate, aggregate_id, history.last_sequence, envelopes)
            except ConcurrencyConflict:
                continue
            return Outcome(tuple(uuid.UUID(e.id) for e in envelopes), duplicate=False)
        raise ConcurrencyConflict(aggregate, aggregate_id, -1)
