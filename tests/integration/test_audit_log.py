"""The audit log end to end on a real nats-server: every event and every rejected command
becomes a leaf, `nrm audit export` + `verify` accept the untouched bundle and name the leaf a
tamper touched, proofs verify offline, `access` lists grants and refusals, `replay` finds no
difference, and a restarted (or second) audit service continues the log without gap,
duplicate or fork."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client

from contracts.envelope import wrap_event
from contracts.events import AccessGranted, AccessRefused
from contracts.subjects import AUDIT_STREAM, EVENTS_STREAM
from contracts.vocabulary import AccessRefusal, AgencyKind, DataPurpose, PersonalField
from services.audit.cli import EXIT_UNREADABLE
from services.audit.service import AuditLogWriter
from services.bootstrap import bootstrap, build_service, running_services, start_service
from services.client import HubClient
from services.runtime.eventstore_jetstream import JetStreamEventStore
from services.runtime.messaging import Taken
from services.runtime.settings import Settings
from tests.integration.hub_reads import (
    CANARIES,
    CANARY_NAME,
    audit_leaves,
    audited_events,
    screening,
    stream_messages,
    wait_until,
)

pytestmark = pytest.mark.integration
NRM = [sys.executable, "-m", "services.cli"]


async def nrm(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a thread: the hub's services run in this event loop and must answer."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NRM_")}
    env["PYTHONPATH"] = str(Path(__file__).parents[2])
    env["NRM_DATA_DIR"] = str(settings.data_dir)
    return await asyncio.to_thread(
        subprocess.run, [*NRM, *args], capture_output=True, text=True, env=env, timeout=120
    )


async def record_access(nc: Client, case_id: str) -> None:
    """What key custody writes: one grant and one refusal on the case's access log."""
    store = JetStreamEventStore(nc, nc.jetstream())
    common: dict[str, Any] = {
        "case_id": uuid.UUID(case_id),
        "fields": (PersonalField.FULL_NAME,),
    }
    granted = AccessGranted(
        **common,
        request_id=uuid.uuid4(),
        agency_id="kg-ngo-osh-crisis-centre",
        agency_kind=AgencyKind.NGO,
        purpose=DataPurpose.ASSISTANCE,
        basis="consent",
        key_id="0123456789abcdef",
    )
    refused = AccessRefused(
        **common,
        request_id=uuid.uuid4(),
        agency_id="kg-prosecutor-general",
        agency_kind=AgencyKind.PROSECUTION,
        purpose=DataPurpose.ASSISTANCE,
        reason=list(AccessRefusal)[-1],
    )
    last = (await store.load("access", case_id)).last_sequence
    for event in (granted, refused):
        envelope = wrap_event(
            event,
            event_id=uuid.uuid4(),
            source="urn:nrm-hub:kg:custody",
            time=dt.datetime.now(dt.UTC),
            correlation_id=None,
            causation_id=None,
        )
        last = await store.append("access", case_id, last, [envelope])


async def settled(js: Any, rejections: int) -> bool:
    events = len(await stream_messages(js, EVENTS_STREAM))
    leaves = await audit_leaves(js)
    rejected = sum(1 for leaf in leaves if leaf["action"] == "command.rejected")
    return await audited_events(js) == events and rejected == rejections


async def test_export_verify_tamper_prove_access_and_replay(
    hub: Settings, client: HubClient, nc: Client, tmp_path: Path
) -> None:
    js = nc.jetstream()
    # No needs: no referrals follow, so "every event audited" means the log is complete.
    reply = await client.send(screening(needs=frozenset()))
    assert reply["status"] == "accepted"
    case_id = reply["aggregate_id"]
    # A rejected command whose body carries personal data in an invented field.
    bad = {
        "command_id": str(uuid.uuid4()),
        "agency_id": "kg-ngo-osh-crisis-centre",
        "referral_id": "not-a-uuid",
        CANARY_NAME: "x",
    }
    rejected = await client.send_raw("nrm.cmd.referral.accept", json.dumps(bad).encode())
    assert rejected["data"]["status"] == "rejected"
    await record_access(nc, case_id)
    await wait_until(lambda: settled(js, 1), timeout=20)

    leaves = await audit_leaves(js)
    notice = next(leaf for leaf in leaves if leaf["action"] == "command.rejected")
    assert notice["actor"] == {
        "agency": "kg-ngo-osh-crisis-centre",
        "role": "ngo",
        "service": "urn:nrm-hub:kg:referral",
    }
    assert set(notice["detail"]["errors"]) == {"referral_id:invalid_field", "(other):invalid_field"}
    assert [leaf["index"] for leaf in leaves] == list(range(len(leaves)))

    bundle = tmp_path / "bundle"
    exported = await nrm(
        hub, "audit", "export", "--nats-url", hub.nats_url or "", "--out", str(bundle)
    )
    assert exported.returncode == 0, exported.stderr
    for path in bundle.rglob("*"):
        if path.is_file():
            assert not any(c.encode() in path.read_bytes() for c in CANARIES), path
    verified = await nrm(hub, "audit", "verify", str(bundle), "--json")
    report = json.loads(verified.stdout)
    assert verified.returncode == 0 and report["ok"] and report["leaves"] == len(leaves)
    assert report["signed_size"] == len(leaves)  # export asked for a checkpoint over all

    key = await nrm(hub, "audit", "key")
    assert key.returncode == 0 and key.stdout.startswith("nrm-hub.kg/audit+")
    (tmp_path / "trusted.vkey").write_text(key.stdout)
    pinned = await nrm(hub, "audit", "verify", str(bundle), "--key", str(tmp_path / "trusted.vkey"))
    assert pinned.returncode == 0 and pinned.stdout.startswith("OK:"), pinned.stdout
    # Keep today's checkpoint: the next export must be consistent with it.
    kept = sorted((bundle / "checkpoints").iterdir())[-1]

    tampered = tmp_path / "tampered"
    shutil.copytree(bundle, tampered)
    lines = (tampered / "leaves.jsonl").read_bytes().split(b"\n")
    lines[1] = lines[1].replace(b'"action":"', b'"action":"x', 1)
    (tampered / "leaves.jsonl").write_bytes(b"\n".join(lines))
    failed = await nrm(hub, "audit", "verify", str(tampered))
    assert failed.returncode == 1 and "INTEGRITY FAILURE: leaf 1:" in failed.stdout, failed.stdout
    missing = await nrm(hub, "audit", "verify", str(tmp_path / "nowhere"), "--json")
    assert missing.returncode == 2 and json.loads(missing.stdout)["exit_code"] == 2

    proof_file = tmp_path / "proof.json"
    proved = await nrm(hub, "audit", "prove", str(bundle), "--index", "2", "--out", str(proof_file))
    assert proved.returncode == 0, proved.stderr
    checked = await nrm(hub, "audit", "verify-proof", str(proof_file))
    assert checked.returncode == 0 and checked.stdout.startswith("OK:")

    access = await nrm(hub, "audit", "access", "--case", case_id, "--nats-url", hub.nats_url or "")
    assert access.returncode == 0
    rows = access.stdout.splitlines()[1:]
    assert len(rows) == 2
    assert (
        "kg-ngo-osh-crisis-centre" in rows[0] and "granted" in rows[0] and "assistance" in rows[0]
    )
    assert "kg-prosecutor-general" in rows[1] and "refused" in rows[1]

    replayed = await nrm(hub, "audit", "replay", "--nats-url", hub.nats_url or "")
    assert replayed.returncode == 0, replayed.stdout
    assert "no difference from the live projections" in replayed.stdout

    # Replay from the auditor's own copy of the events, checked against the leaves' hashes.
    copy = tmp_path / "with-events"
    url = hub.nats_url or ""
    exported = await nrm(
        hub, "audit", "export", "--out", str(copy), "--with-events", "--nats-url", url
    )
    assert exported.returncode == 0, exported.stderr
    from_copy = await nrm(hub, "audit", "replay", "--bundle", str(copy), "--nats-url", url)
    assert from_copy.returncode == 0, from_copy.stdout
    records = (copy / "events.jsonl").read_bytes().splitlines()
    assert not any(
        c.encode() in base64.b64decode(json.loads(r)["data"]) for r in records for c in CANARIES
    )
    first = json.loads(records[0])
    event = json.loads(base64.b64decode(first["data"]))
    event["time"] = "2020-01-01T00:00:00Z"  # an altered copy no longer matches its leaf
    first["data"] = base64.b64encode(json.dumps(event).encode()).decode()
    (copy / "events.jsonl").write_bytes(
        b"\n".join([json.dumps(first).encode(), *records[1:]]) + b"\n"
    )
    altered = await nrm(hub, "audit", "replay", "--bundle", str(copy), "--nats-url", url)
    assert altered.returncode == 1
    assert f"event {first['sequence']}: the audit leaf records another hash" in altered.stdout

    # Later: more activity, a new export, still consistent with the kept checkpoint.
    assert (await client.send(screening(needs=frozenset())))["status"] == "accepted"
    await wait_until(lambda: settled(js, 1), timeout=20)
    later = tmp_path / "later"
    exported_later = await nrm(
        hub, "audit", "export", "--out", str(later), "--nats-url", hub.nats_url or ""
    )
    assert exported_later.returncode == 0, exported_later.stderr
    since = await nrm(hub, "audit", "verify", str(later), "--since", str(kept))
    assert since.returncode == 0, since.stdout


async def loaded_writer(settings: Settings, nc: Client) -> AuditLogWriter:
    """An audit writer of its own on the test's connection, its log state loaded."""
    host, _ = build_service("audit", settings.nats_url or "", settings)
    host.runtime.connected(nc)
    writer = AuditLogWriter(host)
    await writer.load()
    return writer


async def test_a_restarted_or_second_audit_service_continues_without_gap_or_fork(
    settings: Settings, client: HubClient, nc: Client, tmp_path: Path
) -> None:
    url = settings.nats_url or ""
    js = nc.jetstream()
    await bootstrap(url, settings)
    async with running_services(url, settings, ("identifier", "referral", "shelter")):
        audit = await start_service("audit", url, settings)
        for _ in range(3):
            await client.send(screening())
        await wait_until(lambda: settled(js, 0), timeout=20)
        await audit.stop()
        for _ in range(3):  # written while no audit service runs
            await client.send(screening())
        # Two instances at once: they share the consumers and must not fork the log.
        first = await start_service("audit", url, settings)
        second = await start_service("audit", url, settings)
        try:
            for _ in range(3):
                await client.send(screening())
            await wait_until(lambda: settled(js, 0), timeout=30)
            # A redelivery after a crash between append and ack adds nothing.
            writer = await loaded_writer(settings, nc)
            before = (await js.stream_info(AUDIT_STREAM)).state.last_seq
            first_event = await js.get_msg(EVENTS_STREAM, 1)
            await writer.record(EVENTS_STREAM, 1, first_event.data or b"")
            assert (await js.stream_info(AUDIT_STREAM)).state.last_seq == before
            await asyncio.sleep(1.0)  # let a checkpoint interval pass
        finally:
            await first.stop()
            await second.stop()
    leaves = await audit_leaves(js)
    sources = [(leaf["source"]["stream"], leaf["source"]["sequence"]) for leaf in leaves]
    assert len(sources) == len(set(sources)), "an event was audited twice"
    assert sorted(seq for _, seq in sources) == list(range(1, len(leaves) + 1))
    bundle = tmp_path / "bundle"
    exported = await nrm(settings, "audit", "export", "--out", str(bundle), "--nats-url", url)
    assert exported.returncode == 0, exported.stderr
    verified = await nrm(settings, "audit", "verify", str(bundle))
    assert verified.returncode == 0, verified.stdout


async def test_the_writer_asks_whether_a_message_has_a_leaf_only_when_it_is_old(
    settings: Settings, client: HubClient, nc: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A message stored within half the duplicate window is deduplicated by the audit
    stream itself (the leaf's message id): no question before the append. An older one
    (a redelivery after an outage) is asked about first. Neither gets a second leaf."""
    url = settings.nats_url or ""
    js = nc.jetstream()
    await bootstrap(url, settings)
    async with running_services(url, settings, ("identifier", "audit")):
        await client.send(screening())
        await wait_until(lambda: settled(js, 0), timeout=20)
    writer = await loaded_writer(settings, nc)
    asked: list[str] = []
    ask = writer._audited

    async def counted(subject: str) -> bool:
        asked.append(subject)
        return await ask(subject)

    monkeypatch.setattr(writer, "_audited", counted)
    before = (await js.stream_info(AUDIT_STREAM)).state.last_seq
    first_event = await js.get_msg(EVENTS_STREAM, 1)
    now = dt.datetime.now(dt.UTC)
    await writer.record(EVENTS_STREAM, 1, first_event.data or b"", stored_at=now)
    assert asked == [] and (await js.stream_info(AUDIT_STREAM)).state.last_seq == before
    long_ago = now - dt.timedelta(minutes=10)
    await writer.record(EVENTS_STREAM, 1, first_event.data or b"", stored_at=long_ago)
    assert len(asked) == 1 and (await js.stream_info(AUDIT_STREAM)).state.last_seq == before
    assert writer.state.size == before


async def test_leaves_written_ahead_together_never_land_after_another_writers_append(
    settings: Settings, client: HubClient, nc: Client, tmp_path: Path
) -> None:
    """`write_ahead` publishes a batch's leaves together. When another writer appended
    first, the batch's first leaf is refused and so is every later one: with the expected
    sequence alone, the second would be stored after the other writer's leaf, linked to a
    leaf that is not there. Caught up, the same batch goes in one go, and `record` then
    finds each leaf written. The log verifies."""
    url = settings.nats_url or ""
    js = nc.jetstream()
    await bootstrap(url, settings)
    async with running_services(url, settings, ("identifier",)):  # events, no audit writer
        for _ in range(2):
            assert (await client.send(screening()))["status"] == "accepted"
    events = (await js.stream_info(EVENTS_STREAM)).state.last_seq
    assert events >= 4
    taking = await js.pull_subscribe(">", stream=EVENTS_STREAM)
    batch = [Taken(msg) for msg in await taking.fetch(events, timeout=5)]
    await taking.unsubscribe()
    assert [taken.stream_sequence for taken in batch] == list(range(1, events + 1))
    behind, other = await loaded_writer(settings, nc), await loaded_writer(settings, nc)
    await other.record(EVENTS_STREAM, 1, batch[0].data)  # appended first, by another writer

    await behind.write_ahead(EVENTS_STREAM, batch[1:])
    assert (await js.stream_info(AUDIT_STREAM)).state.last_seq == 1, "a leaf landed after it"
    assert behind.state.size == 1 and not behind.written_ahead  # caught up, wrote nothing

    await behind.write_ahead(EVENTS_STREAM, batch[1:])
    assert (await js.stream_info(AUDIT_STREAM)).state.last_seq == events
    written = {(EVENTS_STREAM, sequence) for sequence in range(2, events + 1)}
    assert behind.written_ahead == written
    for taken in batch[1:]:
        await behind.record(EVENTS_STREAM, taken.stream_sequence, taken.data, taken.stored_at)
    assert (await js.stream_info(AUDIT_STREAM)).state.last_seq == events
    assert not behind.written_ahead

    leaves = await audit_leaves(js)
    assert [leaf["source"]["sequence"] for leaf in leaves] == list(range(1, events + 1))
    bundle = tmp_path / "bundle"
    exported = await nrm(settings, "audit", "export", "--out", str(bundle), "--nats-url", url)
    assert exported.returncode == 0, exported.stderr
    verified = await nrm(settings, "audit", "verify", str(bundle))
    assert verified.returncode == 0, verified.stdout


async def test_replay_of_a_hub_never_bootstrapped_says_so_without_a_traceback(
    nats_url: str, tmp_path: Path
) -> None:
    """The live replay reads NRM_EVENTS and the deadline bucket with the replay reader; a
    read that fails (here: no stream) is the CLI's clear error, not a traceback."""
    settings = Settings(data_dir=tmp_path)
    done = await nrm(settings, "audit", "replay", "--nats-url", nats_url)
    assert done.returncode == EXIT_UNREADABLE
    assert "cannot read the hub: NRM_EVENTS: no such stream" in done.stderr
    assert "Traceback" not in done.stderr
