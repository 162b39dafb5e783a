"""The hub end to end: N screenings through identify -> refer -> admit or wait-list -> audit,
on a fresh embedded nats-server with all services running in this process.

Sealing the personal data happens before the clock starts (an agency seals on its own
machine). The clock stops when the last audit leaf is stored. Then the run checks its own
work: every event type in the exact expected number, every case with exactly its own
events, and one audit leaf with the right hash for every event; anything else is a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from contracts.envelope import Envelope
from contracts.subjects import AUDIT_STREAM, EVENT_PREFIX, EVENTS_STREAM, command_subject
from nrm_tools.bench.workload import Workload, build
from services.agencies.registry import load_registry
from services.audit.streams import read_stream
from services.bootstrap import bootstrap
from services.client import HubClient
from services.runtime.case_keys import create_hub_keys
from services.runtime.embedded import EmbeddedNats
from services.runtime.service_table import SERVICES, every_durable
from services.runtime.settings import Settings
from services.workers import serving_services

IN_FLIGHT = 64  # commands outstanding at saturation (agencies' systems sending at once)
STALL_SECONDS = 30.0
ServerStep = Callable[[Client], Awaitable[None]]
HubStep = Callable[[Client, Settings], Awaitable[None]]


class BenchFailure(Exception):
    """The run lost, doubled or misplaced something: no speed is reported."""


@dataclass
class HubRun:
    cases: int
    events: int
    seconds: float  # first command sent -> every durable has taken every event
    offered_rate: float | None  # cases/s, None at saturation
    latencies_ms: list[float] = field(default_factory=list)  # command -> shelter.admitted
    commands_seconds: float = 0.0  # first command sent -> last reply
    audited_seconds: float = 0.0  # first command sent -> last audit leaf stored
    # Per durable, what it had not yet handled when the last audit leaf was stored: which
    # consumers the clock waited for after that (the feed, the cross-border outbox).
    lag_at_end: dict[str, int] = field(default_factory=dict)
    # The hub's fan-out, counted: deliveries to its durables and messages written to its
    # streams (events, audit leaves, feed copies, KV entries), whole run (fanout.py).
    deliveries: int = 0
    writes: int = 0

    @property
    def cases_per_second(self) -> float:
        return self.cases / self.seconds

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds


def bench_settings(url: str, data_dir: Path) -> Settings:
    return Settings(nats_url=url, data_dir=data_dir, checkpoint_interval_seconds=1.0)


@contextlib.asynccontextmanager
async def service_processes(url: str, data_dir: Path) -> AsyncIterator[None]:
    """Each service as its own `nrm run` process, as deployed (logs at INFO to a file), so
    the hub can use every core; stopped by PID."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NRM_")}
    env.update(
        NRM_NATS_URL=url,
        NRM_DATA_DIR=str(data_dir),
        NRM_CHECKPOINT_INTERVAL_SECONDS="1.0",
        PYTHONPATH=str(Path(__file__).parents[2]),
    )
    started: list[subprocess.Popen[str]] = []
    log = (data_dir / "services.log").open("w")
    try:
        for name in SERVICES:
            started.append(
                subprocess.Popen(
                    [sys.executable, "-m", "services.cli", "run", name],
                    stdout=subprocess.PIPE,
                    stderr=log,
                    text=True,
                    env=env,
                )
            )
        for process in started:
            assert process.stdout is not None
            line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), 60)
            if "consuming" not in line:
                raise BenchFailure("a service process did not start (see services.log)")
        yield
    finally:
        for process in started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


class AdmissionClock:
    """When each case's `shelter.admitted` reached a JetStream consumer (i.e. was stored)."""

    def __init__(self) -> None:
        self.sent: dict[str, float] = {}
        self.admitted: dict[str, float] = {}

    async def on_message(self, msg: Msg) -> None:
        correlation = Envelope.from_bytes(msg.data).correlationid
        if correlation is not None:
            self.admitted.setdefault(correlation, time.perf_counter())

    def latencies_ms(self) -> list[float]:
        return [(at - self.sent[c]) * 1000 for c, at in self.admitted.items() if c in self.sent]


async def run_hub(
    workdir: Path,
    workload: Workload,
    *,
    sync_always: bool,
    rate: float | None = None,
    profile_to: Path | None = None,
    before: ServerStep | None = None,
    after: HubStep | None = None,
    processes: bool = False,
    workers: int = 1,
) -> HubRun:
    """One timed run on a fresh server; `rate` paces commands (cases/s), None saturates.
    `workers` > 1 runs the services as `nrm up --workers` does (services/workers.py).
    `before` runs on the server before the hub is bootstrapped (the raw ceilings), `after`
    once the run has been checked, with the hub still up (audit export, replays)."""
    server = EmbeddedNats(workdir / "nats", sync_always=sync_always)
    url = await server.start()
    settings = bench_settings(url, workdir)
    create_hub_keys(settings)
    try:
        nc = await nats.connect(url, name="bench-load")
        try:
            if before is not None:
                await before(nc)
            await bootstrap(url, settings)
            services = (
                service_processes(url, workdir)
                if processes
                else serving_services(url, settings, workers)
            )
            async with services:
                run = await _drive(nc, workload, rate, profile_to)
                if after is not None:
                    await after(nc, settings)
                return run
        finally:
            await nc.close()
    finally:
        server.stop()


async def _drive(
    nc: Client, workload: Workload, rate: float | None, profile_to: Path | None
) -> HubRun:
    client = HubClient(nc, timeout=60.0)
    js = nc.jetstream()
    for shelter in workload.shelters:
        reply = await client.send(shelter)
        if reply.get("status") != "accepted":
            raise BenchFailure(f"shelter registration refused: {reply}")
    # Sealed to the hub's intake key before the clock starts.
    bodies = [
        (str(c.interview.command_id), (await client.sealed(c.interview)).model_dump_json().encode())
        for c in workload.cases
    ]
    subject = command_subject(type(await client.sealed(workload.cases[0].interview)))
    clock = AdmissionClock()
    admitted_sub = await js.subscribe(
        f"{EVENT_PREFIX}.shelter.*.shelter.admitted",
        cb=clock.on_message,
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.NEW,
    )
    expected_events = workload.events_total()
    gate = asyncio.Semaphore(IN_FLIGHT)
    refused: list[str] = []

    async def send(command_id: str, body: bytes) -> None:
        clock.sent[command_id] = time.perf_counter()
        reply = json.loads((await nc.request(subject, body, timeout=60.0)).data)
        if reply["data"].get("status") != "accepted":
            refused.append(command_id)

    async def saturate(command_id: str, body: bytes) -> None:
        async with gate:
            await send(command_id, body)

    profiler = _start_profiler(profile_to)
    started = time.perf_counter()
    if rate is None:
        await asyncio.gather(*(saturate(c, b) for c, b in bodies))
    else:
        tasks = []
        for index, (command_id, body) in enumerate(bodies):
            delay = started + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send(command_id, body)))
        await asyncio.gather(*tasks)
    commands_done = time.perf_counter()
    if refused:
        raise BenchFailure(f"{len(refused)} screenings were not accepted")
    await _until_audited(js, expected_events)
    audited = time.perf_counter()
    lag_at_end = await consumer_lag(js)
    # The hub is done when every consumer has taken every event, not when the last leaf is
    # stored: an agency's feed copy or the outbox's look at a referral is work too.
    await _until_drained(js, lag_at_end)
    finished = time.perf_counter()
    _stop_profiler(profiler, profile_to)
    deliveries, writes = await message_counts(js)
    await admitted_sub.unsubscribe()
    await check(nc, workload)
    latencies = clock.latencies_ms()
    if len(latencies) != workload.admitted:
        raise BenchFailure(
            f"saw {len(latencies)} admissions of sent cases, expected {workload.admitted}"
        )
    return HubRun(
        cases=len(workload.cases),
        events=expected_events - len(workload.shelters),
        seconds=finished - started,
        offered_rate=rate,
        latencies_ms=latencies,
        commands_seconds=commands_done - started,
        audited_seconds=audited - started,
        lag_at_end=lag_at_end,
        deliveries=deliveries,
        writes=writes,
    )


async def consumer_lag(js: JetStreamContext) -> dict[str, int]:
    """Messages each durable has yet to take or to acknowledge."""
    lag = {}
    for durable in every_durable():
        info = await js.consumer_info(durable.stream, durable.durable)
        lag[durable.durable] = info.num_pending + info.num_ack_pending
    return lag


async def message_counts(js: JetStreamContext) -> tuple[int, int]:
    """(deliveries to the hub's durables, messages written to the hub's streams) so far; the
    raw ceilings' BENCH_* streams on the same server are not the hub's."""
    deliveries = 0
    for durable in every_durable():
        info = await js.consumer_info(durable.stream, durable.durable)
        deliveries += info.delivered.consumer_seq or 0
    streams = await js.streams_info()
    writes = sum(
        s.state.last_seq
        for s in streams
        if not s.config.name or not s.config.name.startswith("BENCH_")
    )
    return deliveries, writes


async def _until_drained(js: JetStreamContext, lag: dict[str, int]) -> None:
    """Until no durable has anything left to take or to acknowledge (polled every 20 ms,
    only those still behind); one that stops moving for STALL_SECONDS has lost something."""
    behind = {durable: left for durable, left in lag.items() if left}
    streams = {d.durable: d.stream for d in every_durable()}
    moved = time.perf_counter()
    while behind:
        await asyncio.sleep(0.02)
        for durable, before in list(behind.items()):
            info = await js.consumer_info(streams[durable], durable)
            left = info.num_pending + info.num_ack_pending
            if left != before:
                moved = time.perf_counter()
            if left:
                behind[durable] = left
            else:
                del behind[durable]
        if behind and time.perf_counter() - moved > STALL_SECONDS:
            raise BenchFailure(f"consumers stalled with events left: {behind}")


async def _until_audited(js: JetStreamContext, expected: int) -> None:
    """Until the audit stream holds a leaf per expected event (polled every 5 ms); a run
    that stops moving for STALL_SECONDS short of that has lost something."""
    last, moved = (-1, -1), time.perf_counter()
    while True:
        events = (await js.stream_info(EVENTS_STREAM)).state.messages
        leaves = (await js.stream_info(AUDIT_STREAM)).state.messages
        if events > expected:
            raise BenchFailure(f"{events} events stored, expected {expected}: something doubled")
        if events == expected and leaves >= expected:
            return
        if (events, leaves) != last:
            last, moved = (events, leaves), time.perf_counter()
        elif time.perf_counter() - moved > STALL_SECONDS:
            raise BenchFailure(
                f"stalled at {events} of {expected} events, {leaves} audit leaves: lost something"
            )
        await asyncio.sleep(0.005)


async def check(nc: Client, workload: Workload) -> None:
    """Every case ended as expected and every event has exactly one matching audit leaf."""
    types: Counter[str] = Counter()
    per_case: dict[str, Counter[str]] = defaultdict(Counter)
    hashes: dict[int, str] = {}
    async for message in read_stream(nc, EVENTS_STREAM):
        envelope = Envelope.from_bytes(message.data)
        types[envelope.type] += 1
        hashes[message.sequence] = hashlib.sha256(message.data).hexdigest()
        if envelope.correlationid is not None:
            per_case[envelope.correlationid][envelope.type] += 1
    if types != workload.expected_events():
        raise BenchFailure(f"events by type {dict(types)} != {dict(workload.expected_events())}")
    for case in workload.cases:
        got = per_case.get(str(case.interview.command_id), Counter())
        if not _case_as_expected(got, case.referrals, case.shelter is not None):
            raise BenchFailure(f"a case ended with {dict(got)}")
    audited: dict[int, str] = {}
    async for message in read_stream(nc, AUDIT_STREAM):
        source = json.loads(message.data)["data"]["source"]
        if source["stream"] != EVENTS_STREAM:
            continue
        if int(source["sequence"]) in audited:
            raise BenchFailure(f"event {source['sequence']} audited twice")
        audited[int(source["sequence"])] = source["sha256"]
    if audited != hashes:
        raise BenchFailure("the audit leaves do not match the events one for one")


def _case_as_expected(got: Counter[str], referrals: int, shelter: bool) -> bool:
    base = {"victim.identified": 1, "consent.recorded": 1, "referral.requested": referrals}
    if not shelter:
        return got == Counter(base)
    admitted = Counter({**base, "shelter.admitted": 1, "referral.accepted": 1})
    waiting = Counter({**base, "shelter.waitlisted": 1, "referral.waitlisted": 1})
    return got in (admitted, waiting)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def workload_for(n: int, seed: int = 9) -> Workload:
    return build(n, load_registry(), seed)


def _start_profiler(path: Path | None) -> object | None:
    if path is None:
        return None
    from pyinstrument import Profiler

    profiler = Profiler(async_mode="disabled")
    profiler.start()
    started: object = profiler  # typed the same with or without the optional extra installed
    return started


def _stop_profiler(profiler: object | None, path: Path | None) -> None:
    if profiler is None or path is None:
        return
    from pyinstrument import Profiler

    assert isinstance(profiler, Profiler)
    profiler.stop()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(profiler.output_text(unicode=False, color=False, show_all=False))
