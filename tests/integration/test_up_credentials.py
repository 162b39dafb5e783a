"""`nrm up` as a person runs it, secured by default: a real subprocess on a free port with a
private data dir, stopped by PID. A client without credentials can command nothing; an
agency's seed from DATA_DIR/credentials can, in its own name only; `--insecure` keeps the
open subjects (and says so loudly)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from contracts.commands import RegisterShelter
from contracts.subjects import agency_command_subject, command_subject
from services.agencies.registry import load_registry
from services.client import HubClient
from services.runtime.connection import connect_options
from services.runtime.embedded import free_port
from services.runtime.settings import Settings
from tests.integration.hub_reads import CANARIES, screening

pytestmark = pytest.mark.integration
NRM = [sys.executable, "-m", "services.cli"]
CRISIS = "kg-ngo-osh-crisis-centre"
CLINIC = "kg-ngo-osh-legal-clinic"
REFUSED = (NoRespondersError, NatsTimeoutError)


@contextlib.contextmanager
def nrm_up(data: Path, *extra: str) -> Iterator[tuple[str, Path]]:
    """`nrm up` on a free port; yields its URL and its stderr log; SIGTERM by PID on exit."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NRM_")}
    env["PYTHONPATH"] = str(Path(__file__).parents[2])
    log = data.parent / f"{data.name}-stderr.log"
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            [*NRM, "up", "--data", str(data), "--port", str(free_port()), *extra],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=env,
        )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("NRM hub ready nats://127.0.0.1:"), (line, log.read_text())
        yield line.removeprefix("NRM hub ready "), log
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


@contextlib.asynccontextmanager
async def connection(url: str, **options: Any) -> AsyncIterator[Client]:
    nc = await nats.connect(url, allow_reconnect=False, connect_timeout=5, **options)
    try:
        yield nc
    finally:
        await nc.close()


def as_agency(data: Path, agency: str) -> dict[str, Any]:
    """How an agency holding its seed from DATA_DIR/credentials connects."""
    settings = Settings(data_dir=data, nats_credentials=data / "credentials")
    return connect_options(settings, agency)


def shelter(agency_id: str) -> RegisterShelter:
    return RegisterShelter(command_id=uuid.uuid4(), agency_id=agency_id, capacity={"women": 1})


def no_canary(*replies: dict[str, Any]) -> None:
    text = json.dumps(replies)
    assert not any(canary in text for canary in CANARIES)


async def test_the_dev_hub_takes_commands_only_from_agencies_in_their_own_name(
    tmp_path: Path,
) -> None:
    data = tmp_path / "var"
    with nrm_up(data) as (url, _):
        # One seed per known role, readable by its owner only.
        credentials = data / "credentials"
        seeds = sorted(credentials.glob("*.nk"))
        registry = load_registry()
        expected = {f"{a.id}.nk" for a in registry.agencies} | {
            f"{r}.nk" for r in ("identifier", "referral", "shelter", "audit", "custody", "admin")
        }
        assert expected <= {p.name for p in seeds}
        for seed in seeds:
            assert stat.S_IMODE(seed.stat().st_mode) == 0o600, seed
        assert stat.S_IMODE(credentials.stat().st_mode) & 0o077 == 0

        # Without credentials: admitted, but powerless. No subject answers it.
        async with connection(url) as anonymous:
            for subject in (
                agency_command_subject(RegisterShelter, CRISIS),
                command_subject(RegisterShelter),
            ):
                with pytest.raises(REFUSED):
                    await anonymous.request(
                        subject, shelter(CRISIS).model_dump_json().encode(), timeout=2
                    )

        async with connection(url, **as_agency(data, CRISIS)) as crisis:
            client = HubClient(crisis)
            registered = await client.send(shelter(CRISIS))
            assert registered["status"] == "accepted", registered
            identified = await client.send(screening(CRISIS))
            assert identified["status"] == "accepted", identified

            # In another agency's name on its own subject: refused for who sent it.
            lie = shelter(CLINIC).model_dump_json().encode()
            reply = await crisis.request(
                agency_command_subject(RegisterShelter, CRISIS), lie, timeout=5
            )
            rejected = json.loads(reply.data)["data"]
            assert rejected["status"] == "rejected"
            assert [(e["field"], e["code"]) for e in rejected["errors"]] == [
                ("agency_id", "not_authorised")
            ]
            # On the other agency's subject, or the open one: the server drops it.
            for subject in (
                agency_command_subject(RegisterShelter, CLINIC),
                command_subject(RegisterShelter),
            ):
                with pytest.raises(REFUSED):
                    await crisis.request(subject, lie, timeout=2)
            no_canary(registered, identified, rejected)


async def test_the_insecure_dev_hub_takes_the_open_subject_and_says_so(tmp_path: Path) -> None:
    data = tmp_path / "var"
    with nrm_up(data, "--insecure") as (url, log):
        assert "WARNING: --insecure" in log.read_text()
        assert not (data / "credentials").exists()
        async with connection(url) as anyone:
            reply = await anyone.request(
                command_subject(RegisterShelter),
                shelter(CRISIS).model_dump_json().encode(),
                timeout=5,
            )
            accepted = json.loads(reply.data)["data"]
            assert accepted["status"] == "accepted", accepted
            # The agency's own subject works too (what HubClient sends on).
            identified = await HubClient(anyone).send(screening(CRISIS))
            assert identified["status"] == "accepted", identified
            no_canary(accepted, identified)
