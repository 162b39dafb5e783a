"""Reading the whole event stream into the statistics projection (the only I/O here).

An ephemeral pull consumer on `nrm.evt.>` with no acks reads NRM_EVENTS from the first
event in stream order; each event is folded with its stream sequence. The consumer lives in
memory and is deleted afterwards."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from pydantic import ValidationError

from contracts.envelope import Envelope
from contracts.subjects import EVENT_PREFIX, EVENTS_STREAM
from services.statistics.projection import StatsState, apply

_BATCH = 1024


@dataclass(frozen=True)
class Replay:
    state: StatsState
    seconds: float

    @property
    def events_per_second(self) -> float:
        return self.state.events_applied / self.seconds if self.seconds > 0 else 0.0


async def replay(nc: Client, state: StatsState | None = None) -> Replay:
    """Fold every event of NRM_EVENTS after `state.last_sequence` into `state`."""
    state = state if state is not None else StatsState()
    js = nc.jetstream()
    started = time.perf_counter()
    config = ConsumerConfig(
        name=f"stats-{uuid.uuid4().hex}",
        filter_subject=f"{EVENT_PREFIX}.>",
        ack_policy=AckPolicy.NONE,
        inactive_threshold=60.0,
        mem_storage=True,
    )
    if state.last_sequence:
        config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
        config.opt_start_seq = state.last_sequence + 1
    else:
        config.deliver_policy = DeliverPolicy.ALL
    info = await js.add_consumer(EVENTS_STREAM, config)
    assert info.name is not None
    try:
        remaining = info.num_pending or 0
        if remaining:
            sub = await js.pull_subscribe_bind(consumer=info.name, stream=EVENTS_STREAM)
            try:
                while remaining > 0:
                    for msg in await sub.fetch(min(remaining, _BATCH), timeout=10.0):
                        remaining = msg.metadata.num_pending
                        try:
                            envelope = Envelope.from_bytes(msg.data)
                        except ValidationError:  # not an event (a poison message): skip it
                            state.ignored["unreadable message"] += 1
                            continue
                        apply(state, envelope, msg.metadata.sequence.stream)
            finally:
                await sub.unsubscribe()
    finally:
        await js.delete_consumer(EVENTS_STREAM, info.name)
    return Replay(state, time.perf_counter() - started)
