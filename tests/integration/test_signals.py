"""Health, readiness, metrics and `nrm status` against a real nats-server."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from contracts.commands import RegisterShelter
from contracts.subjects import CHECKPOINTS_STREAM
from services.bootstrap import bootstrap, start_service
from services.client import HubClient
from services.runtime.embedded import free_port
from services.runtime.health import answer, health_server
from services.runtime.service_table import SERVICES
from services.runtime.settings import Settings
from services.runtime.status import hub_status
from tests.integration.hub_reads import CANARIES, screening, wait_until
from tests.integration.processes import stop, wait_consuming

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def start_process(name: str, url: str, data_dir: Path) -> subprocess.Popen[str]:
    """`nrm run NAME` as its own process, stderr (the JSON log) captured."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NRM_")}
    env.update(PYTHONPATH=str(ROOT), NRM_NATS_URL=url, NRM_DATA_DIR=str(data_dir))
    return subprocess.Popen(
        [sys.executable, "-m", "services.cli", "run", name],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


async def http_get(port: int, path: str) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    raw = (await reader.read()).decode()
    writer.close()
    head, _, body = raw.partition("\r\n\r\n")
    return int(head.split()[1]), body


def sample(exposition: str, name: str, labels: dict[str, str]) -> float:
    """One sample's value in a Prometheus exposition (0 when absent)."""
    for family in text_string_to_metric_families(exposition):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return 0.0


async def test_probes_and_metrics_follow_the_service(settings: Settings, client: HubClient) -> None:
    assert settings.nats_url is not None
    await bootstrap(settings.nats_url, settings)
    probed = settings.model_copy(update={"health_port": free_port()})
    identifier = await start_service("identifier", settings.nats_url, probed)
    shelter = await start_service("shelter", settings.nats_url, probed)
    referral = await start_service("referral", settings.nats_url, settings)  # no probes
    stopped = False
    try:
        async with health_server(probed, [identifier.host, shelter.host]) as port:
            assert await http_get(port, "/livez") == (200, "ok\n")
            status, body = await http_get(port, "/readyz")
            assert status == 200
            assert json.loads(body) == {"identifier": True, "shelter": True}

            status, before = await http_get(port, "/metrics")
            assert status == 200
            await client.send(
                RegisterShelter(
                    command_id=uuid.uuid4(),
                    agency_id="kg-ngo-osh-crisis-centre",
                    capacity={"women": 1},
                )
            )
            reply = await client.send(screening())
            await client.send_raw("nrm.cmd.screening.submit", b"not json")
            _, metrics = await http_get(port, "/metrics")
            # Counters live for the whole process (other tests may have moved them): deltas.
            for outcome in ("accepted", "rejected"):
                labels = {"service": "identifier", "command": "screening.submit"}
                labels["outcome"] = outcome
                grew = sample(metrics, "nrm_commands_total", labels) - sample(
                    before, "nrm_commands_total", labels
                )
                assert grew == 1, outcome
            timed = {"service": "shelter", "kind": "command", "name": "shelter.register"}
            assert (
                sample(metrics, "nrm_handler_seconds_count", timed)
                - sample(before, "nrm_handler_seconds_count", timed)
                == 1
            )

            handled = {"service": "shelter", "consumer": "shelter-on-referral"}
            handled["outcome"] = "handled"

            async def shelter_took_events() -> bool:
                _, text = await http_get(port, "/metrics")
                counted = sample(text, "nrm_events_total", handled)
                return counted > sample(before, "nrm_events_total", handled)

            await wait_until(shelter_took_events)
            _, metrics = await http_get(port, "/metrics")
            # Labels are names only: no case id, no personal data.
            assert reply["aggregate_id"] not in metrics
            for canary in CANARIES:
                assert canary not in metrics
            assert (await http_get(port, "/nowhere"))[0] == 404

            await shelter.stop()
            stopped = True
            status, body = await http_get(port, "/readyz")
            assert status == 503
            assert json.loads(body) == {"identifier": True, "shelter": False}
    finally:
        await identifier.stop()
        await referral.stop()
        if not stopped:
            await shelter.stop()


async def test_status_shows_services_lag_dead_letters_and_the_last_audit_entry(
    hub: Settings, client: HubClient
) -> None:
    assert hub.nats_url is not None
    await client.send(screening())
    js = client.connection.jetstream()

    async def signed() -> bool:  # the hub signs every checkpoint_interval_seconds
        return (await js.stream_info(CHECKPOINTS_STREAM)).state.messages > 0

    await wait_until(signed)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        "status",
        "--nats-url",
        hub.nats_url,
        "--json",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    status = json.loads(out)
    assert {i["service"] for i in status["instances"]} == set(SERVICES)
    assert all(i["ready"] for i in status["instances"])
    consumers = {c["consumer"]: c for c in status["consumers"]}
    assert "audit-all" in consumers and consumers["audit-all"]["lag"] is not None
    assert status["dead_letters"] == {}
    assert status["last_audit"]["sequence"] >= 1
    assert status["last_audit"]["subject"].startswith("nrm.audit.")
    assert status["last_checkpoint"]["size"] >= 1 and status["last_checkpoint"]["time"]
    for canary in CANARIES:
        assert canary not in out.decode()


async def test_status_in_words(hub: Settings) -> None:
    import nats

    assert hub.nats_url is not None
    nc = await nats.connect(hub.nats_url)
    try:
        text = (await hub_status(nc)).render()
    finally:
        await nc.close()
    assert "identifier" in text and "ready" in text
    assert "referral-on-identification" in text
    assert "LAST AUDIT ENTRY" in text


async def test_a_service_logs_json_with_correlation_ids_and_no_personal_data(
    settings: Settings, client: HubClient, tmp_path: Path
) -> None:
    assert settings.nats_url is not None
    await bootstrap(settings.nats_url, settings)
    proc = start_process("identifier", settings.nats_url, tmp_path)
    try:
        await wait_consuming(proc)
        command = screening()
        assert (await client.send(command))["status"] == "accepted"
    finally:
        stop([proc])
    assert proc.stderr is not None
    lines = [json.loads(line) for line in proc.stderr.read().splitlines() if line.strip()]
    accepted = [e for e in lines if e["event"] == "command.accepted"]
    assert accepted and accepted[0]["correlation_id"] == str(command.command_id)
    assert all("level" in e and "timestamp" in e for e in lines)
    text = json.dumps(lines)
    for canary in CANARIES:
        assert canary not in text


async def test_the_audit_writer_reports_its_log_size_and_last_signature(
    hub: Settings, client: HubClient
) -> None:
    """For an operator's alert: a log that grows while no checkpoint is signed."""
    started = time.time()
    await client.send(screening())

    def metrics() -> str:
        return answer("/metrics", []).split(b"\r\n\r\n", 1)[1].decode()

    async def signed_after_a_leaf() -> bool:
        text = metrics()
        return (
            sample(text, "nrm_audit_leaves", {}) >= 1
            and sample(text, "nrm_audit_checkpoint_size", {}) >= 1
            and sample(text, "nrm_audit_checkpoint_signed_timestamp_seconds", {}) >= started
        )

    await wait_until(signed_after_a_leaf)
