"""The event store: JetStream's NRM_EVENTS stream, one subject per aggregate and event type.

Appends are conditional on the aggregate's last stream sequence
(`Nats-Expected-Last-Subject-Sequence`, with `...-Subject` set to the aggregate's wildcard so
that every event type of the aggregate counts); a mismatch is a `ConcurrencyConflict` and the
caller reloads and decides again. `Nats-Msg-Id` is the event id, so a republished event is
a duplicate, not a second fact. Several events for one aggregate go in one atomic batch.
"""

from __future__ import annotations

import json
import uuid
from collections import OrderedDict
from dataclasses import dataclass

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import APIError

from contracts.envelope import Envelope, unwrap_event
from contracts.events import Event
from contracts.subjects import EVENT_PREFIX, EVENTS_STREAM, aggregate_filter

# JetStream errors meaning "the aggregate moved on since you loaded it".
_CONFLICT_CODES = frozenset({10071, 10164})
# A batch whose message ids are already stored: another writer appended the same decision.
# Reloading finds the cause in the history and answers from it.
_BATCH_DUPLICATE = 10201
_FETCH_BATCH = 256
# Aggregates whose loaded history is kept, most recently used first. The stream is
# append-only (no purge, no delete: see topology), so a kept history is still true and only
# what came after its last sequence needs reading: a load costs the new events, not the
# aggregate's whole life (a shelter's history grows with every placement).
HISTORY_CACHE_SIZE = 4096


class ConcurrencyConflict(Exception):
    def __init__(self, aggregate: str, aggregate_id: str, expected: int) -> None:
        super().__init__(f"{aggregate} {aggregate_id} moved past sequence {expected}")


class AppendFailed(Exception):
    pass


@dataclass(frozen=True)
class StoredEvent:
    envelope: Envelope
    event: Event
    stream_sequence: int


@dataclass(frozen=True)
class History:
    """One aggregate's events in order, and the stream sequence to expect when appending."""

    events: tuple[StoredEvent, ...]
    last_sequence: int

    def caused_by(self, causation_id: str) -> tuple[StoredEvent, ...]:
        return tuple(e for e in self.events if e.envelope.causationid == causation_id)


class EventStore:
    def __init__(self, nc: Client, js: JetStreamContext, stream: str = EVENTS_STREAM) -> None:
        self._nc = nc
        self._js = js
        self._stream = stream
        self._histories: OrderedDict[tuple[str, str], History] = OrderedDict()

    async def load(self, aggregate: str, aggregate_id: str) -> History:
        """The aggregate's whole history: the kept part, plus every event stored after it."""
        key = (aggregate, aggregate_id)
        kept = self._histories.get(key)
        start = kept.last_sequence + 1 if kept is not None else 1
        newer = await self.read(aggregate_filter(aggregate, aggregate_id), start=start)
        events = (kept.events if kept is not None else ()) + newer
        history = History(events, events[-1].stream_sequence if events else 0)
        if events:
            self._histories[key] = history
            self._histories.move_to_end(key)
            if len(self._histories) > HISTORY_CACHE_SIZE:
                self._histories.popitem(last=False)
        return history

    async def read(self, *filters: str, start: int = 1) -> tuple[StoredEvent, ...]:
        """Every stored event on any of `filters` from stream sequence `start` on, in stream
        order (one short-lived consumer)."""
        info = await self._js.add_consumer(
            self._stream,
            ConsumerConfig(
                name=f"load-{uuid.uuid4().hex}",
                # One filter goes in the create subject, which NATS permissions can check.
                filter_subject=filters[0] if len(filters) == 1 else None,
                filter_subjects=list(filters) if len(filters) > 1 else None,
                deliver_policy=DeliverPolicy.ALL if start <= 1 else DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=start if start > 1 else None,
                ack_policy=AckPolicy.NONE,
                inactive_threshold=30.0,
                mem_storage=True,
            ),
        )
        assert info.name is not None
        events: list[StoredEvent] = []
        try:
            remaining = info.num_pending or 0
            if remaining:
                sub = await self._js.pull_subscribe_bind(consumer=info.name, stream=self._stream)
                try:
                    while remaining > 0:
                        batch = await sub.fetch(min(remaining, _FETCH_BATCH), timeout=5.0)
                        for msg in batch:
                            envelope = Envelope.from_bytes(msg.data)
                            seq = msg.metadata.sequence.stream
                            events.append(StoredEvent(envelope, unwrap_event(envelope), seq))
                            remaining = msg.metadata.num_pending
                finally:
                    await sub.unsubscribe()
        finally:
            await self._js.delete_consumer(self._stream, info.name)
        return tuple(events)

    async def append(
        self, aggregate: str, aggregate_id: str, expected: int, envelopes: list[Envelope]
    ) -> int:
        """Append atomically if the aggregate is still at `expected`; return the last sequence."""
        if not envelopes:
            raise ValueError("nothing to append")
        guard = {
            "Nats-Expected-Last-Subject-Sequence": str(expected),
            "Nats-Expected-Last-Subject-Sequence-Subject": aggregate_filter(
                aggregate, aggregate_id
            ),
        }
        subjects = [f"{EVENT_PREFIX}.{aggregate}.{aggregate_id}.{e.type}" for e in envelopes]
        if len(envelopes) == 1:
            try:
                ack = await self._js.publish(
                    subjects[0],
                    envelopes[0].to_bytes(),
                    headers={"Nats-Msg-Id": envelopes[0].id, **guard},
                )
            except APIError as exc:
                if exc.err_code in _CONFLICT_CODES:
                    raise ConcurrencyConflict(aggregate, aggregate_id, expected) from None
                raise AppendFailed(f"append to {aggregate} refused: {exc.description}") from None
            return ack.seq
        return await self._append_batch(
            aggregate, aggregate_id, expected, subjects, envelopes, guard
        )

    async def _append_batch(
        self,
        aggregate: str,
        aggregate_id: str,
        expected: int,
        subjects: list[str],
        envelopes: list[Envelope],
        guard: dict[str, str],
    ) -> int:
        # Atomic batch publish (ADR-50, server >= 2.12): all or nothing, checked on commit.
        batch_id = uuid.uuid4().hex
        last = len(envelopes)
        for index, (subject, envelope) in enumerate(zip(subjects, envelopes, strict=True), 1):
            headers = {
                "Nats-Batch-Id": batch_id,
                "Nats-Batch-Sequence": str(index),
                "Nats-Msg-Id": envelope.id,
                **(guard if index == 1 else {}),
            }
            if index < last:
                await self._nc.publish(subject, envelope.to_bytes(), headers=headers)
                continue
            headers["Nats-Batch-Commit"] = "1"
            reply = await self._nc.request(
                subject, envelope.to_bytes(), timeout=5.0, headers=headers
            )

        answer = json.loads(reply.data)
        error = answer.get("error")
        if error:
            code = error.get("err_code")
            if code in _CONFLICT_CODES or code == _BATCH_DUPLICATE:
                raise ConcurrencyConflict(aggregate, aggregate_id, expected)
            raise AppendFailed(
                f"batch append to {aggregate} refused: {code} {error.get('description')}"
            )
        return int(answer["seq"])
