"""audit service: one Merkle-tree leaf per stored event and per rejected command, written to
NRM_AUDIT (deny delete, deny purge) without gaps, and signed checkpoints in NRM_CHECKPOINTS.

Leaf i is stream sequence i + 1: every append carries `Nats-Expected-Last-Sequence` = the size
the writer believes, so two instances (or a restarted one) can never fork or skip: the loser
catches up from the stream and tries again. A message already audited (crash between the
append and the ack, then redelivery) is found by its leaf subject nrm.audit.<stream>.<seq>
and not written twice. A fetched batch's leaves are published together (`write_ahead`), each
after the first also expecting the leaf before it by message id, so none of them can land
after another writer's append.

State is O(log n): the compact range. On start it comes from the latest checkpoint (its
compact range is stored beside it and must hash to the signed root) plus the leaves after it.
A checkpoint is published only if the checkpoint stream is still where this instance last
saw it, so every checkpoint extends the one before it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from faststream.nats import NatsMessage, NatsResponse
from nats.errors import Error as NatsError
from nats.js.errors import APIError, NotFoundError

from contracts.envelope import source_uri
from contracts.operations import AuditEntry
from contracts.subjects import (
    AUDIT_STREAM,
    CHECKPOINT_REQUEST,
    CHECKPOINT_SUBJECT,
    CHECKPOINTS_STREAM,
    EVENTS_STREAM,
    REJECTIONS_STREAM,
    audit_subject,
)
from services.agencies.registry import AgencyRegistry
from services.audit.checkpoint import Checkpoint, Signer, load_signer
from services.audit.domain import entry_for_event, entry_for_rejection, leaf_id, parse_leaf
from services.audit.log import LogState
from services.audit.merkle import CompactRange, leaf_hash
from services.audit.streams import read_stream
from services.runtime.case_keys import KeyCustodyError
from services.runtime.health import (
    AUDIT_CHECKPOINT_SIGNED,
    AUDIT_CHECKPOINT_SIZE,
    AUDIT_LEAVES,
)
from services.runtime.logging import get_logger
from services.runtime.loops import keep_running, stop_if_cancelled
from services.runtime.messaging import Pull, ServiceHost, Taken, consume
from services.runtime.service_table import audit_consumers
from services.runtime.stored_messages import stored_event_of
from services.runtime.topology import DUPLICATE_WINDOW_SECONDS, FETCH_BATCH

SERVICE = "audit"
COMPACT_RANGE_HEADER = "Nrm-Compact-Range"
VERIFIER_KEY_HEADER = "Nrm-Verifier-Key"
_WRONG_LAST_SEQUENCE = 10071
# Messages stored this recently are deduplicated by the stream itself (see `record`): half
# the window, so that clocks apart by less than a minute change nothing.
_RECENT = dt.timedelta(seconds=DUPLICATE_WINDOW_SECONDS / 2)
log = get_logger("nrm.audit")

Builder = Callable[[int, str, int, bytes, AgencyRegistry], AuditEntry]
BUILDERS: dict[str, Builder] = {
    EVENTS_STREAM: functools.partial(entry_for_event, read=stored_event_of),
    REJECTIONS_STREAM: entry_for_rejection,
}


def origin_for(country: str) -> str:
    return f"nrm-hub.{country}/audit"


class AuditIntegrityError(RuntimeError):
    """The stored log or its latest checkpoint is not what this service wrote: it stops
    rather than sign over it."""


class AuditLogWriter:
    def __init__(self, host: ServiceHost) -> None:
        self.host = host
        self.runtime = host.runtime
        settings = self.runtime.settings
        self.source = source_uri(settings.country, SERVICE)
        self.origin = origin_for(settings.country)
        self.state = LogState()
        self.checkpoint_seq = 0  # the checkpoint stream's last sequence this state agrees with
        self.lock = asyncio.Lock()
        # (stream, sequence) of leaves `write_ahead` stored that `record` has yet to be asked
        # for: at most one fetched batch of each consumer.
        self.written_ahead: set[tuple[str, int]] = set()
        self.signer: Signer | None = None
        try:
            self.signer = load_signer(settings.audit_signing_key, self.origin)
        except ValueError as exc:
            # Never run degraded: an audit log nobody can verify is not an audit log.
            raise KeyCustodyError(f"NRM_AUDIT_SIGNING_KEY_FILE: {exc}") from None

    # --- state ----------------------------------------------------------------------------

    async def load(self) -> None:
        """Rebuild the state from the latest checkpoint and the leaves after it."""
        js = self.runtime.jetstream
        state, seq = LogState(), 0
        try:
            last = await js.get_last_msg(CHECKPOINTS_STREAM, CHECKPOINT_SUBJECT)
        except NotFoundError:
            last = None
        if last is not None:
            note = last.data or b""
            checkpoint = Checkpoint.parse(note.decode().split("\n\n")[0] + "\n")
            stored = (last.headers or {}).get(COMPACT_RANGE_HEADER, "")
            nodes = [bytes.fromhex(h) for h in stored.split(",") if h]
            tree = CompactRange(checkpoint.size, nodes)
            if tree.root() != checkpoint.root:
                raise AuditIntegrityError("the stored compact range does not match the signed root")
            previous = None
            if checkpoint.size:
                leaf = await js.get_msg(AUDIT_STREAM, checkpoint.size)
                previous = leaf_hash(leaf.data or b"")
            state, seq = LogState(tree, previous), last.seq or 0
        await self._catch_up(state)
        self.state, self.checkpoint_seq = state, seq

    async def _catch_up(self, state: LogState | None = None) -> None:
        state = state or self.state
        async for message in read_stream(self.runtime.connection, AUDIT_STREAM, state.size + 1):
            if parse_leaf(message.data).index != message.sequence - 1:
                raise AuditIntegrityError(f"leaf at sequence {message.sequence} has another index")
            state.appended(message.data)

    # --- leaves -----------------------------------------------------------------------------

    async def record(
        self, stream: str, sequence: int, raw: bytes, stored_at: dt.datetime | None = None
    ) -> None:
        """Write the one leaf for a stored message, unless it already has one.

        Whether it has one is asked of the audit stream (a round trip) only for a message
        stored long enough ago (or at an unknown time): a leaf for a message stored within
        half the duplicate window was written within it too, so the stream refuses a second
        one by its message id, and the writer answers from that."""
        js = self.runtime.jetstream
        subject = audit_subject(stream, sequence)
        recent = _recent(stored_at, self.runtime.clock())
        async with self.lock:
            if (stream, sequence) in self.written_ahead:
                self.written_ahead.discard((stream, sequence))
                return
            ask = not recent
            while True:
                if ask and await self._audited(subject):
                    return
                ask = True  # after a conflict: another writer may have written it
                state = self.state
                leaf, headers = self._next_leaf(state, stream, sequence, raw)
                try:
                    ack = await js.publish(subject, leaf, stream=AUDIT_STREAM, headers=headers)
                except APIError as exc:
                    if exc.err_code != _WRONG_LAST_SEQUENCE:
                        raise
                    await self._catch_up()  # another writer appended first
                    continue
                if ack.duplicate:  # a leaf with this id is stored: recorded before
                    await self._catch_up()
                    return
                if ack.seq != state.size + 1:
                    await self._catch_up()
                    continue
                state.appended(leaf)
                AUDIT_LEAVES.set(state.size)
                return

    async def write_ahead(self, stream: str, batch: Sequence[Taken]) -> None:
        """The leaves of a fetched batch's first recently stored messages, published together
        and their acknowledgements awaited together: one round trip for the batch instead of
        one per leaf (docs/PERFORMANCE.md item 24). `record` then finds them written.

        Each leaf after the first also carries `Nats-Expected-Last-Msg-Id`, the id of the leaf
        before it: the sequence alone would let a leaf whose predecessor was refused be stored
        after another writer's append, at an index it does not name. So a leaf refused,
        found a duplicate or overtaken stops every later one, the state catches up from the
        stream, and `record` writes the rest one at a time, as without this."""
        now = self.runtime.clock()
        recent: list[Taken] = []
        for taken in batch:  # a prefix, so that leaves keep the order messages are taken in
            if not _recent(taken.stored_at, now):
                break
            recent.append(taken)
        if len(recent) < 2:
            return
        js = self.runtime.jetstream
        async with self.lock:
            state = self.state
            planned = LogState(
                CompactRange(state.size, list(state.tree.nodes)), state.last_leaf_hash
            )
            # Every leaf built before any is sent: one that cannot be built sends nothing.
            leaves: list[tuple[int, bytes, dict[str, str]]] = []
            previous: str | None = None
            for taken in recent:
                sequence = taken.stream_sequence
                leaf, headers = self._next_leaf(planned, stream, sequence, taken.data)
                if previous is not None:
                    headers["Nats-Expected-Last-Msg-Id"] = previous
                leaves.append((sequence, leaf, headers))
                planned.appended(leaf)
                previous = headers["Nats-Msg-Id"]
            acks = await asyncio.gather(
                *(
                    js.publish(audit_subject(stream, seq), leaf, stream=AUDIT_STREAM, headers=hdrs)
                    for seq, leaf, hdrs in leaves
                ),
                return_exceptions=True,
            )
            for (sequence, leaf, _), ack in zip(leaves, acks, strict=True):
                if isinstance(ack, BaseException) or ack.duplicate or ack.seq != state.size + 1:
                    stop_if_cancelled()
                    await self._catch_up()  # whatever was stored, and nothing else
                    break
                state.appended(leaf)
                self.written_ahead.add((stream, sequence))
            AUDIT_LEAVES.set(state.size)

    def _next_leaf(
        self, state: LogState, stream: str, sequence: int, raw: bytes
    ) -> tuple[bytes, dict[str, str]]:
        """The leaf that would follow `state` for a stored message, and the headers that
        store it only there and only once."""
        entry = BUILDERS[stream](state.size, stream, sequence, raw, self.runtime.registry)
        leaf = state.leaf_for(entry, self.source, self.runtime.clock())
        headers = {
            "Nats-Expected-Last-Sequence": str(state.size),
            "Nats-Msg-Id": leaf_id(stream, sequence),
        }
        return leaf, headers

    async def _audited(self, subject: str) -> bool:
        try:
            await self.runtime.jetstream.get_last_msg(AUDIT_STREAM, subject)
        except NotFoundError:
            return False
        return True

    # --- checkpoints ----------------------------------------------------------------------

    async def sign_checkpoint(self) -> bytes | None:
        """Sign the current tree unless the latest checkpoint already has this size; the
        latest note either way (None without a signing key)."""
        if self.signer is None:
            return None
        js = self.runtime.jetstream
        async with self.lock:
            for _ in range(5):
                await self._catch_up()
                try:
                    last = await js.get_last_msg(CHECKPOINTS_STREAM, CHECKPOINT_SUBJECT)
                except NotFoundError:
                    last = None
                if last is not None and last.seq != self.checkpoint_seq:
                    await self.load()  # another instance signed: continue from its checkpoint
                    continue
                if last is not None and _size_of(last.data or b"") == self.state.size:
                    AUDIT_CHECKPOINT_SIZE.set(self.state.size)
                    return last.data
                note = self.state.signed_checkpoint(self.signer)
                headers = {
                    "Nats-Expected-Last-Sequence": str(self.checkpoint_seq),
                    COMPACT_RANGE_HEADER: ",".join(n.hex() for n in self.state.tree.nodes),
                    VERIFIER_KEY_HEADER: self.signer.verifier.encode(),
                }
                try:
                    ack = await js.publish(
                        CHECKPOINT_SUBJECT, note, stream=CHECKPOINTS_STREAM, headers=headers
                    )
                except APIError as exc:
                    if exc.err_code != _WRONG_LAST_SEQUENCE:
                        raise
                    continue
                self.checkpoint_seq = ack.seq
                AUDIT_CHECKPOINT_SIZE.set(self.state.size)
                AUDIT_CHECKPOINT_SIGNED.set_to_current_time()
                log.info("audit.checkpoint", size=self.state.size)
                return note
        raise AuditIntegrityError(
            "could not publish a checkpoint: the checkpoint stream kept moving"
        )

    # --- loops ----------------------------------------------------------------------------

    async def run_consumers(self) -> None:
        """Audit every stored event and rejection notice, forever."""
        js = self.runtime.jetstream
        delay = 0.2
        while True:
            try:
                await self.load()
                for spec in audit_consumers():
                    await js.consumer_info(spec.stream, spec.durable)  # bootstrapped yet?
                break
            except AuditIntegrityError as exc:  # loud, and nothing is written over it
                stop_if_cancelled()
                log.error("audit.integrity", error=str(exc), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)
            except (NotFoundError, NatsError, TimeoutError) as exc:
                stop_if_cancelled()  # a stop during start-up, not an outage
                log.warning("audit.waiting", error=type(exc).__name__, retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        # One loop per consumer: taking turns, an idle one (rejections, mostly) held the
        # events back for its whole fetch timeout each round (~90 events/s at most;
        # docs/PERFORMANCE.md). `record` takes the lock, so leaves stay one at a time.
        # Each kept running on its own (one that ends is restarted, the other goes on); a
        # stop cancels this task, and with it both.
        loops = []
        for spec in audit_consumers():
            # Never dead-lettered (no max_deliver): a dropped message would be a gap.
            pull = Pull(spec.stream, spec.durable, FETCH_BATCH)
            take = functools.partial(self._take, spec.stream)
            ahead = functools.partial(self.write_ahead, spec.stream)
            run = functools.partial(consume, self.runtime, SERVICE, pull, take, ahead)
            loops.append(keep_running(self.runtime.lifetime, SERVICE, spec.durable, run))
        await asyncio.gather(*loops)

    async def _take(self, stream: str, message: Taken) -> None:
        await self.record(stream, message.stream_sequence, message.data, message.stored_at)

    async def run_checkpoints(self) -> None:
        interval = self.runtime.settings.checkpoint_interval_seconds
        while True:
            await asyncio.sleep(interval)
            stop_if_cancelled()
            try:
                await self.sign_checkpoint()
            except Exception as exc:  # keep signing later; the leaves are safe meanwhile
                log.error("audit.checkpoint_failed", error=f"{type(exc).__name__}: {exc}")

    def serve_checkpoint_requests(self) -> None:
        """`nrm audit export` asks for a checkpoint over everything written so far."""

        async def on_request(msg: NatsMessage) -> NatsResponse:
            note = await self.sign_checkpoint()
            return NatsResponse(note or b"")

        self.host.broker.subscriber(
            CHECKPOINT_REQUEST, queue="audit-checkpoint", title="audit:checkpoint"
        )(on_request)


def _recent(stored_at: dt.datetime | None, now: dt.datetime) -> bool:
    """Stored within half the duplicate window: a leaf for it, if any, was written within
    the window too, so the audit stream itself refuses a second one by its message id."""
    return stored_at is not None and now - stored_at < _RECENT


def _size_of(note: bytes) -> int:
    return Checkpoint.parse(note.decode().split("\n\n")[0] + "\n").size


def register(host: ServiceHost) -> list[Callable[[], Coroutine[Any, Any, None]]]:
    """Register the audit service; its background loops, for the caller to start."""
    writer = AuditLogWriter(host)
    writer.serve_checkpoint_requests()
    return [writer.run_consumers, writer.run_checkpoints]
