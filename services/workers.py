"""`nrm up --workers N`: the hub's services in N worker processes, so the hub uses every core.

One event loop runs on one core. With N > 1, `nrm up` keeps what it does once (embedded
nats-server, keys, bootstrap, gateway, health, hub.url, the ready line) and starts N workers,
each `python -m services.workers SERVICE...`: the services of the table in one process,
exactly as `nrm up --workers 1` runs them in its own. Several instances of a service are safe
by construction: pull consumers share a durable's messages, command subscriptions are queue
groups (one instance answers), every write carries optimistic concurrency and derived ids,
and the audit writer appends with `Nats-Expected-Last-Sequence` (docs/RELIABILITY.md).

Three services run in exactly one worker each (`SINGLE_INSTANCE`, spread over the workers):
the audit writer, because the audit log is one chain and a second writer conflicts on every
other append instead of adding throughput (docs/PERFORMANCE.md section 9); the referral and
shelter services, because some of their consumers still follow the order they take events
in (the agency feed's copies, the deadline projection), which a durable shared by two
instances mixes more than one instance does (docs/ARCHITECTURE.md, Known limits; the
discharge and the revocation that needed stream order are retried when early now). The
identifier and custody run in every worker.

A worker reports its services' readiness on stdout once a second; `/readyz` of `nrm up` is
ready only while every worker is alive and its last report (no older than STALE_SECONDS) says
each of its services is connected and consuming. A worker that exits is logged and started
again; workers are stopped by PID, and die with `nrm up` (parent-death signal, and their
stdin closing) if it is killed outright.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import stat
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from structlog.contextvars import bound_contextvars

from services.bootstrap import running_services
from services.runtime.health import Serving
from services.runtime.logging import configure_logging, get_logger
from services.runtime.loops import run_process
from services.runtime.service_table import SERVICES
from services.runtime.settings import (
    ENV_PREFIX,
    Settings,
    SettingsError,
    settings_environment,
)

log = get_logger("nrm.workers")
# Each in one worker only: the audit chain, and the consumers that follow the order they take
# events in (the agency feed, the deadline projection).
SINGLE_INSTANCE = ("referral", "audit", "shelter")
REPORT_SECONDS = 1.0  # how often a worker says whether its services are ready
STALE_SECONDS = 5.0  # a worker silent this long counts as not ready
START_SECONDS = 120.0  # for every worker's first ready report
STOP_SECONDS = 30.0  # SIGTERM, then this long to drain, then SIGKILL
RESTART_DELAYS = (0.5, 1.0, 2.0, 5.0, 10.0)  # between restarts of a worker that keeps dying
STEADY_SECONDS = 60.0  # a worker that ran this long before exiting starts the backoff over
# Not settings: which worker this is (for its log lines), and the log level of `nrm up`
# (the bench and the demo run quieter than a hub).
WORKER_INDEX_VARIABLE = "NRM_WORKER_INDEX"
WORKER_LOG_LEVEL_VARIABLE = "NRM_WORKER_LOG_LEVEL"


class WorkerFailed(Exception):
    """A worker exited, or never said it was ready, while `nrm up` was starting."""


def default_workers(settings: Settings) -> int:
    """NRM_WORKERS, or one worker per core."""
    return settings.workers or os.cpu_count() or 1


def worker_services(index: int, workers: int) -> tuple[str, ...]:
    """Which services worker `index` of `workers` runs: every service, except that each of
    `SINGLE_INSTANCE` runs in one worker only (the first in worker 0, the next in worker 1,
    and so on round the workers)."""
    home = {service: i % workers for i, service in enumerate(SINGLE_INSTANCE)}
    return tuple(s for s in SERVICES if home.get(s, index) == index)


def _dies_with_parent() -> list[str]:
    """A prefix that sends the worker SIGTERM when `nrm up` dies (where setpriv exists; the
    worker's stdin closing does the same everywhere). `preexec_fn` is unsafe once threads
    exist, and asyncio's resolver has threads."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM"] if setpriv else []


@dataclass
class Worker:
    index: int
    services: tuple[str, ...]
    process: asyncio.subprocess.Process | None = None
    ready: dict[str, bool] = field(default_factory=dict)
    reported_at: float = 0.0  # time.monotonic() of the last report
    started: asyncio.Event = field(default_factory=asyncio.Event)  # first report of this run
    restarts: int = 0

    def serves(self, service: str) -> bool:
        alive = self.process is not None and self.process.returncode is None
        fresh = time.monotonic() - self.reported_at < STALE_SECONDS
        return alive and fresh and self.ready.get(service, False)


@dataclass(frozen=True)
class ServiceAcrossWorkers:
    """One service as `/readyz` sees it: ready when every worker that runs it is."""

    service: str
    workers: tuple[Worker, ...]

    @property
    def ready(self) -> bool:
        return bool(self.workers) and all(w.serves(self.service) for w in self.workers)


class WorkerPool:
    """N worker processes running the services against `nats_url`, kept running."""

    def __init__(self, settings: Settings, nats_url: str, workers: int) -> None:
        self.settings = settings
        self.nats_url = nats_url
        self.workers = [Worker(i, worker_services(i, workers)) for i in range(workers)]
        self._stopping = False
        self._watchers: list[asyncio.Task[None]] = []

    def serving(self) -> list[Serving]:
        """Per service, its readiness across the workers (for the health server)."""
        return [
            ServiceAcrossWorkers(name, tuple(w for w in self.workers if name in w.services))
            for name in SERVICES
        ]

    def _environment(self, worker: Worker) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
        env.update(settings_environment(self.settings))
        env.update(
            {
                f"{ENV_PREFIX}NATS_URL": self.nats_url,
                f"{ENV_PREFIX}HEALTH_PORT": "0",  # `nrm up` serves the health of them all
                WORKER_INDEX_VARIABLE: str(worker.index),
                WORKER_LOG_LEVEL_VARIABLE: logging.getLevelName(logging.getLogger().level),
            }
        )
        return env

    async def _spawn(self, worker: Worker) -> None:
        worker.ready, worker.reported_at = {}, 0.0
        worker.started = asyncio.Event()
        worker.process = await asyncio.create_subprocess_exec(
            *_dies_with_parent(),
            sys.executable,
            "-m",
            "services.workers",
            *worker.services,
            stdin=asyncio.subprocess.PIPE,  # closed when `nrm up` dies: the worker stops
            stdout=asyncio.subprocess.PIPE,
            env=self._environment(worker),
            start_new_session=True,  # a terminal's Ctrl-C reaches `nrm up`, which stops them
        )
        log.info("worker.started", worker=worker.index, pid=worker.process.pid)

    async def start(self, within: float = START_SECONDS) -> None:
        """Start every worker and wait for each one's first ready report."""
        for worker in self.workers:
            await self._spawn(worker)
            self._watchers.append(asyncio.create_task(self._watch(worker)))
        deadline = asyncio.get_running_loop().time() + within
        for worker in self.workers:
            remaining = deadline - asyncio.get_running_loop().time()
            waited = asyncio.create_task(worker.started.wait())
            assert worker.process is not None
            exited = asyncio.create_task(worker.process.wait())
            done, _ = await asyncio.wait(
                {waited, exited}, timeout=max(remaining, 0), return_when=asyncio.FIRST_COMPLETED
            )
            waited.cancel()
            exited.cancel()
            if waited not in done:
                code = worker.process.returncode
                how = f"exited with code {code}" if code is not None else f"not ready in {within}s"
                raise WorkerFailed(f"worker {worker.index} {how} (its log is above)")

    async def _watch(self, worker: Worker) -> None:
        """Read the worker's reports; when it exits (and we are not stopping), start it again."""
        quick_exits = 0  # exits in a row within STEADY_SECONDS of a start: the backoff grows
        while True:
            process = worker.process
            assert process is not None and process.stdout is not None
            spawned_at = time.monotonic()
            while line := await process.stdout.readline():
                with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError):
                    report = json.loads(line)
                    worker.ready = {str(k): bool(v) for k, v in report["ready"].items()}
                    worker.reported_at = time.monotonic()
                    worker.started.set()
            code = await process.wait()
            if self._stopping:
                return
            if not worker.started.is_set() and worker.restarts == 0:
                return  # never came up: `start` reports it, a restart would fail the same way
            steady = time.monotonic() - spawned_at >= STEADY_SECONDS
            quick_exits = 0 if steady else quick_exits + 1
            delay = RESTART_DELAYS[min(quick_exits, len(RESTART_DELAYS) - 1)]
            log.error(
                "worker.exited", worker=worker.index, pid=process.pid, code=code, restart_in=delay
            )
            while True:
                await asyncio.sleep(delay)
                if self._stopping:
                    return
                try:
                    await self._spawn(worker)
                    break
                except OSError as exc:  # e.g. out of processes: try again, never give up on it
                    log.error("worker.not_started", worker=worker.index, error=type(exc).__name__)
                    delay = RESTART_DELAYS[-1]
            worker.restarts += 1
            log.warning("worker.restarted", worker=worker.index, restarts=worker.restarts)

    async def stop(self) -> None:
        """SIGTERM every worker by PID, wait for them to drain, SIGKILL what is left."""
        self._stopping = True
        running = [w.process for w in self.workers if w.process and w.process.returncode is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        for process in running:
            try:
                await asyncio.wait_for(process.wait(), STOP_SECONDS)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        for watcher in self._watchers:
            watcher.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)


@contextlib.asynccontextmanager
async def serving_services(
    nats_url: str, settings: Settings, workers: int
) -> AsyncIterator[Sequence[Serving]]:
    """Every service of the table, running until the block ends: in this process with one
    worker (as `nrm up` always did), else in a `WorkerPool`. Yields what `/readyz` reports."""
    if workers <= 1:
        async with running_services(nats_url, settings) as started:
            yield [s.host for s in started]
        return
    pool = WorkerPool(settings, nats_url, workers)
    try:
        await pool.start()
        yield pool.serving()
    finally:
        await pool.stop()


# --- the worker process -------------------------------------------------------------------


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM. Install it before announcing readiness: a signal
    that arrives between the ready line and the handler would kill the process outright."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def _stop_when_stdin_closes(stop: asyncio.Event) -> None:
    """`nrm up` holds the worker's stdin open: end of file means it is gone. Read by the
    event loop (a thread blocked on stdin would hold its lock at interpreter shutdown)."""
    loop = asyncio.get_running_loop()
    fd = sys.stdin.fileno()
    if not stat.S_ISFIFO(os.fstat(fd).st_mode):
        return  # started by hand, not by `nrm up`
    os.set_blocking(fd, False)

    def readable() -> None:
        try:
            if os.read(fd, 4096):
                return
        except BlockingIOError:
            return
        except OSError:
            pass
        loop.remove_reader(fd)
        stop.set()

    loop.add_reader(fd, readable)


async def run_worker(settings: Settings, names: Sequence[str]) -> int:
    """Run `names` until SIGTERM, reporting their readiness on stdout every REPORT_SECONDS."""
    if settings.nats_url is None:
        raise SettingsError("a worker needs NRM_NATS_URL (it is started by `nrm up`)")
    async with running_services(settings.nats_url, settings, names) as started:
        stop = stop_on_signals()
        _stop_when_stdin_closes(stop)
        while not stop.is_set():
            report = {"ready": {s.name: s.host.ready for s in started}}
            try:
                print(json.dumps(report), flush=True)
            except BrokenPipeError:  # `nrm up` is gone
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), REPORT_SECONDS)
    return 0


def main(argv: Sequence[str]) -> int:
    configure_logging(os.environ.get(WORKER_LOG_LEVEL_VARIABLE, "INFO"))
    names = list(argv) or list(SERVICES)
    unknown = sorted(set(names) - set(SERVICES))
    if unknown:
        print(f"nrm worker: unknown services {unknown}", file=sys.stderr)
        return 2
    try:
        settings = Settings.from_env()
        with bound_contextvars(worker=int(os.environ.get(WORKER_INDEX_VARIABLE, "0"))):
            return run_process(run_worker(settings, names))
    except SettingsError as exc:
        print(f"nrm worker: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
