"""kill -9 of any service in the middle of a stream of cases, then a restart: every case ends
in the same state as without the crash, with no lost or doubled referral or admission."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import nats
import pytest

from contracts.commands import RegisterShelter
from contracts.vocabulary import Service, ShelterCategory
from services.bootstrap import bootstrap
from services.client import HubClient
from services.runtime.case_keys import create_hub_keys
from services.runtime.embedded import EmbeddedNats
from services.runtime.service_table import SERVICES
from services.runtime.settings import Settings
from tests.integration.hub_reads import (
    SHELTER_AND_LEGAL_AID as EXPECTED,
)
from tests.integration.hub_reads import (
    cases_settled,
    screening,
)
from tests.integration.processes import start_service, stop, wait_consuming

pytestmark = pytest.mark.integration
CASES = 18


@pytest.mark.parametrize("victim", SERVICES)
async def test_kill_9_mid_stream_then_restart(
    tmp_path: Path, load_factor: int, victim: str
) -> None:
    total = CASES * load_factor
    server = EmbeddedNats(tmp_path / "nats", sync_always=True)
    url = await server.start()
    create_hub_keys(Settings(data_dir=tmp_path))
    await bootstrap(url, Settings(nats_url=url, data_dir=tmp_path))
    procs = {name: start_service(name, url, tmp_path) for name in SERVICES}
    try:
        for proc in procs.values():
            await wait_consuming(proc)
        nc = await nats.connect(url)
        client = HubClient(nc, timeout=2.0)
        await client.send(
            RegisterShelter(
                command_id=uuid.uuid4(),
                agency_id="kg-ngo-osh-crisis-centre",
                capacity={ShelterCategory.WOMEN: total},
            )
        )
        cases: list[str] = []
        restarted: asyncio.Task[None] | None = None

        async def restart_later() -> None:
            await asyncio.sleep(1.0)  # work piles up meanwhile (or waits, for the identifier)
            procs[victim] = start_service(victim, url, tmp_path)
            await wait_consuming(procs[victim])

        for index in range(total):
            if index == total // 3:
                procs[victim].kill()  # SIGKILL: no clean-up, no acks
                procs[victim].wait()
                restarted = asyncio.create_task(restart_later())
            reply = await client.send_until_answered(
                screening(needs=frozenset({Service.SHELTER, Service.LEGAL_AID}))
            )
            assert reply["status"] == "accepted"
            cases.append(reply["aggregate_id"])
        assert restarted is not None
        await restarted
        await cases_settled(nc.jetstream(), cases, EXPECTED, f"killing {victim}", timeout=45)
        await nc.close()
    finally:
        stop(list(procs.values()))
        server.stop()
