"""The relay with the hub's shape: the ceiling that the hub's fan-out leaves on its events/s.

The raw relay (`raw.py`) takes each event once and publishes once. The hub cannot: each
event it stores is taken by about three durables (the audit writer, the next decision or a
projection, the agency feed) and causes about four writes (the event itself, its audit leaf,
the feed's copies, a projection or ledger entry). `HubRun` counts both in every run
(`deliveries_per_event`, `writes_per_event`).

This relay does that much messaging per event and nothing else: `len(SHAPE)` durables on one
stream each take every event, validate it, publish `SHAPE[i]` messages for it with the acks
awaited together, and ack it once they are stored; in as many processes as the hub has
workers, each bound to every durable (pull consumers share a durable's messages). No
sealing, no history, no audit chain: what it moves per second is the most the hub could move
with its fan-out and none of its own work, so `fanout / relay` bounds the
`hub_events_vs_raw_relay` target from above.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.synchronize
import os
import queue
import time

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from nrm_tools.bench.raw import FETCH, RelayEvent, add_stream, preload
from services.runtime.loops import run_process

IN_STREAM, IN_SUBJECT = "BENCH_FAN_IN", "bench.fan.in"
OUT_STREAM, OUT_SUBJECT = "BENCH_FAN_OUT", "bench.fan.out"
# Writes per taken event, one entry per durable: the audit leaf; the feed's copies to two
# agencies; the next decision's event. Three durables and four writes per event are what the
# bench's own hub run counts (docs/PERFORMANCE.md item 24).
SHAPE = (1, 2, 1)
START_SECONDS = 60.0


def _durable(index: int) -> str:
    return f"bench-fan-{index}"


async def fanout_relay_throughput(nc: Client, url: str, count: int, processes: int) -> float:
    """Events/s through every durable of `SHAPE`, in `processes` processes."""
    js = nc.jetstream()
    for name, subject in ((IN_STREAM, IN_SUBJECT), (OUT_STREAM, OUT_SUBJECT)):
        await add_stream(js, name, subject)
    await preload(js, IN_SUBJECT, count, os.urandom(32))  # validated, never opened
    for index in range(len(SHAPE)):
        await js.add_consumer(
            IN_STREAM,
            ConsumerConfig(
                durable_name=_durable(index), ack_policy=AckPolicy.EXPLICIT, max_ack_pending=4096
            ),
        )
    # spawn: a fork of a process with a running event loop and a connection is not safe.
    context = multiprocessing.get_context("spawn")
    go, stop = context.Event(), context.Event()
    ready: multiprocessing.Queue[int] = context.Queue()
    workers = [
        context.Process(target=_worker, args=(url, go, stop, ready), daemon=True)
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    try:
        for _ in workers:
            await asyncio.to_thread(ready.get, True, START_SECONDS)
        started = time.perf_counter()
        go.set()
        while await _left(js):
            await asyncio.sleep(0.01)
        seconds = time.perf_counter() - started
    except queue.Empty:
        raise RuntimeError("a fan-out relay process did not start") from None
    finally:
        stop.set()
        go.set()
        for worker in workers:
            await asyncio.to_thread(worker.join, 30)
            if worker.is_alive():
                worker.kill()
    for name in (IN_STREAM, OUT_STREAM):
        await js.delete_stream(name)
    return count / seconds


async def _left(js: JetStreamContext) -> int:
    """Events some durable has yet to take or to acknowledge."""
    left = 0
    for index in range(len(SHAPE)):
        info = await js.consumer_info(IN_STREAM, _durable(index))
        left += info.num_pending + info.num_ack_pending
    return left


def _worker(
    url: str,
    go: multiprocessing.synchronize.Event,
    stop: multiprocessing.synchronize.Event,
    ready: multiprocessing.Queue[int],
) -> None:
    run_process(_serve(url, go, stop, ready))


async def _serve(
    url: str,
    go: multiprocessing.synchronize.Event,
    stop: multiprocessing.synchronize.Event,
    ready: multiprocessing.Queue[int],
) -> None:
    nc = await nats.connect(url, name="bench-fanout")
    try:
        js = nc.jetstream()
        subs = [await js.pull_subscribe_bind(_durable(i), IN_STREAM) for i in range(len(SHAPE))]
        ready.put(os.getpid())
        await asyncio.to_thread(go.wait)
        await asyncio.gather(
            *(
                _take(js, sub, index, copies, stop)
                for index, (sub, copies) in enumerate(zip(subs, SHAPE, strict=True))
            )
        )
    finally:
        await nc.close()


async def _take(
    js: JetStreamContext,
    sub: JetStreamContext.PullSubscription,
    index: int,
    copies: int,
    stop: multiprocessing.synchronize.Event,
) -> None:
    """One durable: fetch, validate, publish `copies` per event pipelined, ack when stored."""
    while not stop.is_set():
        try:
            batch = await sub.fetch(FETCH, timeout=0.2)
        except TimeoutError:
            continue
        acks = []
        for msg in batch:
            RelayEvent.model_validate_json(msg.data)
            acks.append(
                [
                    await js.publish_async(f"{OUT_SUBJECT}.{index}.{copy}", msg.data)
                    for copy in range(copies)
                ]
            )
        for msg, stored in zip(batch, acks, strict=True):
            await asyncio.gather(*stored)
            await msg.ack()
