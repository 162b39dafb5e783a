"""deploy/README.md's compose bring-up, followed literally, with processes instead of
containers (no container engine here): certificates from `deploy/scripts/dev-certs.py`,
secrets from `nrm keys init`, a 3-node TLS cluster running `deploy/nats/hub.conf` with the
generated permissions, then the bootstrap and every service started through the image's
entrypoint with exactly the command, environment and mounted files compose.yaml gives them
(container paths mapped onto the test's directories). A case then flows end to end, with
each agency signed in by its own certificate."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
import yaml

from contracts.commands import RegisterShelter
from contracts.vocabulary import ShelterCategory
from services.client import HubClient
from services.runtime.connection import connect_options
from services.runtime.embedded import free_port
from services.runtime.settings import Settings, nats_servers
from tests.integration.hub_reads import events, screening, wait_until
from tests.integration.secured_hub import DEPLOY, SecuredCluster

pytestmark = pytest.mark.integration

ENTRYPOINT = DEPLOY / "entrypoint.sh"
SHELTER = "kg-ngo-osh-crisis-centre"  # identifies, runs the women's shelter in Osh


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def _hub_services(compose: dict[str, Any]) -> list[str]:
    """The hub's own processes: every compose service that runs `nrm run ...`."""
    return [
        name
        for name, service in compose["services"].items()
        if service.get("command", [""])[0] == "run"
    ]


def _environment(
    service: dict[str, Any], cluster: SecuredCluster, secrets: Path, gateway_port: int = 0
) -> dict[str, str]:
    """The service's compose environment, its container paths mapped onto this test's
    files; the health port moved to a free one (compose gives every container 8080)."""
    mapped = {}
    for name, value in service.get("environment", {}).items():
        text = str(value).replace("/run/nrm/certs", str(cluster.certs))
        mapped[name] = text.replace("/run/secrets", str(secrets))
    mapped["NRM_NATS_URL"] = cluster.url  # compose names the nodes; here they are on loopback
    mapped["NRM_HEALTH_PORT"] = "0"
    if "NRM_GATEWAY_PORT" in mapped:  # published as 8443 by compose; here a free loopback one
        mapped["NRM_GATEWAY_HOST"] = "127.0.0.1"
        mapped["NRM_GATEWAY_PORT"] = str(gateway_port)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NRM_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["NRM_DATA_DIR"] = str(secrets.parent / "empty")  # no fallback keys anywhere
    return {**env, **mapped}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[SecuredCluster]:
    hub = SecuredCluster(tmp_path / "cluster")  # dev-certs.py, as the README's first step
    hub.start()
    try:
        yield hub
    finally:
        hub.stop()


async def test_the_compose_bring_up_runs_a_case_end_to_end(
    cluster: SecuredCluster, tmp_path: Path
) -> None:
    compose = _compose()
    secrets = tmp_path / "secrets"
    made = subprocess.run(
        ["sh", str(ENTRYPOINT), "keys", "init", "--out", str(secrets)],
        env=_environment({}, cluster, secrets),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    bootstrap = compose["services"]["bootstrap"]
    booted = subprocess.run(
        ["sh", str(ENTRYPOINT), *bootstrap["command"]],
        env=_environment(bootstrap, cluster, secrets),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert booted.returncode == 0, booted.stderr[-2000:]

    started: dict[str, subprocess.Popen[str]] = {}
    gateway_port = free_port()
    try:
        for name in _hub_services(compose):
            service = compose["services"][name]
            started[name] = subprocess.Popen(
                ["sh", str(ENTRYPOINT), *service["command"]],
                env=_environment(service, cluster, secrets, gateway_port),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        assert set(started) == {"identifier", "referral", "shelter", "audit", "custody", "gateway"}

        def agency(agency_id: str) -> Settings:
            cert, key = cluster.user_cert(agency_id)
            return Settings(
                nats_url=cluster.url,
                data_dir=tmp_path,
                nats_tls_ca=cluster.certs / "ca.pem",
                nats_tls_cert=cert,
                nats_tls_key=key,
            )

        servers = nats_servers(cluster.url)
        nc = await nats.connect(servers, **connect_options(agency(SHELTER), SHELTER))
        admin = await nats.connect(
            servers, **connect_options(cluster.settings("admin", tmp_path), "admin")
        )
        try:
            client = HubClient(nc, timeout=10)
            # The shelter registers over HTTPS, through the gateway as compose runs it,
            # signed in with its own certificate; the screening goes over NATS.
            register = RegisterShelter(
                command_id=uuid.uuid4(), agency_id=SHELTER, capacity={ShelterCategory.WOMEN: 2}
            )
            registered = await _through_the_gateway(cluster, gateway_port, register)
            assert registered["type"] == "command.accepted", registered
            assert registered["data"]["aggregate_id"] == SHELTER, registered
            submitted = await client.send_until_answered(screening(SHELTER), within=60)
            assert submitted["status"] == "accepted", submitted
            case_id = submitted["aggregate_id"]

            async def admitted() -> bool:
                return any(
                    e.type == "shelter.admitted" and e.data.get("case_id") == case_id
                    for e in await events(admin.jetstream())
                )

            await wait_until(admitted, timeout=60)
        finally:
            await nc.close()
            await admin.close()
        for name, proc in started.items():
            assert proc.poll() is None, (name, proc.communicate()[1][-2000:])
    finally:
        for proc in started.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = {name: proc.wait(timeout=30) for name, proc in started.items()}
    assert codes == {name: 0 for name in started}
    assert not cluster.violations(), cluster.violations()


async def _through_the_gateway(
    cluster: SecuredCluster, port: int, command: RegisterShelter
) -> dict[str, Any]:
    """`command` posted to the gateway with the shelter's client certificate, until the
    gateway listens and the hub has answered it (the same command id: applied once)."""
    context = ssl.create_default_context(cafile=str(cluster.certs / "ca.pem"))
    context.load_cert_chain(*cluster.user_cert(SHELTER))
    body = command.model_dump_json().encode()
    headers = {"Idempotency-Key": str(command.command_id), "Content-Type": "application/json"}
    async with httpx.AsyncClient(
        base_url=f"https://127.0.0.1:{port}", verify=context, timeout=15
    ) as client:

        async def answered() -> dict[str, Any] | None:
            try:
                reply = await client.post(
                    f"/v1/commands/{command.NAME}", content=body, headers=headers
                )
            except httpx.TransportError:  # not listening yet
                return None
            if reply.status_code in (503, 504):  # the hub not ready yet: retry, same key
                return None
            assert reply.status_code == 200, reply.text
            answer: dict[str, Any] = reply.json()
            return answer

        found: dict[str, Any] = await wait_until(answered, timeout=60, interval=0.5)
        return found


def test_compose_mounts_only_what_the_bring_up_creates() -> None:
    """Every file a hub service is pointed at is a certificate (dev-certs.py) or a secret
    (`nrm keys init`): nothing the README does not make."""
    compose = _compose()
    for name in _hub_services(compose):
        for value in compose["services"][name].get("environment", {}).values():
            text = str(value)
            if text.startswith("/run/"):
                assert text.startswith(("/run/nrm/certs/", "/run/secrets/")), (name, text)
