"""NATS down at start-up or mid-run: services wait and reconnect, nothing acked is lost."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
import pytest

from contracts.subjects import EVENTS_STREAM
from services.bootstrap import bootstrap
from services.client import HubClient
from services.runtime.case_keys import create_hub_keys
from services.runtime.embedded import EmbeddedNats, free_port
from services.runtime.settings import Settings
from tests.integration.hub_reads import screening, wait_until
from tests.integration.processes import start_service, stop, wait_consuming

pytestmark = pytest.mark.integration


async def test_a_service_started_before_nats_and_bootstrap_waits_then_serves(
    tmp_path: Path,
) -> None:
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    create_hub_keys(Settings(data_dir=tmp_path))
    proc = start_service("identifier", url, tmp_path)
    server = EmbeddedNats(tmp_path / "nats", port=port)
    try:
        await asyncio.sleep(1.5)
        assert proc.poll() is None, "the service crashed instead of waiting for NATS"
        await server.start()
        await asyncio.sleep(1.0)
        assert proc.poll() is None, "the service crashed instead of waiting for the bootstrap"
        await bootstrap(url, Settings(nats_url=url, data_dir=tmp_path))
        await wait_consuming(proc)
        nc = await nats.connect(url)
        reply = await HubClient(nc).send(screening())
        await nc.close()
        assert reply["status"] == "accepted"
    finally:
        stop([proc])
        server.stop()


async def test_nats_restart_mid_run_loses_no_acknowledged_command(tmp_path: Path) -> None:
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    create_hub_keys(Settings(data_dir=tmp_path))
    server = EmbeddedNats(tmp_path / "nats", port=port, sync_always=True)
    await server.start()
    await bootstrap(url, Settings(nats_url=url, data_dir=tmp_path))
    services = [start_service(name, url, tmp_path) for name in ("identifier", "referral", "audit")]
    try:
        for proc in services:
            await wait_consuming(proc)
        nc = await nats.connect(url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
        client = HubClient(nc, timeout=2.0)
        acked: set[str] = set()
        for round_ in range(3):
            for _ in range(5):
                reply = await client.send_until_answered(screening(needs=frozenset()))
                assert reply["status"] == "accepted"
                acked.add(reply["aggregate_id"])
            if round_ < 2:
                server.kill()  # a crash, not a clean stop
                await server.start()
        js = nc.jetstream()

        async def all_recorded() -> bool:
            seen: list[str] = []
            info = await js.stream_info(EVENTS_STREAM)
            for seq in range(1, info.state.last_seq + 1):
                msg = await js.get_msg(EVENTS_STREAM, seq)
                if msg.subject.endswith("victim.identified"):
                    seen.append(msg.subject.split(".")[3])
            return len(seen) == len(acked) and set(seen) == acked  # all, and each once

        await wait_until(all_recorded, timeout=30)
        await nc.close()
    finally:
        stop(services)
        server.stop()
