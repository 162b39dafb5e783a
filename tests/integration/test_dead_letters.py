"""A consumer that cannot apply an event retries with backoff, dead-letters it with the reason,
keeps going, and `nrm dlq retry` re-drives it once the cause is fixed."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from nats.aio.client import Client

from contracts.envelope import Envelope
from contracts.operations import DeadLetterRecorded
from contracts.subjects import EVENT_PREFIX, EVENTS_STREAM, dlq_subject
from contracts.vocabulary import Service
from services.bootstrap import bootstrap
from services.client import HubClient
from services.runtime.keyvalue_jetstream import JetStreamKeyValue
from services.runtime.service_table import consumer
from services.runtime.settings import Settings
from services.runtime.topology import REFERRAL_DEADLINES_BUCKET
from tests.integration.hub_reads import events, screening, stream_messages, wait_until

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
        return [d for d in json.loads(result.stdout) if d["consumer"] == "referral-feed"]

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


async def test_a_retired_durables_dead_letter_is_redriven_by_the_one_that_took_it_over(
    hub: Settings, client: HubClient, nc: Client
) -> None:
    """An earlier release had the deadline projection on a durable of its own
    (`referral-deadlines`); its dead letters, still in NRM_DLQ after the upgrade, are
    re-driven by `referral-feed`, which does that work now."""
    js = nc.jetstream()
    reply = await client.send(screening(needs=frozenset({Service.LEGAL_AID})))

    async def requested() -> list[int]:
        return [
            m.seq
            for m in await stream_messages(js, EVENTS_STREAM)
            if m.subject.endswith(".referral.requested")
            and json.loads(m.data or b"")["data"]["case_id"] == reply["aggregate_id"]
        ]

    [sequence] = await wait_until(requested)
    deadlines = await JetStreamKeyValue.open(nc, REFERRAL_DEADLINES_BUCKET)
    [key] = await wait_until(deadlines.keys)
    await deadlines.delete(key)  # as if the earlier release never projected it
    [retired] = consumer("referral-feed").takes_over
    letter = DeadLetterRecorded(
        consumer=retired,
        stream=EVENTS_STREAM,
        stream_sequence=sequence,
        subject=f"{EVENT_PREFIX}.referral.{key}.referral.requested",
        attempts=hub.max_deliver,
        reason="KeyValueError: the earlier release's failure",
    )
    recorded = Envelope(
        id=str(uuid.uuid4()),
        source="urn:test",
        type=DeadLetterRecorded.TYPE,
        time=dt.datetime.now(dt.UTC),
        data=letter.model_dump(mode="json"),
    )
    ack = await js.publish(dlq_subject(retired), recorded.to_bytes())

    fixed = await _nrm(hub, "dlq", "retry", str(ack.seq))
    assert fixed.returncode == 0, fixed.stderr
    assert await deadlines.keys() == [key]  # projected again
    unresolved = await _nrm(hub, "dlq", "list")
    assert "no unresolved dead letters" in unresolved.stdout
