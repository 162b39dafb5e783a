"""`nrm up --workers 2` as a person runs it (secured, free ports, stopped by PID): it starts,
`/readyz` speaks for every worker, a case flows end to end, and SIGTERM stops the workers
too. `kill -9` of one worker in the middle of a stream of cases loses nothing acknowledged:
`nrm up` starts it again, every case ends as without the crash, every event is audited once,
and the exported audit log verifies."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from contracts.commands import RegisterShelter
from contracts.vocabulary import Service, ShelterCategory
from services.client import HubClient
from services.runtime.connection import connect_options
from services.runtime.embedded import free_port
from services.runtime.service_table import SERVICES
from services.runtime.settings import Settings
from tests.integration.hub_reads import SHELTER_AND_LEGAL_AID as EXPECTED
from tests.integration.hub_reads import (
    cases_settled,
    screening,
    wait_until,
)

pytestmark = pytest.mark.integration
NRM = [sys.executable, "-m", "services.cli"]
CRISIS = "kg-ngo-osh-crisis-centre"  # identifies, runs the women's shelter in Osh
CASES = 18


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NRM_")}
    env["PYTHONPATH"] = str(Path(__file__).parents[2])
    return {**env, **extra}


class Hub:
    """A running `nrm up --workers 2`: its URL, data dir, health port and stderr log."""

    def __init__(self, proc: subprocess.Popen[str], url: str, data: Path, health: int) -> None:
        self.proc, self.url, self.data, self.health = proc, url, data, health
        self.log = data.parent / "up-stderr.log"

    def worker_pids(self) -> dict[int, int]:
        """Each worker's newest PID, from the `worker.started` log lines."""
        pids = {}
        for line in self.log.read_text().splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if entry.get("event") == "worker.started":
                    pids[int(entry["worker"])] = int(entry["pid"])
        return pids

    def readyz(self) -> tuple[int, dict[str, bool]]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health}/readyz", timeout=2) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as refused:
            return refused.code, json.loads(refused.read())

    def connect_options(self, role: str) -> dict[str, object]:
        settings = Settings(data_dir=self.data, nats_credentials=self.data / "credentials")
        return connect_options(settings, role)


@contextlib.contextmanager
def nrm_up_workers(tmp_path: Path) -> Iterator[Hub]:
    data = tmp_path / "var"
    health = free_port()
    log = tmp_path / "up-stderr.log"
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            [*NRM, "up", "--workers", "2", "--data", str(data), "--port", str(free_port())],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=_env(NRM_HEALTH_PORT=str(health), NRM_CHECKPOINT_INTERVAL_SECONDS="1"),
        )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("NRM hub ready nats://127.0.0.1:"), (line, log.read_text()[-3000:])
        yield Hub(proc, line.removeprefix("NRM hub ready "), data, health)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in _state(pid)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"


async def _nrm(hub: Hub, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """An operator command on the local hub (its credentials from DATA_DIR)."""
    return await asyncio.to_thread(
        subprocess.run,
        [*NRM, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=_env(NRM_DATA_DIR=str(hub.data), NRM_NATS_URL=hub.url),
    )


async def test_up_with_two_workers_serves_reports_health_and_stops_them(tmp_path: Path) -> None:
    with nrm_up_workers(tmp_path) as hub:
        pids = hub.worker_pids()
        assert sorted(pids) == [0, 1] and all(_alive(p) for p in pids.values())
        status, ready = hub.readyz()
        assert status == 200 and ready == dict.fromkeys(SERVICES, True), ready

        nc = await nats.connect(hub.url, **hub.connect_options(CRISIS))
        admin = await nats.connect(hub.url, **hub.connect_options("admin"))  # reads streams
        try:
            client = HubClient(nc, timeout=5.0)
            registered = await client.send(
                RegisterShelter(
                    command_id=uuid.uuid4(),
                    agency_id=CRISIS,
                    capacity={ShelterCategory.WOMEN: 2},
                )
            )
            assert registered["status"] == "accepted", registered
            # The same command twice at once, perhaps taken by both workers (one queue
            # group per command): one case, both answered with it.
            command = screening(CRISIS)
            replies = await asyncio.gather(client.send(command), client.send(command))
            assert {r["status"] for r in replies} == {"accepted"}, replies
            case_id = replies[0]["aggregate_id"]
            assert replies[1]["aggregate_id"] == case_id
            await cases_settled(
                admin.jetstream(), [case_id], EXPECTED, "a case across two workers", timeout=30
            )
        finally:
            await nc.close()
            await admin.close()

        hub.proc.send_signal(signal.SIGTERM)
        assert hub.proc.wait(timeout=60) == 0
        assert not any(_alive(p) for p in pids.values()), "a worker outlived nrm up"


@pytest.mark.parametrize("victim", [0, 1], ids=["worker-with-referral", "worker-with-audit"])
async def test_kill_9_of_a_worker_mid_stream_loses_nothing(
    tmp_path: Path, load_factor: int, victim: int
) -> None:
    total = CASES * load_factor
    with nrm_up_workers(tmp_path) as hub:
        nc = await nats.connect(hub.url, **hub.connect_options(CRISIS))
        admin = await nats.connect(hub.url, **hub.connect_options("admin"))  # reads streams
        try:
            client = HubClient(nc, timeout=2.0)
            registered = await client.send(
                RegisterShelter(
                    command_id=uuid.uuid4(),
                    agency_id=CRISIS,
                    capacity={ShelterCategory.WOMEN: total},
                )
            )
            assert registered["status"] == "accepted", registered
            killed = hub.worker_pids()[victim]
            cases: list[str] = []
            for index in range(total):
                if index == total // 3:
                    os.kill(killed, signal.SIGKILL)  # no clean-up, no acks
                    # Until it is back, /readyz says its services are not all there.
                    await wait_until(
                        lambda: asyncio.to_thread(lambda: hub.readyz()[0] == 503), 10, 0.02
                    )
                reply = await client.send_until_answered(
                    screening(CRISIS, needs=frozenset({Service.SHELTER, Service.LEGAL_AID}))
                )
                assert reply["status"] == "accepted", reply
                cases.append(reply["aggregate_id"])

            async def restarted() -> bool:
                again = hub.worker_pids()[victim]
                return again != killed and "worker.restarted" in hub.log.read_text()

            await wait_until(restarted, timeout=30)
            await wait_until(lambda: asyncio.to_thread(lambda: hub.readyz()[0] == 200), 60)
            audit_ids = await cases_settled(
                admin.jetstream(), cases, EXPECTED, f"killing worker {victim}", timeout=60
            )
        finally:
            await nc.close()
            await admin.close()

        bundle = tmp_path / "bundle"
        exported = await _nrm(hub, "audit", "export", "--out", str(bundle), cwd=tmp_path)
        assert exported.returncode == 0, exported.stderr[-2000:]
        verified = await _nrm(hub, "audit", "verify", str(bundle), "--json", cwd=tmp_path)
        assert verified.returncode == 0, verified.stdout[-2000:] + verified.stderr[-2000:]
        assert json.loads(verified.stdout)["signed_size"] == len(audit_ids)
