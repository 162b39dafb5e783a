"""Raw ceilings on nats-py, measured against the same nats-server as the hub run.

What the hub's figures are divided by: awaited and pipelined JetStream publishes, an
ordered-consumer replay, and a minimal four-stage relay (consume, validate, open three
sealed fields, re-seal them, publish, ack on the PubAck) written directly on nats-py with
publishes pipelined and their acks awaited together (DESIGN.md §4).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from dataclasses import dataclass, field

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, PubAck, StorageType, StreamConfig
from pydantic import BaseModel, ConfigDict

from contracts.sealed import SealedValue, open_sealed, seal

PUB_STREAM, PUB_SUBJECT = "BENCH_PUB", "bench.pub"
IN_STREAM, IN_SUBJECT = "BENCH_IN", "bench.in"
OUT_STREAM, OUT_SUBJECT = "BENCH_OUT", "bench.out"
RELAY_DURABLE = "bench-relay"
FIELDS = ("full_name", "phone", "narrative")
PAYLOAD = os.urandom(600)  # about the size of one hub event
PIPELINE_WINDOW = 256  # publishes in flight before their acks are awaited
FETCH = 128


class RelayEvent(BaseModel):
    """The relay's message: opaque ids, a timestamp and three sealed personal fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    case_id: str
    sent_at: float
    fields: dict[str, SealedValue]


@dataclass
class RawFigures:
    awaited_publish: float = 0.0  # msg/s
    pipelined_publish: float = 0.0  # msg/s
    ordered_replay: float = 0.0  # msg/s
    relay: float = 0.0  # events/s
    relay_paced_rate: float = 0.0
    relay_latencies_ms: list[float] = field(default_factory=list)
    # The relay with the hub's fan-out, in the hub's worker processes (fanout.py): events/s.
    fanout_relay: float = 0.0


async def add_stream(js: JetStreamContext, name: str, subject: str) -> None:
    """A file-storage stream of the bench's own on `subject.>`."""
    await js.add_stream(
        StreamConfig(name=name, subjects=[f"{subject}.>"], storage=StorageType.FILE)
    )


async def awaited_publish(js: JetStreamContext, count: int) -> float:
    started = time.perf_counter()
    for index in range(count):
        await js.publish(f"{PUB_SUBJECT}.{index % 64}", PAYLOAD)
    return count / (time.perf_counter() - started)


async def pipelined_publish(js: JetStreamContext, count: int) -> float:
    started = time.perf_counter()
    pending: list[asyncio.Future[PubAck]] = []
    for index in range(count):
        pending.append(await js.publish_async(f"{PUB_SUBJECT}.{index % 64}", PAYLOAD))
        if len(pending) >= PIPELINE_WINDOW:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)
    return count / (time.perf_counter() - started)


async def ordered_replay(js: JetStreamContext, stream: str, subject: str) -> tuple[int, float]:
    """Read a whole stream with an ordered push consumer, without parsing: (messages, msg/s)."""
    total = (await js.stream_info(stream)).state.messages
    done = asyncio.get_running_loop().create_future()
    seen = 0

    async def on_message(_msg: Msg) -> None:
        nonlocal seen
        seen += 1
        if seen == total and not done.done():
            done.set_result(None)

    started = time.perf_counter()
    sub = await js.subscribe(
        subject, cb=on_message, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
    )
    try:
        await asyncio.wait_for(done, 300)
    finally:
        await sub.unsubscribe()
    return total, total / (time.perf_counter() - started)


def relay_message(case_key: bytes, index: int, sent_at: float) -> bytes:
    case_id = str(uuid.uuid4())
    sealed = {f: seal(case_key, case_id, f, 1, f"bench {f} {index}") for f in FIELDS}
    return (
        RelayEvent(id=str(index), case_id=case_id, sent_at=sent_at, fields=sealed)
        .model_dump_json()
        .encode()
    )


class Relay:
    """consume -> validate -> open 3 fields -> re-seal -> publish (pipelined) -> ack on PubAck."""

    def __init__(self, js: JetStreamContext, case_key: bytes) -> None:
        self._js = js
        self._key = case_key
        self.relayed = 0

    def transform(self, data: bytes) -> bytes:
        event = RelayEvent.model_validate_json(data)
        opened = {f: open_sealed(self._key, event.case_id, f, v) for f, v in event.fields.items()}
        resealed = {f: seal(self._key, event.case_id, f, 1, text) for f, text in opened.items()}
        return event.model_copy(update={"fields": resealed}).model_dump_json().encode()

    async def run(self, stop: asyncio.Event) -> None:
        sub = await self._js.pull_subscribe_bind(RELAY_DURABLE, IN_STREAM)
        try:
            while not stop.is_set():
                try:
                    batch = await sub.fetch(FETCH, timeout=0.2)
                except TimeoutError:
                    continue
                acks = [
                    await self._js.publish_async(
                        f"{OUT_SUBJECT}.{m.subject.rsplit('.', 1)[-1]}", self.transform(m.data)
                    )
                    for m in batch
                ]
                for msg, ack in zip(batch, acks, strict=True):
                    await ack  # stored downstream before the input is acked
                    await msg.ack()
                self.relayed += len(batch)
        finally:
            await sub.unsubscribe()


async def preload(js: JetStreamContext, subject: str, count: int, key: bytes) -> None:
    """`count` relay messages sealed under `key` on `subject.<0..63>`, pipelined; before a
    clock starts."""
    for start in range(0, count, PIPELINE_WINDOW):
        await asyncio.gather(
            *[
                await js.publish_async(f"{subject}.{i % 64}", relay_message(key, i, 0.0))
                for i in range(start, min(count, start + PIPELINE_WINDOW))
            ]
        )


async def relay_throughput(nc: Client, count: int) -> float:
    js = nc.jetstream()
    key = os.urandom(32)
    await preload(js, IN_SUBJECT, count, key)
    await _relay_consumer(js)
    relay, stop = Relay(js, key), asyncio.Event()
    started = time.perf_counter()
    task = asyncio.create_task(relay.run(stop))
    while relay.relayed < count:
        await asyncio.sleep(0.002)
    seconds = time.perf_counter() - started
    stop.set()
    await task
    await js.delete_consumer(IN_STREAM, RELAY_DURABLE)
    return count / seconds


async def relay_latency(nc: Client, rate: float, seconds: float) -> list[float]:
    """Offer `rate` events/s to the relay; time from publishing the input to the output being
    stored and seen by an ordered consumer."""
    js = nc.jetstream()
    key = os.urandom(32)
    await _relay_consumer(js, new_only=True)
    latencies: list[float] = []

    async def on_output(msg: Msg) -> None:
        latencies.append(
            (time.perf_counter() - RelayEvent.model_validate_json(msg.data).sent_at) * 1000
        )

    out = await js.subscribe(
        f"{OUT_SUBJECT}.>", cb=on_output, ordered_consumer=True, deliver_policy=DeliverPolicy.NEW
    )
    relay, stop = Relay(js, key), asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    count = int(rate * seconds)
    started = time.perf_counter()
    pending = []
    for index in range(count):
        delay = started + index / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        message = relay_message(key, index, time.perf_counter())
        pending.append(await js.publish_async(f"{IN_SUBJECT}.{index % 64}", message))
    await asyncio.gather(*pending)
    deadline = time.perf_counter() + 60
    while len(latencies) < count and time.perf_counter() < deadline:
        await asyncio.sleep(0.01)
    stop.set()
    await task
    await out.unsubscribe()
    await js.delete_consumer(IN_STREAM, RELAY_DURABLE)
    if len(latencies) != count:
        raise RuntimeError(f"relay delivered {len(latencies)} of {count} paced events")
    return latencies


async def _relay_consumer(js: JetStreamContext, new_only: bool = False) -> None:
    await js.add_consumer(
        IN_STREAM,
        ConsumerConfig(
            durable_name=RELAY_DURABLE,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.NEW if new_only else DeliverPolicy.ALL,
            max_ack_pending=4096,
        ),
    )


async def measure(
    nc: Client, publishes: int, relay_events: int, paced_rate: float, paced_seconds: float
) -> RawFigures:
    """Every raw ceiling, on the server `nc` is connected to (its own BENCH_* streams)."""
    js = nc.jetstream()
    for name, subject in (
        (PUB_STREAM, PUB_SUBJECT),
        (IN_STREAM, IN_SUBJECT),
        (OUT_STREAM, OUT_SUBJECT),
    ):
        await add_stream(js, name, subject)
    figures = RawFigures()
    figures.awaited_publish = await awaited_publish(js, publishes)
    figures.pipelined_publish = await pipelined_publish(js, publishes * 4)
    _, figures.ordered_replay = await ordered_replay(js, PUB_STREAM, f"{PUB_SUBJECT}.>")
    figures.relay = await relay_throughput(nc, relay_events)
    figures.relay_paced_rate = paced_rate
    figures.relay_latencies_ms = await relay_latency(nc, paced_rate, paced_seconds)
    return figures
