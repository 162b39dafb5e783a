"""How `nrm up --workers N` spreads the services, hands its settings to the workers, and
reports readiness across them (services/workers.py); the processes themselves are
tests/integration/test_workers.py."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import cast

import pytest

from services.runtime.embedded import free_port
from services.runtime.health import answer
from services.runtime.service_table import SERVICES
from services.runtime.settings import Settings, settings_environment
from services.workers import (
    SINGLE_INSTANCE,
    STALE_SECONDS,
    ServiceAcrossWorkers,
    Worker,
    WorkerPool,
    default_workers,
    worker_services,
)


@pytest.mark.parametrize("workers", [1, 2, 3, 4, 8])
def test_each_order_bound_service_runs_in_one_worker_and_the_others_in_all(workers: int) -> None:
    spread = [worker_services(i, workers) for i in range(workers)]
    for service in SERVICES:
        instances = sum(service in services for services in spread)
        assert instances == (1 if service in SINGLE_INSTANCE else workers)
    assert set(SINGLE_INSTANCE) == {"audit", "referral", "shelter"}
    assert worker_services(0, 1) == tuple(SERVICES)  # one worker: everything, as before
    if workers >= 2:  # the chain and the referral flow are not on the same core
        assert "audit" not in worker_services(0, workers)


def test_workers_default_to_the_setting_else_one_per_core() -> None:
    assert default_workers(Settings(workers=3)) == 3
    assert default_workers(Settings()) == (os.cpu_count() or 1)
    assert Settings.from_env({"NRM_WORKERS": "4"}).workers == 4


def test_a_worker_reads_back_exactly_the_settings_it_was_given(tmp_path: Path) -> None:
    given = Settings(
        nats_url=f"nats://127.0.0.1:{free_port()},nats://127.0.0.1:{free_port()}",
        data_dir=tmp_path,
        country="kz",
        retry_backoff_seconds=(0.1, 0.2),
        checkpoint_interval_seconds=1.5,
        nats_credentials=tmp_path / "credentials",
        workers=2,
    )
    assert Settings.from_env(settings_environment(given)) == given
    assert Settings.from_env(settings_environment(Settings())) == Settings()


class _Alive:
    returncode = None


def _worker(services: tuple[str, ...], ready: dict[str, bool], age: float = 0.0) -> Worker:
    worker = Worker(0, services)
    worker.process = cast(asyncio.subprocess.Process, _Alive())
    worker.ready, worker.reported_at = ready, time.monotonic() - age
    return worker


def test_a_service_is_ready_only_when_every_worker_running_it_says_so_recently() -> None:
    both = _worker(("identifier", "audit"), {"identifier": True, "audit": True})
    second = _worker(("identifier",), {"identifier": True})
    assert ServiceAcrossWorkers("identifier", (both, second)).ready
    second.ready = {"identifier": False}
    assert not ServiceAcrossWorkers("identifier", (both, second)).ready
    stale = _worker(("identifier",), {"identifier": True}, age=STALE_SECONDS + 1)
    assert not ServiceAcrossWorkers("identifier", (both, stale)).ready
    dead = _worker(("identifier",), {"identifier": True})
    dead.process = None
    assert not ServiceAcrossWorkers("identifier", (both, dead)).ready
    assert not ServiceAcrossWorkers("identifier", ()).ready


def test_readyz_of_a_pool_names_every_service_once(tmp_path: Path) -> None:
    pool = WorkerPool(Settings(data_dir=tmp_path), f"nats://127.0.0.1:{free_port()}", workers=2)
    serving = pool.serving()
    assert [s.service for s in serving] == list(SERVICES)
    reply = answer("/readyz", serving)
    assert reply.startswith(b"HTTP/1.1 503")  # nothing started yet
    for worker in pool.workers:
        worker.process = cast(asyncio.subprocess.Process, _Alive())
        worker.ready = dict.fromkeys(worker.services, True)
        worker.reported_at = time.monotonic()
    assert answer("/readyz", pool.serving()).startswith(b"HTTP/1.1 200")
