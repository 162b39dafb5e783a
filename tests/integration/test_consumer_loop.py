"""The one consumer loop (`services.runtime.messaging.consume`) on its own, against a real
nats-server: ack after the effect, nak with backoff, a dead letter with the reason after the
last allowed delivery, on any stream; and a stop honoured however nats-py reports it."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
from collections.abc import Sequence

import pytest
from nats.aio.client import Client
from nats.errors import ConnectionClosedError
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig
from prometheus_client import REGISTRY

from contracts.subjects import DLQ_STREAM
from services.agencies.registry import load_registry
from services.bootstrap import bootstrap
from services.runtime.loops import Lifetime, keep_running, stop_loops
from services.runtime.messaging import Pull, Runtime, Taken, aggregate_of, consume
from services.runtime.settings import Settings
from tests.integration.hub_reads import wait_until

pytestmark = pytest.mark.integration

STREAM = "LOOP_TEST"


async def _consumer(
    nc: Client,
    settings: Settings,
    durable: str,
    max_deliver: int,
    max_ack_pending: int,
    ack_wait: float = 30.0,
) -> Runtime:
    assert settings.nats_url is not None
    await bootstrap(settings.nats_url, settings)  # NRM_DLQ
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name=STREAM, subjects=["loop.>"]))
    await js.add_consumer(
        STREAM,
        ConsumerConfig(
            durable_name=durable,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ack_wait,
            max_deliver=max_deliver,
            max_ack_pending=max_ack_pending,
        ),
    )
    runtime = Runtime(settings=settings, registry=load_registry())
    runtime.connected(nc)
    return runtime


def _count(durable: str, outcome: str) -> float:
    labels = {"service": "looptest", "consumer": durable, "outcome": outcome}
    return REGISTRY.get_sample_value("nrm_events_total", labels) or 0.0


@pytest.mark.parametrize("batch", [1, 8])
async def test_acked_after_the_effect_retried_then_dead_lettered(
    settings: Settings, nc: Client, batch: int
) -> None:
    durable = f"loop-{batch}"
    runtime = await _consumer(nc, settings, durable, max_deliver=3, max_ack_pending=batch)
    js = nc.jetstream()
    for name in ("poison", "a", "b"):
        await js.publish(f"loop.{name}", name.encode(), stream=STREAM)
    attempts: list[int] = []
    handled: list[bytes] = []

    async def handle(message: Taken) -> None:
        if message.data == b"poison":
            attempts.append(message.attempt)
            raise ValueError("cannot apply")
        handled.append(message.data)

    pull = Pull(STREAM, durable, batch, backoff=(0.05, 0.1), max_deliver=3)
    loop = asyncio.create_task(consume(runtime, "looptest", pull, handle))
    try:

        async def dead_lettered() -> list[dict[str, object]]:
            info = await js.stream_info(DLQ_STREAM)
            letters = []
            for seq in range(1, info.state.last_seq + 1):
                body = json.loads((await js.get_msg(DLQ_STREAM, seq)).data or b"")
                if body.get("type") == "dead_letter.recorded":
                    letters.append(body["data"])
            return letters

        async def both_handled() -> bool:
            # Counted too: the loop counts a message once its ack is confirmed, a moment
            # after the handler returned; a stop in between would leave it uncounted.
            return len(handled) == 2 and _count(durable, "handled") == 2

        [letter] = await wait_until(dead_lettered)
        await wait_until(both_handled)
    finally:
        loop.cancel()
        with pytest.raises(asyncio.CancelledError):
            await loop
    assert handled == [b"a", b"b"]  # once each, in order, not held back by the poison one
    assert attempts == [1, 2, 3]  # retried until the consumer's last delivery, then no more
    assert letter["consumer"] == durable and letter["stream"] == STREAM
    assert letter["subject"] == "loop.poison" and letter["attempts"] == 3
    assert letter["stream_sequence"] == 1
    assert letter["reason"] == "ValueError: cannot apply"
    info = await js.consumer_info(STREAM, durable)
    assert info.num_ack_pending == 0 and info.num_pending == 0  # everything settled
    assert _count(durable, "handled") == 2
    assert _count(durable, "retried") == 2
    assert _count(durable, "dead_lettered") == 1


async def test_a_stop_is_honoured_even_when_reported_as_a_closed_connection(
    settings: Settings, nc: Client
) -> None:
    durable = "loop-stop"
    runtime = await _consumer(nc, settings, durable, max_deliver=5, max_ack_pending=1)
    js = nc.jetstream()
    pull = Pull(STREAM, durable, 1)
    started = asyncio.Event()

    async def handle(message: Taken) -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            raise ConnectionClosedError from None  # what nats-py does when it is closing

    idle = asyncio.create_task(consume(runtime, "looptest", pull, handle))
    await asyncio.sleep(0.3)  # waiting in its fetch
    idle.cancel()
    await asyncio.wait_for(asyncio.wait({idle}), 2.0)
    assert idle.cancelled()

    await asyncio.sleep(1.0)  # the cancelled pull's request expires on the server
    await js.publish("loop.x", b"x", stream=STREAM)
    busy = asyncio.create_task(consume(runtime, "looptest", pull, handle))
    await asyncio.wait_for(started.wait(), 5.0)
    busy.cancel()
    await asyncio.wait_for(asyncio.wait({busy}), 2.0)
    assert busy.cancelled()  # ended by the stop, not carried on as a failure
    assert _count(durable, "retried") == 0  # and not nak'ed as one
    info = await js.consumer_info(STREAM, durable)
    assert info.num_ack_pending == 1  # neither acked nor nak'ed: back after its ack wait


async def test_a_loop_ended_without_a_stop_is_restarted_and_nothing_is_lost(
    settings: Settings, nc: Client
) -> None:
    """A handler that leaves its task's cancel count raised (a failed TaskGroup on Python
    3.11) and fails: the loop reads that as a stop and ends. Kept running, it is restarted,
    the message it was taking comes back after its ack wait, and the rest follow in order."""
    durable = "loop-kept"
    runtime = await _consumer(nc, settings, durable, max_deliver=5, max_ack_pending=1, ack_wait=1)
    js = nc.jetstream()
    for name in ("a", "b", "c"):
        await js.publish(f"loop.{name}", name.encode(), stream=STREAM)
    handled: list[bytes] = []
    attempts: list[int] = []

    async def handle(message: Taken) -> None:
        if message.data == b"b":
            attempts.append(message.attempt)
            if message.attempt == 1:
                task = asyncio.current_task()
                assert task is not None
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.sleep(0)  # the cancellation swallowed, its count left
                raise ValueError("a write failed")
        handled.append(message.data)

    def restarts() -> float:
        labels = {"service": "looptest", "loop": durable}
        return REGISTRY.get_sample_value("nrm_loop_restarts_total", labels) or 0.0

    before = restarts()
    lifetime = Lifetime()
    pull = Pull(STREAM, durable, 1, backoff=(0.05,), max_deliver=5)
    run = functools.partial(consume, runtime, "looptest", pull, handle)
    loop = asyncio.create_task(keep_running(lifetime, "looptest", durable, run))
    try:
        await wait_until(lambda: _settled([m.decode() for m in handled], 3), timeout=15)
    finally:
        await stop_loops(lifetime, [loop])
    assert handled == [b"a", b"b", b"c"]
    assert attempts == [1, 2]  # not nak'ed (the loop ended first): back after the ack wait
    assert restarts() - before == 1
    assert _count(durable, "retried") == 0
    info = await js.consumer_info(STREAM, durable)
    assert info.num_ack_pending == 0 and info.num_pending == 0


async def test_aggregates_side_by_side_keep_each_aggregates_order(
    settings: Settings, nc: Client
) -> None:
    """With `aggregates_side_by_side`, one aggregate's events are handled in stream order
    and another's meanwhile: the first event of `a` waits until `b`'s has been handled,
    which one at a time (the default) would never let happen."""
    durable = "loop-lanes"
    runtime = await _consumer(nc, settings, durable, max_deliver=3, max_ack_pending=64)
    js = nc.jetstream()
    for subject in ("loop.evt.a.1.x", "loop.evt.a.1.y", "loop.evt.b.2.x", "loop.evt.a.1.z"):
        await js.publish(subject, subject.encode(), stream=STREAM)
    handled: list[str] = []
    b_done = asyncio.Event()

    async def handle(message: Taken) -> None:
        if message.subject == "loop.evt.a.1.x":
            await asyncio.wait_for(b_done.wait(), 5)
        handled.append(message.subject)
        if message.subject.startswith("loop.evt.b."):
            b_done.set()

    pull = Pull(STREAM, durable, 64, aggregates_side_by_side=True)
    loop = asyncio.create_task(consume(runtime, "looptest", pull, handle))
    try:
        await wait_until(lambda: _settled(handled, 4), timeout=10)
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
    assert handled[0] == "loop.evt.b.2.x"
    assert [s for s in handled if ".a." in s] == [
        "loop.evt.a.1.x",
        "loop.evt.a.1.y",
        "loop.evt.a.1.z",
    ]
    assert aggregate_of("nrm.evt.referral.r-1.referral.requested") == "referral.r-1"


async def _settled(handled: list[str], expected: int) -> bool:
    return len(handled) == expected


async def test_side_work_waits_its_delay_after_the_event_was_stored_and_decisions_go_first(
    settings: Settings, nc: Client
) -> None:
    """Two durables on one event in one process: the side work (`after_stored`) starts on it
    no sooner than its delay after the server stored it, and the decision without a delay
    has been handled by then."""
    runtime = await _consumer(nc, settings, "loop-decision", max_deliver=3, max_ack_pending=64)
    js = nc.jetstream()
    await js.add_consumer(
        STREAM, ConsumerConfig(durable_name="loop-side", ack_policy=AckPolicy.EXPLICIT)
    )
    delay = 1.0  # far beyond what taking one event costs, so the order cannot be luck
    started: dict[str, float] = {}
    stored: list[float] = []

    async def decision(message: Taken) -> None:
        started["decision"] = time.time()
        assert message.stored_at is not None
        stored.append(message.stored_at.timestamp())

    async def side(message: Taken) -> None:
        started["side"] = time.time()

    loops = [
        asyncio.create_task(consume(runtime, "looptest", Pull(STREAM, durable, 64, **extra), take))
        for durable, take, extra in (
            ("loop-side", side, {"after_stored": delay}),
            ("loop-decision", decision, {}),
        )
    ]
    try:
        await js.publish("loop.evt.c.1.x", b"x", stream=STREAM)
        await wait_until(lambda: _settled(list(started), 2), timeout=10)
    finally:
        for loop in loops:
            loop.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
    assert started["side"] >= stored[0] + delay - 0.005  # one clock: the same machine's
    assert started["decision"] < started["side"]


async def test_ahead_sees_each_batch_first_and_a_failing_one_fails_no_message(
    settings: Settings, nc: Client
) -> None:
    """`ahead` gets each fetched batch before its messages are taken, in stream order; it is
    an optimisation only, so when it raises every message is still taken and acked."""
    durable = "loop-ahead"
    runtime = await _consumer(nc, settings, durable, max_deliver=3, max_ack_pending=64)
    js = nc.jetstream()
    for index in range(5):
        await js.publish(f"loop.{index}", str(index).encode(), stream=STREAM)
    seen: list[tuple[int, list[bytes]]] = []  # (messages taken before it, the batch)
    handled: list[bytes] = []

    async def ahead(batch: Sequence[Taken]) -> None:
        seen.append((len(handled), [message.data for message in batch]))
        raise RuntimeError("ahead failed")

    async def handle(message: Taken) -> None:
        handled.append(message.data)

    pull = Pull(STREAM, durable, 64)
    loop = asyncio.create_task(consume(runtime, "looptest", pull, handle, ahead))
    try:
        await wait_until(lambda: _settled([m.decode() for m in handled], 5), timeout=10)
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
    assert handled == [b"0", b"1", b"2", b"3", b"4"]  # each once, in order
    assert [data for _, batch in seen for data in batch] == handled  # every one seen
    before = [taken for taken, _ in seen]
    assert before == [sum(len(batch) for _, batch in seen[:i]) for i in range(len(seen))]
    info = await js.consumer_info(STREAM, durable)
    assert info.num_ack_pending == 0 and info.num_pending == 0 and info.num_redelivered == 0
    assert _count(durable, "handled") == 5
