"""Streams, consumer kinds and KV buckets, created by one bootstrap. Which durables exist,
and whose they are, is the service table's (runtime/service_table.py).

Services bind to what this module creates (FastStream subscribers use `declare=False`), so
a service started before bootstrap fails loudly instead of creating a stream of its own
with the wrong settings.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, replace

from nats.aio.client import Client
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import APIError, BadRequestError, NotFoundError

from contracts.subjects import (
    AUDIT_PREFIX,
    AUDIT_STREAM,
    CHECKPOINT_SUBJECT,
    CHECKPOINTS_STREAM,
    DLQ_PREFIX,
    DLQ_STREAM,
    EVENT_PREFIX,
    EVENTS_STREAM,
    FEED_PREFIX,
    FEEDS_STREAM,
    REJECTIONS_PREFIX,
    REJECTIONS_STREAM,
)
from services.runtime.settings import Settings

CASE_KEYS_BUCKET = "nrm-case-keys"
REFERRAL_DEADLINES_BUCKET = "nrm-referral-deadlines"
BLIND_INDEX_BUCKET = "nrm-blind-index"
COMMAND_IDS_BUCKET = "nrm-command-ids"
FOLLOWUPS_DUE_BUCKET = "nrm-followups-due"
# Every bucket bootstrap creates; a service's table entry names those it uses.
BUCKETS: dict[str, str] = {
    CASE_KEYS_BUCKET: "Per-case data keys, wrapped under the key-encryption key",
    REFERRAL_DEADLINES_BUCKET: "Open referrals and when they must be answered",
    BLIND_INDEX_BUCKET: "Duplicate detection: keyed blind index of name + date of birth",
    COMMAND_IDS_BUCKET: "The fingerprint of each command id's first body",
    FOLLOWUPS_DUE_BUCKET: "Follow-ups of open cases not yet recorded, and their due dates",
}
# How long a delivered, unacknowledged event waits before it is delivered again. After a
# crash (kill -9 of a service or of the whole hub) this is how long its in-flight events are
# held back; handlers are idempotent and take milliseconds (p99 under 2 s at saturation,
# docs/PERFORMANCE.md), so a short wait only risks a harmless second delivery. Bootstrap
# updates the durables of a running hub to it.
ACK_WAIT_SECONDS = 10.0
# Cross-border (docs/CROSSBORDER.md): packages waiting to be sent, per destination, and
# packages received from partner hubs, deduplicated by package id for a week.
XB_OUTBOX_STREAM = "NRM_XB_OUT"
XB_INBOX_STREAM = "NRM_XB_IN"
XB_OUTBOX_PREFIX = "nrm.xb.outbox"
XB_INBOX_PREFIX = "nrm.xb.inbox"
XB_DEDUP_SECONDS = 7 * 24 * 3600.0
FETCH_BATCH = 64  # messages the consumer loop takes at once, at most


@dataclass(frozen=True)
class ConsumerSpec:
    """A durable pull consumer on the event stream, dead-lettered after NRM_MAX_DELIVER.
    Which service runs it is the service table's (runtime/service_table.py)."""

    durable: str
    filter_subjects: tuple[str, ...]
    description: str
    max_ack_pending: int = 1000  # 1: strictly one at a time, in stream order, retries included
    # Not the server's: how the hub takes a fetched batch. True: the events of different
    # aggregates side by side, each aggregate's in stream order (a consumer whose effect is
    # per aggregate: the feed's copies, the deadline projection's entries).
    aggregates_side_by_side: bool = False
    # Not the server's either: side work follows a step of a case without leading to the
    # next one (the agency feed's copies, a projection, the cross-border outbox). It takes an
    # event no sooner than SIDE_WORK_DELAY_SECONDS after the event was stored, so that the
    # decisions the same event triggers in the same process go first (messaging.consume).
    side_work: bool = False
    # Durables this one replaced, whose work it now does too: bootstrap moves it back to
    # where the earliest of them stood and then deletes them (`take_over`).
    takes_over: tuple[str, ...] = ()

    @property
    def stream(self) -> str:
        return EVENTS_STREAM

    @property
    def fetch_batch(self) -> int:
        """How many the consumer loop takes at once: never more than the server may hand
        out unacknowledged (max_ack_pending)."""
        return min(FETCH_BATCH, self.max_ack_pending)

    def config(self, settings: Settings) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=self.durable,
            name=self.durable,
            description=self.description,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ACK_WAIT_SECONDS,
            max_deliver=settings.max_deliver,
            max_ack_pending=self.max_ack_pending,
            filter_subjects=list(self.filter_subjects),
        )


@dataclass(frozen=True)
class AuditConsumerSpec:
    """A durable pull consumer of the audit service. It never gives up on a message (no
    max_deliver): a message it dropped would be a gap in the audit log."""

    durable: str
    stream: str
    filter_subject: str
    description: str

    def config(self, settings: Settings) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=self.durable,
            name=self.durable,
            description=self.description,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ACK_WAIT_SECONDS,
            max_deliver=-1,
            max_ack_pending=1000,
            filter_subject=self.filter_subject,
        )


def max_deliveries_advisory(stream: str = EVENTS_STREAM) -> str:
    return f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.*"


# How long a stream remembers a message id (`Nats-Msg-Id`): a second message with the same id
# within it is not stored. The audit writer relies on it for recent events.
DUPLICATE_WINDOW_SECONDS = 120.0


def _record(name: str, description: str, subjects: list[str], replicas: int) -> StreamConfig:
    """A stream of the hub's record: on disk, kept, never deleted or purged. Read by batched
    direct get (services/runtime/stored_messages.py), not by a consumer per read."""
    return StreamConfig(
        name=name,
        description=description,
        subjects=subjects,
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
        deny_delete=True,
        deny_purge=True,
        allow_direct=True,
        num_replicas=replicas,
    )


def stream_configs(replicas: int = 1) -> list[StreamConfig]:
    return [
        replace(
            _record(
                EVENTS_STREAM,
                "All events of this country hub, one total order",
                [f"{EVENT_PREFIX}.>"],
                replicas,
            ),
            allow_atomic=True,  # multi-event decisions are one atomic batch
        ),
        _record(AUDIT_STREAM, "Append-only audit entries", [f"{AUDIT_PREFIX}.>"], replicas),
        _record(
            FEEDS_STREAM,
            "Referral events copied to the agency each is addressed to",
            [f"{FEED_PREFIX}.>"],
            replicas,
        ),
        _record(
            REJECTIONS_STREAM,
            "Rejected commands (names, fields, codes; never values), for the audit",
            [f"{REJECTIONS_PREFIX}.>"],
            replicas,
        ),
        _record(
            CHECKPOINTS_STREAM,
            "Signed audit checkpoints (C2SP signed notes)",
            [CHECKPOINT_SUBJECT],
            replicas,
        ),
        StreamConfig(
            name=DLQ_STREAM,
            description="Dead letters: events a consumer could not apply, with the reason",
            subjects=[f"{DLQ_PREFIX}.>", max_deliveries_advisory()],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            num_replicas=replicas,
        ),
        StreamConfig(
            name=XB_OUTBOX_STREAM,
            description="Cross-border packages to send, per destination, in order",
            subjects=[f"{XB_OUTBOX_PREFIX}.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            duplicate_window=XB_DEDUP_SECONDS,
            num_replicas=replicas,
        ),
        StreamConfig(
            name=XB_INBOX_STREAM,
            description="Cross-border packages received from partner hubs, once each",
            subjects=[f"{XB_INBOX_PREFIX}.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            duplicate_window=XB_DEDUP_SECONDS,
            num_replicas=replicas,
        ),
    ]


XB_ACK_WAIT_SECONDS = 30.0
XB_INGRESS_DURABLE = "xb-ingress"


def xb_relay_durable(peer: str) -> str:
    return f"xb-relay-{peer}"


def xb_consumer_configs(peers: list[str]) -> list[tuple[str, ConsumerConfig]]:
    """Cross-border consumers (docs/CROSSBORDER.md), one package in flight each: a relay per
    peer on the outbox, and ingress on the inbox. Created here, like every durable, so that a
    service never needs the right to create one."""
    specs = [
        (XB_OUTBOX_STREAM, xb_relay_durable(p), f"{XB_OUTBOX_PREFIX}.{p}.>", f"sends to {p}")
        for p in peers
    ]
    specs.append(
        (XB_INBOX_STREAM, XB_INGRESS_DURABLE, f"{XB_INBOX_PREFIX}.>", "applies received packages")
    )
    return [
        (
            stream,
            ConsumerConfig(
                durable_name=durable,
                name=durable,
                description=description,
                deliver_policy=DeliverPolicy.ALL,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=XB_ACK_WAIT_SECONDS,
                max_ack_pending=1,
                filter_subject=subject,
            ),
        )
        for stream, durable, subject, description in specs
    ]


@dataclass(frozen=True)
class Takeover:
    """`durable` on `stream` now does the work the `retired` durables did."""

    stream: str
    durable: str
    retired: tuple[str, ...]


async def take_over(nc: Client, takeover: Takeover) -> None:
    """Retire durables whose work another one took on, skipping no event for that work: the
    durable is reset to the first event the least advanced of them all had not acknowledged
    (JetStream's CONSUMER.RESET), then the retired ones are deleted. What it had done
    already past that point is done again: its effects are idempotent (feed copies carry
    their event's id, projections write in order). Nothing to do when none is left. A crash
    in between is safe: the next bootstrap finds the retired durables still there and
    resets to the same point or an earlier one."""
    js = nc.jetstream()
    floors: dict[str, int] = {}
    for name in (takeover.durable, *takeover.retired):
        try:
            info = await js.consumer_info(takeover.stream, name)
        except NotFoundError:
            continue
        floors[name] = info.ack_floor.stream_seq if info.ack_floor else 0
    left = [name for name in takeover.retired if name in floors]
    if not left:
        return
    first_not_done = min(floors.values()) + 1
    # Bootstrap created it just before; if it is gone since, it is created again from the
    # stream's first event, which skips nothing either.
    if floors.get(takeover.durable, 0) + 1 > first_not_done:
        # nats-py has no call for it; nats-server has it (2.15, as pinned).
        reset = f"$JS.API.CONSUMER.RESET.{takeover.stream}.{takeover.durable}"
        reply = json.loads(
            (await nc.request(reset, json.dumps({"seq": first_not_done}).encode())).data
        )
        if "error" in reply:
            APIError.from_error(reply["error"])  # raises
    for name in left:
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(takeover.stream, name)


async def bootstrap(
    nc: Client,
    consumers: Iterable[tuple[str, ConsumerConfig]],
    replicas: int = 1,
    takeovers: Iterable[Takeover] = (),
) -> None:
    """Create or update every stream, the given consumers (each with its stream: the service
    table's, runtime/service_table.py `consumer_configs`) and every bucket, and retire the
    durables the `takeovers` replaced. Safe to run again."""
    js = nc.jetstream()
    for config in stream_configs(replicas):
        try:
            await js.add_stream(config)
        except BadRequestError:
            await js.update_stream(config)
    for stream, consumer_config in consumers:
        await js.add_consumer(stream, consumer_config)
    for takeover in takeovers:
        await take_over(nc, takeover)
    for bucket, description in BUCKETS.items():
        try:
            await js.key_value(bucket)
        except (NotFoundError, BadRequestError):
            await js.create_key_value(
                KeyValueConfig(
                    bucket=bucket,
                    description=description,
                    history=1,
                    storage=StorageType.FILE,
                    replicas=replicas,
                )
            )
