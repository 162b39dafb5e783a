"""The event store's JetStream adapter: NRM_EVENTS, one subject per aggregate and event type.

Appends are conditional on the aggregate's last stream sequence
(`Nats-Expected-Last-Subject-Sequence`, with `...-Subject` set to the aggregate's wildcard so
that every event type of the aggregate counts); a mismatch is a `ConcurrencyConflict` and the
caller reloads and decides again. `Nats-Msg-Id` is the event id, so a republished event is
a duplicate, not a second fact (within the stream's duplicate window). Several events for one
aggregate go in one atomic batch. Reads go through the one reader (stored_messages.py):
batched direct get, no consumer per load.
"""

from __future__ import annotations

import json
import uuid
from collections import OrderedDict
from collections.abc import Sequence

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import APIError

from contracts.envelope import Envelope
from contracts.subjects import EVENT_PREFIX, EVENTS_STREAM, aggregate_filter
from services.runtime.eventstore import AppendFailed, ConcurrencyConflict, History, StoredEvent
from services.runtime.stored_messages import StoredMessage, StreamReader, decoded_event

# JetStream errors meaning "the aggregate moved on since you loaded it".
_CONFLICT_CODES = frozenset({10071, 10164})
# A batch whose message ids are already stored: another writer appended the same decision.
# Reloading finds the cause in the history and answers from it.
_BATCH_DUPLICATE = 10201
# Aggregates whose loaded history is kept, most recently used first. The stream is
# append-only (no purge, no delete: see topology), so a kept history is still true and only
# what came after its last sequence needs reading: a load costs the new events, not the
# aggregate's whole life (a shelter's history grows with every placement).
HISTORY_CACHE_SIZE = 4096


class JetStreamEventStore:
    def __init__(
        self,
        nc: Client,
        js: JetStreamContext | None = None,
        stream: str = EVENTS_STREAM,
        *,
        cache_size: int | None = None,
    ) -> None:
        self._nc = nc
        self._js = js if js is not None else nc.jetstream()
        self._stream = stream
        self._reader = StreamReader(nc, stream)
        self._cache_size = cache_size
        self._histories: OrderedDict[tuple[str, str], History] = OrderedDict()

    async def load(self, aggregate: str, aggregate_id: str) -> History:
        """The aggregate's whole history: the kept part, plus every event stored after it."""
        key = (aggregate, aggregate_id)
        kept = self._histories.get(key) or History((), 0)
        events: list[StoredEvent] = []
        last = kept.last_sequence
        async for message in self._reader.messages(
            aggregate_filter(aggregate, aggregate_id), start=last + 1
        ):
            last = message.sequence  # a skipped (unreadable) message still moves the version
            stored = decoded_event(message)
            if stored is not None:
                events.append(stored)
        history = kept.extended(events, last)
        if last:
            self._keep(key, history)
        return history

    def kept(self, aggregate: str, aggregate_id: str) -> History | None:
        return self._histories.get((aggregate, aggregate_id))

    def _keep(self, key: tuple[str, str], history: History) -> None:
        self._histories[key] = history
        self._histories.move_to_end(key)
        limit = self._cache_size if self._cache_size is not None else HISTORY_CACHE_SIZE
        while len(self._histories) > limit:
            self._histories.popitem(last=False)

    def _appended(
        self, aggregate: str, aggregate_id: str, expected: int, stored: list[StoredMessage]
    ) -> None:
        """Events just stored, conditional on `expected`: nothing of the aggregate lies
        between, so a kept history at `expected` plus these is the whole history. They are
        decoded from the bytes stored, as a load would decode them."""
        key = (aggregate, aggregate_id)
        kept = self._histories.get(key)
        if (kept.last_sequence if kept is not None else 0) != expected:
            return  # not kept, or kept from before: a load reads what is missing
        events = [decoded_event(message) for message in stored]
        if all(event is not None for event in events):
            after = [event for event in events if event is not None]
            self._keep(key, (kept or History((), 0)).extended(after, stored[-1].sequence))

    async def read(self, *filters: str, start: int = 1) -> tuple[StoredEvent, ...]:
        """Every stored event on any of `filters` from stream sequence `start` on, in stream
        order."""
        messages = await self._reader.merged(filters, start=start)
        return tuple(e for e in map(decoded_event, messages) if e is not None)

    async def append(
        self, aggregate: str, aggregate_id: str, expected: int, envelopes: Sequence[Envelope]
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
            data = envelopes[0].to_bytes()
            try:
                ack = await self._js.publish(
                    subjects[0], data, headers={"Nats-Msg-Id": envelopes[0].id, **guard}
                )
            except APIError as exc:
                if exc.err_code in _CONFLICT_CODES:
                    raise ConcurrencyConflict(aggregate, aggregate_id, expected) from None
                raise AppendFailed(f"append to {aggregate} refused: {exc.description}") from None
            if not ack.duplicate:  # a duplicate was stored before, at or below `expected`
                stored = StoredMessage(self._stream, ack.seq, subjects[0], data, {})
                self._appended(aggregate, aggregate_id, expected, [stored])
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
        envelopes: Sequence[Envelope],
        guard: dict[str, str],
    ) -> int:
        # Atomic batch publish (ADR-50, server >= 2.12): all or nothing, checked on commit.
        batch_id = uuid.uuid4().hex
        last = len(envelopes)
        payloads = [envelope.to_bytes() for envelope in envelopes]
        for index, (subject, envelope, data) in enumerate(
            zip(subjects, envelopes, payloads, strict=True), 1
        ):
            headers = {
                "Nats-Batch-Id": batch_id,
                "Nats-Batch-Sequence": str(index),
                "Nats-Msg-Id": envelope.id,
                **(guard if index == 1 else {}),
            }
            if index < last:
                await self._nc.publish(subject, data, headers=headers)
                continue
            headers["Nats-Batch-Commit"] = "1"
            reply = await self._nc.request(subject, data, timeout=5.0, headers=headers)

        answer = json.loads(reply.data)
        error = answer.get("error")
        if error:
            code = error.get("err_code")
            if code in _CONFLICT_CODES or code == _BATCH_DUPLICATE:
                raise ConcurrencyConflict(aggregate, aggregate_id, expected)
            raise AppendFailed(
                f"batch append to {aggregate} refused: {code} {error.get('description')}"
            )
        # A committed batch is stored as one run of sequences, ending at the one answered
        # (tests/integration/test_eventstore_history_cache.py checks it against a load).
        committed = int(answer["seq"])
        first = committed - len(envelopes) + 1
        stored = [
            StoredMessage(self._stream, first + offset, subject, data, {})
            for offset, (subject, data) in enumerate(zip(subjects, payloads, strict=True))
        ]
        self._appended(aggregate, aggregate_id, expected, stored)
        return committed
