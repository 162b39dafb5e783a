"""A consumer that cannot apply an event retries with backoff, dead-letters it with the reason,
keeps going, and `nrm dlq retry` re-drives it once the cause is fixed."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from nats.aio.client import Client

from contracts.vocabulary import Service
from services.bootstrap import bootstrap
from services.client import HubClient
from services.runtime.settings import Settings
from services.runtime.topology import REFERRAL_DEADLINES_BUCKET
from tests.integration.hub_reads import events, screening, wait_until

pytestmark = pytest.mark.integration


async def _nrm(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NRM_")}
    env.update(PYTHONPATH=str(Path(__file__).parents[2]), NRM_NATS_URL=settings.nats_url or "")
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


async def test_dead_letter_listed_then_redriven_after_the_fix(
    hub: Settings, client: HubClient, nc: Client
) -> None:
    js = nc.jetstream()
    await js.delete_key_value(REFERRAL_DEADLINES_BUCKET)  # an operator's mistake
    reply = await client.send(screening(needs=frozenset({Service.LEGAL_AID})))

    async def listed() -> list[dict[str, object]]:
        result = await _nrm(hub, "dlq", "list", "--json")
        assert result.returncode == 0, result.stderr
        return [d for d in json.loads(result.stdout) if d["consumer"] == "referral-deadlines"]

    [letter] = await wait_until(listed, timeout=20)
    assert letter["attempts"] == hub.max_deliver and letter["resolved"] is False
    assert letter["subject"].endswith("referral.requested")
    assert letter["reason"]

    # The other consumers kept going: the referral was still made.
    async def referred() -> bool:
        return any(
            e.type == "referral.requested" and e.data["case_id"] == reply["aggregate_id"]
            for e in await events(js)
        )

    await wait_until(referred)

    still_broken = await _nrm(hub, "dlq", "retry", str(letter["id"]))
    assert still_broken.returncode == 1 and "still failing" in still_broken.stderr

    assert hub.nats_url is not None
    await bootstrap(hub.nats_url, hub)  # the fix: the bucket is back
    fixed = await _nrm(hub, "dlq", "retry", str(letter["id"]))
    assert fixed.returncode == 0, fixed.stderr
    deadlines = await js.key_value(REFERRAL_DEADLINES_BUCKET)
    assert len(await deadlines.keys()) == 1

    unresolved = await _nrm(hub, "dlq", "list")
    assert "no unresolved dead letters" in unresolved.stdout
    everything = await _nrm(hub, "dlq", "list", "--all")
    assert "resolved" in everything.stdout
    unknown = await _nrm(hub, "dlq", "retry", "9999")
    assert unknown.returncode == 2
