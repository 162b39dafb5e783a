"""The operators' replays on `nrm up`'s default (nkey users, per-user permissions): `nrm
audit replay` and `nrm stats` connect as `admin`, who may create the ordered consumer they
read NRM_EVENTS with, and find what the hub holds."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import nats
import pytest

from contracts.subjects import EVENTS_STREAM
from services.client import HubClient
from services.runtime.connection import connect_options
from services.runtime.settings import Settings
from tests.integration.hub_reads import audited_events, screening, stream_messages, wait_until

pytestmark = pytest.mark.integration
NRM = [sys.executable, "-m", "services.cli"]
AGENCY = "kg-ngo-osh-crisis-centre"


async def nrm(hub: Settings, *args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NRM_")}
    assert hub.nats_url is not None and hub.nats_credentials is not None
    env.update(
        PYTHONPATH=str(Path(__file__).parents[2]),
        NRM_NATS_URL=hub.nats_url,
        NRM_DATA_DIR=str(hub.data_dir),
        NRM_NATS_CREDENTIALS=str(hub.nats_credentials),
    )
    proc = await asyncio.create_subprocess_exec(
        *NRM, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=90)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_audit_replay_and_stats_run_as_admin_on_a_secured_hub(secured_hub: Settings) -> None:
    hub = secured_hub
    assert hub.nats_url is not None
    agency = await nats.connect(hub.nats_url, **connect_options(hub, AGENCY))
    admin = await nats.connect(hub.nats_url, **connect_options(hub, "admin"))
    try:
        client = HubClient(agency, timeout=30)
        for age in (34, 41):  # adults, no needs: no referral follows
            reply = await client.send(screening(AGENCY, age=age, needs=frozenset()))
            assert reply["status"] == "accepted", reply
        js = admin.jetstream()

        async def all_audited() -> bool:
            events = len(await stream_messages(js, EVENTS_STREAM))
            return events == 4 and await audited_events(js) == events

        await wait_until(all_audited, timeout=30)
        events = len(await stream_messages(js, EVENTS_STREAM))
    finally:
        await agency.close()
        await admin.close()

    code, out, err = await nrm(hub, "audit", "replay", "--json")
    assert code == 0, (out, err)
    replayed = json.loads(out)
    assert replayed["ok"] and replayed["summary"]["events"] == events
    assert replayed["summary"]["cases"] == 2 and replayed["summary"]["unreadable events"] == 0

    code, out, err = await nrm(hub, "stats", "--by", "region", "--format", "json")
    assert code == 0, (out, err)
    stats = json.loads(out)
    assert stats["events_read"] == events
    table = stats["tables"][0]
    assert sum(e["count"] for e in table["entries"] if e["region"] != "(all)") == 2
