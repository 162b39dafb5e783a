"""A 3-node JetStream cluster with R3 streams: killing the event stream's leader, then a
follower, under load loses no acknowledged command and doubles nothing; the audit log has
no gaps."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from pathlib import Path

import nats
import pytest
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import ClusterInfo

from contracts.commands import RegisterShelter
from contracts.subjects import AUDIT_STREAM, EVENTS_STREAM
from contracts.vocabulary import Service, ShelterCategory
from services.bootstrap import bootstrap, running_services
from services.client import HubClient
from services.runtime.case_keys import create_hub_keys
from services.runtime.embedded import EmbeddedCluster
from services.runtime.settings import Settings, nats_servers
from tests.integration.hub_reads import (
    SHELTER_AND_LEGAL_AID,
    events,
    outcomes_by_case,
    screening,
    wait_until,
)

pytestmark = pytest.mark.integration
CASES = 30


async def _cluster_info(js: JetStreamContext) -> ClusterInfo | None:
    """The event stream's leader and replicas, once a leader is elected."""
    try:
        info = (await js.stream_info(EVENTS_STREAM)).cluster
    except (NatsError, TimeoutError):
        return None
    return info if info is not None and info.leader and info.replicas else None


async def test_leader_and_follower_killed_under_load(tmp_path: Path, load_factor: int) -> None:
    cases = CASES * load_factor
    cluster = EmbeddedCluster(tmp_path / "cluster")
    url = await cluster.start()
    settings = Settings(
        nats_url=url,
        data_dir=tmp_path,
        replicas=3,
        max_deliver=10,
        retry_backoff_seconds=(0.2, 0.5, 1.0),
    )
    create_hub_keys(settings)
    try:
        await bootstrap(url, settings)
        async with running_services(url, settings):
            nc = await nats.connect(
                nats_servers(url), max_reconnect_attempts=-1, reconnect_time_wait=0.2
            )
            js = nc.jetstream()
            assert (await js.stream_info(EVENTS_STREAM)).config.num_replicas == 3
            client = HubClient(nc, timeout=3.0)
            await client.send_until_answered(
                RegisterShelter(
                    command_id=uuid.uuid4(),
                    agency_id="kg-ngo-osh-crisis-centre",
                    capacity={ShelterCategory.WOMEN: cases},
                )
            )
            acked: list[str] = []

            async def load() -> None:
                for _ in range(cases):
                    reply = await client.send_until_answered(
                        screening(needs=frozenset({Service.SHELTER, Service.LEGAL_AID})), within=60
                    )
                    assert reply["status"] == "accepted"
                    acked.append(reply["aggregate_id"])
                    await asyncio.sleep(0.05)

            running = asyncio.create_task(load())
            for role in ("leader", "follower"):
                await asyncio.sleep(0.7)
                info = await wait_until(lambda: _cluster_info(js), timeout=30)
                name = info.leader if role == "leader" else (info.replicas or [])[0].name
                victim = cluster.node(name)
                victim.kill()
                await asyncio.sleep(1.0)
                await victim.start()
            await running

            async def settled() -> dict[str, Counter[str]]:
                all_events = await events(js)
                per_case = outcomes_by_case(all_events, acked)
                audit = await js.stream_info(AUDIT_STREAM)
                no_gaps = audit.state.messages == audit.state.last_seq - audit.state.first_seq + 1
                done = (
                    all(c == SHELTER_AND_LEGAL_AID for c in per_case.values())
                    and no_gaps
                    and audit.state.messages == len(all_events)
                )
                return per_case if done else {}

            await wait_until(settled, timeout=60, interval=0.5)
            assert len(acked) == len(set(acked)) == cases
            await nc.close()
    finally:
        cluster.stop()
