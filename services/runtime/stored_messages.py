"""The one reader of stored messages: every part of the hub that reads a stream reads here.

Services and operators read with JetStream's batched direct get (ADR-31, server >= 2.11) on
streams with `allow_direct` (topology): one request returns up to `batch` messages on a
subject filter from a stream sequence, ended by an EOB status. No consumer is created, bound
or deleted per read. An agency may not use direct get on NRM_FEEDS (a batch request's filter
is in its body, which NATS permissions cannot restrict), so `read_feed` keeps a consumer
named after the agency and filtered on its own feed (the filter is in the create subject).

Malformed messages, one policy everywhere: a stored message that is not a readable event (or
envelope) is skipped and counted, never fatal. `decoded_event`/`decoded_envelope` return None
for it, count it in `nrm_unreadable_messages_total{stream}` and log its stream and sequence
(never its content). The streams are append-only and undeletable, so failing on one bad
message would stop every later read for good; the writers only append envelopes they built,
so such a message is not a fact of the hub. An aggregate's `last_sequence` still counts a
skipped message (appends do not conflict forever). Raw readers (`messages`, the audit log's
`read_stream`) never decode: what a leaf hashes is the stored bytes as they are.

Failures of the read itself (timeout, no stream, permission, a server error) raise
`ReadFailed`: a read never ends early looking complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import itertools
import json
import weakref
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import ClassVar

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import APIError, NotFoundError
from prometheus_client import Counter
from pydantic import ValidationError

from contracts.envelope import Envelope, EnvelopeAttributes, read_stored_event
from contracts.events import Event
from contracts.subjects import FEEDS_STREAM, feed_filter
from services.runtime.eventstore import StoredEvent
from services.runtime.logging import get_logger

log = get_logger("nrm.stored")
BATCH = 256  # messages per direct-get request
DECODED_KEPT = 4096  # stored events remembered decoded (`stored_event_of`)
TIMEOUT_SECONDS = 5.0  # for a whole batch
UNREADABLE = Counter(
    "nrm_unreadable_messages_total",
    "Stored messages skipped by a reader because they are not a readable event",
    ["stream"],
)
# Headers the server adds to a direct-get reply; the stored message's own headers remain.
_DIRECT_HEADERS = frozenset(
    {
        "Nats-Stream",
        "Nats-Sequence",
        "Nats-Time-Stamp",
        "Nats-Subject",
        "Nats-Num-Pending",
        "Nats-Last-Sequence",
        "Nats-UpTo-Sequence",
    }
)


class ReadFailed(Exception):
    """The stream could not be read (as opposed to: it holds nothing there)."""


class NoSuchStream(ReadFailed):
    """A replay's stream does not exist (the hub was never bootstrapped)."""


class NoDirectGet(ReadFailed):
    """Nobody answers direct gets on the stream: it does not exist, or it was created
    without `allow_direct` (bootstrap turns it on)."""


@dataclass(frozen=True)
class StoredMessage:
    stream: str
    sequence: int
    subject: str
    data: bytes
    headers: dict[str, str]


def decoded_envelope(message: StoredMessage) -> Envelope | None:
    """The message's envelope, or None (counted and logged) if it is not one."""
    try:
        return Envelope.from_bytes(message.data)
    except (ValidationError, ValueError) as exc:
        _skipped(message, exc)
        return None


@functools.lru_cache(maxsize=DECODED_KEPT)
def stored_event_of(raw: bytes) -> tuple[EnvelopeAttributes, Event]:
    """`read_stored_event`, remembered for the last DECODED_KEPT stored events decoded in
    this process. One event is decoded by the append that stored it (for the kept history),
    then by each durable in this process that takes it (the services' consumers, the agency
    feed, the deadline projection, the audit writer): 4.4 decodes of each event in one
    process, at 45-125 us each under load (docs/PERFORMANCE.md item 31). Keyed by the bytes
    themselves: equal bytes decode to equal events whatever stream or server they came
    from, and events and envelopes are frozen, so sharing one is safe. A refusal is not
    remembered: it raises again, as it did."""
    return read_stored_event(raw)


def decoded_event(message: StoredMessage) -> StoredEvent | None:
    """The message as a stored event, or None (counted and logged) if it is not one."""
    try:
        envelope, event = stored_event_of(message.data)
        return StoredEvent(envelope, event, message.sequence)
    except (ValidationError, ValueError) as exc:
        _skipped(message, exc)
        return None


def _skipped(message: StoredMessage, exc: Exception) -> None:
    UNREADABLE.labels(message.stream).inc()
    log.warning(
        "stored.unreadable",
        stream=message.stream,
        stream_sequence=message.sequence,
        error=type(exc).__name__,
    )


class _Replies:
    """One reply subscription per connection, for every direct get made on it: each read
    takes its own subject under the subscription's wildcard and gets the replies sent there.
    A subscription per read cost a SUB and an UNSUB at the server (each changing its interest
    graph) and a subscription task in nats-py, for every load of every aggregate
    (docs/PERFORMANCE.md item 23). nats-py resubscribes it after a reconnect."""

    # Weak keys: a closed connection goes, and with it its entry. Nothing here refers to the
    # connection itself (the connection refers to `_route`), so nothing keeps it alive.
    _of: ClassVar[weakref.WeakKeyDictionary[Client, _Replies]] = weakref.WeakKeyDictionary()

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._routes: dict[str, Callable[[Msg], None]] = {}
        self._numbers = itertools.count()
        self._subscribed = False
        self._subscribing = asyncio.Lock()

    @classmethod
    def of(cls, nc: Client) -> _Replies:
        replies = cls._of.get(nc)
        if replies is None:
            replies = cls._of[nc] = cls(nc.new_inbox())
        return replies

    async def subject(self, nc: Client, route: Callable[[Msg], None]) -> str:
        """A reply subject of its own for one read on `nc`; `route` gets what is sent to it
        until `release`."""
        if not self._subscribed:
            async with self._subscribing:  # two first reads at once subscribe once
                if not self._subscribed:
                    await nc.subscribe(f"{self._prefix}.*", cb=self._route)
                    self._subscribed = True
        subject = f"{self._prefix}.{next(self._numbers)}"
        self._routes[subject] = route
        return subject

    def release(self, subject: str) -> None:
        """A late reply to a read that gave up is dropped, not routed."""
        self._routes.pop(subject, None)

    async def _route(self, msg: Msg) -> None:
        route = self._routes.get(msg.subject)
        if route is not None:
            route(msg)


class StreamReader:
    """Reads one stream by batched direct get."""

    def __init__(
        self, nc: Client, stream: str, *, batch: int = BATCH, timeout: float = TIMEOUT_SECONDS
    ) -> None:
        self._nc = nc
        self._stream = stream
        self._batch = batch
        self._timeout = timeout

    async def messages(
        self, subject: str, *, start: int = 1, stop: int | None = None
    ) -> AsyncIterator[StoredMessage]:
        """Every message on `subject` (wildcards allowed) from sequence `start`, in stream
        order, up to `stop` if given, else to the stream's end (messages stored while
        reading included)."""
        loop = asyncio.get_running_loop()
        replies: list[Msg] = []
        done: asyncio.Future[None] = loop.create_future()

        def on_reply(msg: Msg) -> None:
            # Collected, then one wake-up per batch instead of one per message.
            replies.append(msg)
            status = (msg.headers or {}).get("Status")
            if status is not None and not done.done():
                done.set_result(None)

        routes = _Replies.of(self._nc)
        try:
            inbox = await routes.subject(self._nc, on_reply)
        except NatsError as exc:
            raise ReadFailed(f"{self._stream}: {type(exc).__name__}") from None
        try:
            while stop is None or start <= stop:
                request = {"seq": max(start, 1), "batch": self._batch, "next_by_subj": subject}
                await self._nc.publish(
                    f"$JS.API.DIRECT.GET.{self._stream}", json.dumps(request).encode(), reply=inbox
                )
                try:
                    async with asyncio.timeout(self._timeout):  # no task per wait, as wait_for
                        await done
                except TimeoutError:
                    raise ReadFailed(f"{self._stream}: no answer to a direct get") from None
                batch, replies[:] = list(replies), []
                done = loop.create_future()
                end = batch.pop().headers or {}
                status = end.get("Status")
                if status == "404":  # nothing (more) on this subject from `start`
                    return
                if status == "503":
                    raise NoDirectGet(f"{self._stream}: no stream answers direct gets")
                if status != "204":  # 204: the end of this batch
                    reason = end.get("Description", "")
                    raise ReadFailed(f"{self._stream}: direct get answered {status} {reason}")
                for reply in batch:
                    headers = reply.headers or {}
                    message = StoredMessage(
                        self._stream,
                        int(headers["Nats-Sequence"]),
                        headers["Nats-Subject"],
                        reply.data,
                        {k: v for k, v in headers.items() if k not in _DIRECT_HEADERS},
                    )
                    if stop is not None and message.sequence > stop:
                        return
                    start = message.sequence + 1
                    yield message
                if int(end.get("Nats-Num-Pending", "0")) == 0:
                    return
        except NatsError as exc:
            raise ReadFailed(f"{self._stream}: {type(exc).__name__}") from None
        finally:
            routes.release(inbox)

    async def merged(self, subjects: Iterable[str], *, start: int = 1) -> list[StoredMessage]:
        """Every message on any of `subjects`, in stream order (a batch request has one
        filter: one read per subject, merged by sequence)."""
        reads = [[m async for m in self.messages(s, start=start)] for s in dict.fromkeys(subjects)]
        merged: list[StoredMessage] = []
        seen: set[int] = set()  # overlapping filters find a message twice
        for message in heapq.merge(*reads, key=lambda m: m.sequence):
            if message.sequence not in seen:
                seen.add(message.sequence)
                merged.append(message)
        return merged

    async def last_sequence(self) -> int:
        """The stream's last sequence now (0 if it is empty)."""
        try:
            info = await self._nc.jetstream().stream_info(self._stream)
        except NatsError as exc:
            raise ReadFailed(f"{self._stream}: {type(exc).__name__}") from None
        return info.state.last_seq if info.state.messages else 0


async def replay_batches(
    nc: Client,
    stream: str,
    subject: str = ">",
    *,
    start: int = 1,
    timeout: float = TIMEOUT_SECONDS,
) -> AsyncIterator[list[tuple[int, bytes]]]:
    """Every message of `stream` on `subject` from sequence `start` to the last stored when
    called, as runs of (stream sequence, data) in order, by an ordered push consumer: for the
    operators' whole-stream replays (`nrm audit replay`, `nrm stats`). The server pushes with
    flow control, so no request waits on a round trip; one resumption of the reader per run,
    no `StoredMessage` per message (docs/PERFORMANCE.md, items 14 and 16). The services keep
    direct get: their NATS users may not create consumers on the hub's streams."""
    async for run in _replay_runs(nc, stream, subject, start, timeout):
        yield [(sequence, msg.data) for msg, sequence in run]


async def replay_messages(
    nc: Client,
    stream: str,
    subject: str = ">",
    *,
    timeout: float = TIMEOUT_SECONDS,
) -> AsyncIterator[StoredMessage]:
    """Every message of `stream` on `subject`, subjects and headers too, to the last stored
    when called, by the same ordered consumer as `replay_batches`: for reads of a small
    stream whole, such as a KV bucket's (services/runtime/keyvalue_jetstream.py)."""
    async for run in _replay_runs(nc, stream, subject, 1, timeout):
        for msg, sequence in run:
            yield StoredMessage(stream, sequence, msg.subject, msg.data, dict(msg.headers or {}))


# Where the stream sequence and the count still pending sit in a JetStream delivery's reply
# subject: `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>`
# (9 tokens), or with `<domain>.<account hash>` after `ACK` and a token at the end (12).
_V1_TOKENS = 9
_V1_SEQUENCE, _V1_PENDING = 5, 8
_V2_SEQUENCE, _V2_PENDING = Msg.Ack.StreamSeq, Msg.Ack.NumPending


def delivery_position(reply: str) -> tuple[int, int]:
    """(stream sequence, messages pending after it) of a JetStream delivery, read from its
    reply subject as nats-py's `Msg.metadata` reads it, without building the metadata (a
    replay reads tens of thousands: the metadata object cost ~4 us each)."""
    tokens = reply.split(".")
    if len(tokens) == _V1_TOKENS:
        return int(tokens[_V1_SEQUENCE]), int(tokens[_V1_PENDING])
    return int(tokens[_V2_SEQUENCE]), int(tokens[_V2_PENDING])


async def _replay_runs(
    nc: Client, stream: str, subject: str, start: int, timeout: float
) -> AsyncIterator[list[tuple[Msg, int]]]:
    """The ordered consumer behind `replay_batches`: runs of
    (message, stream sequence), from `start` to the stream's last sequence when called."""
    js = nc.jetstream()
    try:
        info = await js.stream_info(stream)
    except NotFoundError:
        raise NoSuchStream(f"{stream}: no such stream") from None
    except NatsError as exc:
        raise ReadFailed(f"{stream}: {type(exc).__name__}") from None
    last = info.state.last_seq
    start = max(start, 1)
    if not info.state.messages or start > last:
        return
    # (message, stream sequence): the reply subject is parsed once, here. `ended`: the
    # message at `last`, or one with nothing pending after it on `subject`, has arrived.
    taken: list[tuple[Msg, int]] = []
    arrived = asyncio.Event()
    ended = False

    async def on_message(msg: Msg) -> None:
        nonlocal ended
        sequence, pending = delivery_position(msg.reply)
        taken.append((msg, sequence))
        ended = ended or sequence >= last or not pending
        # Woken once per run of messages, not per message; and at the end.
        if len(taken) >= BATCH or ended:
            arrived.set()

    config = ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE if start > 1 else DeliverPolicy.ALL,
        opt_start_seq=start if start > 1 else None,
    )
    try:
        sub = await js.subscribe(
            subject, stream=stream, cb=on_message, ordered_consumer=True, config=config
        )
    except NatsError as exc:
        raise ReadFailed(f"{stream}: {type(exc).__name__}") from None
    consumer_name = None
    try:
        consumer = await sub.consumer_info()
        consumer_name = consumer.name
        delivered = consumer.delivered.consumer_seq if consumer.delivered else 0
        if not consumer.num_pending and not delivered:
            return  # nothing on `subject` from `start`: no message will come
        while True:
            if not taken:
                try:
                    await asyncio.wait_for(arrived.wait(), timeout)
                except TimeoutError:
                    if not taken:
                        raise ReadFailed(f"{stream}: the replay stalled") from None
            arrived.clear()
            last_run = ended  # read before taking: what arrives after belongs to the next run
            run, taken[:] = list(taken), []
            if run[-1][1] > last:  # stored after the replay began
                run = [item for item in run if item[1] <= last]
                last_run = True
            if run:
                yield run
            if last_run:
                return
    except NatsError as exc:
        raise ReadFailed(f"{stream}: {type(exc).__name__}") from None
    finally:
        with contextlib.suppress(NatsError, TimeoutError, OSError):
            await sub.unsubscribe()
            # Gone now, not when the server finds it idle: a bucket listed often (a KV
            # `keys()` per closed case) would pile up consumers until the server refused more.
            if consumer_name is not None:
                await js.delete_consumer(stream, consumer_name)


async def read_feed(
    nc: Client,
    agency_id: str,
    timeout: float = 5.0,
    *,
    after: int = 0,
    limit: int | None = None,
) -> list[StoredMessage]:
    """The agency's feed after stream sequence `after` (all of it by default), oldest first,
    up to `limit` messages, read through the one consumer an agency may create (named after
    it, filtered on its feed: agencies may not use direct get; see the module doc). The
    consumer is deleted afterwards; callers serialise reads of one agency's feed."""
    js = nc.jetstream()
    config = ConsumerConfig(
        name=agency_id,
        filter_subject=feed_filter(agency_id),
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE if after else DeliverPolicy.ALL,
        opt_start_seq=after + 1 if after else None,
        ack_policy=AckPolicy.NONE,
        inactive_threshold=30.0,
    )
    try:
        info = await js.add_consumer(FEEDS_STREAM, config)
    except NotFoundError:
        raise
    except APIError:
        # A read cut short (a reader that went away mid-read) left the consumer with another
        # start sequence, which the server refuses to update: replace it, once.
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(FEEDS_STREAM, agency_id)
        info = await js.add_consumer(FEEDS_STREAM, config)
    found: list[StoredMessage] = []
    try:
        pending = info.num_pending or 0
        wanted = pending if limit is None else min(limit, pending)
        if wanted == 0:
            return found
        sub = await js.pull_subscribe_bind(agency_id, FEEDS_STREAM)
        try:
            while len(found) < wanted:
                for msg in await sub.fetch(min(wanted - len(found), BATCH), timeout=timeout):
                    found.append(
                        StoredMessage(
                            FEEDS_STREAM,
                            msg.metadata.sequence.stream,
                            msg.subject,
                            msg.data,
                            dict(msg.headers or {}),
                        )
                    )
        finally:
            await sub.unsubscribe()
    finally:
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(FEEDS_STREAM, agency_id)
    return found
