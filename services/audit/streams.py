"""Reading a whole JetStream stream in order, one batch at a time (never all in memory): what
the audit service catches up from and what the auditor's commands export and replay."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

BATCH = 256


@dataclass(frozen=True)
class StoredMessage:
    sequence: int
    subject: str
    data: bytes
    headers: dict[str, str]


async def read_stream(
    js: JetStreamContext, stream: str, start: int = 1, subject: str | None = None
) -> AsyncIterator[StoredMessage]:
    """Every message from sequence `start` to the stream's end as it was when called."""
    info = await js.stream_info(stream)
    last = info.state.last_seq
    if start > last or info.state.messages == 0:
        return
    config = ConsumerConfig(
        name=f"audit-read-{uuid.uuid4().hex}",
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=start,
        ack_policy=AckPolicy.NONE,
        inactive_threshold=30.0,
        mem_storage=True,
        filter_subject=subject,
    )
    consumer = await js.add_consumer(stream, config)
    assert consumer.name is not None
    sub = await js.pull_subscribe_bind(consumer=consumer.name, stream=stream)
    try:
        remaining = consumer.num_pending or 0
        while remaining > 0:
            for msg in await sub.fetch(min(remaining, BATCH), timeout=5.0):
                seq = msg.metadata.sequence.stream
                if seq > last:
                    return
                yield StoredMessage(seq, msg.subject, msg.data, dict(msg.headers or {}))
                remaining = msg.metadata.num_pending
    finally:
        await sub.unsubscribe()
        await js.delete_consumer(stream, consumer.name)
