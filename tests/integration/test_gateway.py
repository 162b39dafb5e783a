"""The HTTPS gateway against a real secured hub (`nrm up`'s nkey users): agencies with client
certificates from deploy/scripts/dev-certs.py, the gateway on a free loopback port with mutual
TLS, signed in to NATS as each agency with that agency's own seed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from contracts.commands import AcceptReferral, RegisterAgencyKey, RequestAccess, SubmitScreening
from contracts.public_key_sealing import (
    generate_private_key,
    intake_info,
    open_sealed_to,
    public_key_b64,
    public_key_from_b64,
    release_info,
    seal_to,
)
from contracts.replies import AccessReleased
from contracts.sealed import b64decode, open_with_field_key
from contracts.vocabulary import DataPurpose, PersonalField, Service
from services.bootstrap import bootstrap, start_service
from services.case.ids import referral_id_for
from services.gateway.server import RunningGateway, start_gateway
from services.runtime.case_keys import create_hub_keys
from services.runtime.embedded import free_port
from services.runtime.logging import configure_logging
from services.runtime.service_table import SERVICES
from services.runtime.settings import Settings
from tests.integration.hub_reads import CANARIES, CANARY_NAME, screening, wait_until
from tests.integration.secured_hub import SecuredCluster

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
DEV_CERTS = ROOT / "deploy" / "scripts" / "dev-certs.py"
IDENTIFIER = "kg-mia-osh"  # identifies in Osh, provides nothing
LEGAL_CLINIC = "kg-ngo-osh-legal-clinic"  # legal aid in Osh; may not identify
OTHER_POLICE = "kg-mia-bishkek"
COORDINATING_BODY = "kg-coordinating-body"
CRISIS_CENTRE = "kg-ngo-osh-crisis-centre"  # identifies, and assists the people it identifies
NEEDS = frozenset({Service.LEGAL_AID, Service.PSYCHOLOGICAL})


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, the gateway's server certificate and the agencies' client certificates."""
    out = tmp_path_factory.mktemp("gateway-certs")
    users = ",".join(
        [IDENTIFIER, LEGAL_CLINIC, OTHER_POLICE, COORDINATING_BODY, CRISIS_CENTRE, "referral"]
    )
    subprocess.run(
        [sys.executable, str(DEV_CERTS), str(out), "--nodes", "gateway", "--users", users],
        check=True,
        capture_output=True,
    )
    return out


@pytest.fixture
async def gateway(secured_hub: Settings, certs: Path) -> AsyncIterator[RunningGateway]:
    configure_logging("INFO")
    assert secured_hub.nats_url is not None
    settings = secured_hub.model_copy(
        update={
            "gateway_port": free_port(),
            "gateway_tls_cert": certs / "nodes" / "gateway.pem",
            "gateway_tls_key": certs / "nodes" / "gateway-key.pem",
            "gateway_tls_ca": certs / "ca.pem",
        }
    )
    running = await start_gateway(settings, secured_hub.nats_url, poll_seconds=0.1)
    try:
        yield running
    finally:
        await running.stop()


def client_for(gateway: RunningGateway, certs: Path, user: str) -> httpx.AsyncClient:
    context = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    context.load_cert_chain(certs / "users" / f"{user}.pem", certs / "users" / f"{user}-key.pem")
    return httpx.AsyncClient(
        base_url=f"https://127.0.0.1:{gateway.port}", verify=context, timeout=15
    )


async def post(client: httpx.AsyncClient, name: str, body: dict[str, Any]) -> httpx.Response:
    return await client.post(
        f"/v1/commands/{name}",
        content=json.dumps(body).encode(),
        headers={"Idempotency-Key": str(body["command_id"]), "Content-Type": "application/json"},
    )


async def sealed_screening(client: httpx.AsyncClient, agency_id: str) -> dict[str, Any]:
    """A screening with its personal data sealed to the intake key fetched over HTTPS, as an
    agency system without NATS would do it (services/client.py HubClient.sealed)."""
    interview = screening(agency_id, needs=NEEDS)
    key = await client.get("/v1/intake-key")
    assert key.status_code == 200, key.text
    info = intake_info(str(interview.command_id), interview.agency_id)
    clear = interview.personal_data.model_dump_json(exclude_none=True).encode()
    sealed = seal_to(public_key_from_b64(key.json()["public_key"]), info, clear)
    facts = interview.model_dump(mode="json", exclude={"personal_data"})
    command = SubmitScreening.model_validate({**facts, "personal_data": sealed})
    body: dict[str, Any] = json.loads(command.model_dump_json())
    return body


def assert_problem(response: httpx.Response, status: int, field: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == status and problem["type"].startswith("urn:nrm-hub:problem:")
    assert problem["title"] and problem["detail"]
    if field is not None:
        assert field in [e["field"] for e in problem["errors"]], problem
    for canary in CANARIES:
        assert canary not in response.text


async def feed(client: httpx.AsyncClient, after: int = 0, limit: int = 100) -> dict[str, Any]:
    response = await client.get("/v1/feed", params={"after": after, "limit": limit})
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


async def submitted_case(identifier: httpx.AsyncClient, agency_id: str = IDENTIFIER) -> uuid.UUID:
    body = await sealed_screening(identifier, agency_id)
    reply = await post(identifier, "screening.submit", body)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("application/cloudevents+json")
    envelope = reply.json()
    assert envelope["type"] == "command.accepted" and envelope["data"]["status"] == "accepted"
    return uuid.UUID(envelope["data"]["aggregate_id"])


async def test_sealed_screening_retry_and_feed_pages(
    gateway: RunningGateway, certs: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    async with client_for(gateway, certs, IDENTIFIER) as identifier:
        body = await sealed_screening(identifier, IDENTIFIER)
        first = await post(identifier, "screening.submit", body)
        assert first.status_code == 200, first.text
        accepted = first.json()["data"]
        assert accepted["status"] == "accepted" and accepted["duplicate"] is False
        # The same POST again (same Idempotency-Key): nothing new, the same answer.
        again = await post(identifier, "screening.submit", body)
        assert again.status_code == 200, again.text
        repeated = again.json()["data"]
        assert repeated["duplicate"] is True
        assert repeated["aggregate_id"] == accepted["aggregate_id"]
        assert repeated["event_ids"] == accepted["event_ids"]
        case_id = accepted["aggregate_id"]

        async def referrals() -> list[dict[str, Any]]:
            events = (await feed(identifier))["events"]
            found = [
                e
                for e in events
                if e["event"]["type"] == "referral.requested"
                and e["event"]["data"]["case_id"] == case_id
            ]
            return found if len(found) == 2 else []

        await wait_until(referrals, timeout=30)
        everything = (await feed(identifier))["events"]
        cursors = [e["cursor"] for e in everything]
        assert cursors == sorted(set(cursors)) and len(cursors) >= 2
        # Page by page from a cursor: the same messages, each once, in order.
        paged: list[int] = []
        after = 0
        while True:
            page = await feed(identifier, after=after, limit=1)
            if not page["events"]:
                assert page["next_cursor"] == after
                break
            paged += [e["cursor"] for e in page["events"]]
            after = page["next_cursor"]
        assert paged == cursors
        assert (await feed(identifier, after=cursors[-1]))["events"] == []
    logs = capfd.readouterr()
    assert '"gateway.request"' in logs.err
    for canary in CANARIES:
        assert canary not in logs.out and canary not in logs.err


async def sse_events(
    client: httpx.AsyncClient, headers: dict[str, str], until: Any, timeout: float = 30
) -> list[tuple[int, str, dict[str, Any]]]:
    """Read the feed stream until `until(events)` holds, then disconnect."""
    found: list[tuple[int, str, dict[str, Any]]] = []

    async def read() -> None:
        async with client.stream("GET", "/v1/feed/stream", headers=headers) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            event: dict[str, str] = {}
            async for line in response.aiter_lines():
                if line == "":
                    if "id" in event:
                        found.append((int(event["id"]), event["event"], json.loads(event["data"])))
                        if until(found):
                            return
                    event = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(":")
                    event[name] = value.removeprefix(" ")

    await asyncio.wait_for(read(), timeout)
    return found


async def test_feed_stream_resumes_after_a_disconnect_without_loss_or_repeat(
    gateway: RunningGateway, certs: Path
) -> None:
    async with (
        client_for(gateway, certs, IDENTIFIER) as identifier,
        client_for(gateway, certs, LEGAL_CLINIC) as clinic,
    ):
        case_id = await submitted_case(identifier)
        # First connection: one event, then the client goes away.
        before = await sse_events(identifier, {}, lambda found: len(found) >= 1)
        last_id = before[-1][0]
        # While it is away, the legal clinic accepts its referral: a new event on the feed.
        accept = AcceptReferral(
            command_id=uuid.uuid4(),
            agency_id=LEGAL_CLINIC,
            referral_id=referral_id_for(case_id, Service.LEGAL_AID),
        )
        reply = await post(clinic, "referral.accept", json.loads(accept.model_dump_json()))
        assert reply.status_code == 200, reply.text

        def accepted(found: list[tuple[int, str, dict[str, Any]]]) -> bool:
            return any(
                kind == "referral.accepted" and event["data"]["case_id"] == str(case_id)
                for _, kind, event in found
            )

        after = await sse_events(identifier, {"Last-Event-ID": str(last_id)}, accepted)
        ids = [i for i, _, _ in before + after]
        assert ids == sorted(set(ids)), "an event was repeated or out of order"
        # Nothing lost: exactly the feed's messages up to the last one seen.
        everything = [e["cursor"] for e in (await feed(identifier, limit=256))["events"]]
        assert ids == [c for c in everything if c <= ids[-1]]


async def test_refusals_are_problem_details_and_echo_nothing(
    gateway: RunningGateway, certs: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    async with (
        client_for(gateway, certs, IDENTIFIER) as identifier,
        client_for(gateway, certs, LEGAL_CLINIC) as clinic,
        client_for(gateway, certs, "referral") as service,
    ):
        # A command the agency's role may not send: a legal clinic does not identify.
        body = await sealed_screening(identifier, LEGAL_CLINIC)
        assert_problem(await post(clinic, "screening.submit", body), 403)
        assert_problem(await clinic.get("/v1/intake-key"), 403)
        # A body naming another agency than the certificate.
        other = await sealed_screening(identifier, OTHER_POLICE)
        assert_problem(await post(identifier, "screening.submit", other), 403, "agency_id")
        # A certificate of the hub's CA that names no agency (a service's).
        assert_problem(await service.get("/v1/feed"), 403)

        good = await sealed_screening(identifier, IDENTIFIER)
        # A bad field, holding personal data: named, never echoed (the hub's own validation).
        bad = {**good, "region": CANARY_NAME}
        assert_problem(await post(identifier, "screening.submit", bad), 422, "region")
        unknown = {**good, CANARY_NAME: "x"}
        assert_problem(await post(identifier, "screening.submit", unknown), 422, "(other)")
        # Not JSON, or too deep: the hub's limits.
        broken = await identifier.post(
            "/v1/commands/screening.submit",
            content=b'{"full_name": "' + CANARY_NAME.encode(),
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        assert_problem(broken, 400, "")
        deep = await identifier.post(
            "/v1/commands/screening.submit",
            content=b"[" * 40 + b"]" * 40,
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        assert_problem(deep, 400, "")
        # The Idempotency-Key header: missing, or not the body's command_id.
        missing = await identifier.post("/v1/commands/screening.submit", json=good)
        assert_problem(missing, 400, "Idempotency-Key")
        mismatch = await identifier.post(
            "/v1/commands/screening.submit",
            json=good,
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        assert_problem(mismatch, 400, "Idempotency-Key")
        # An unknown id the hub cannot find: its own code, as a status.
        accept = AcceptReferral(
            command_id=uuid.uuid4(), agency_id=LEGAL_CLINIC, referral_id=uuid.uuid4()
        )
        unknown_referral = await post(
            clinic, "referral.accept", json.loads(accept.model_dump_json())
        )
        assert unknown_referral.status_code in (404, 409), unknown_referral.text
        assert unknown_referral.json()["command_id"] == str(accept.command_id)
        # Query parameters: named, not echoed.
        bad_page = await identifier.get("/v1/feed", params={"after": CANARY_NAME})
        assert_problem(bad_page, 400, "after")
        assert_problem(await identifier.get(f"/v1/commands/{CANARY_NAME}"), 404)
        # Larger than the hub takes: refused before it is all read.
        huge = await identifier.post(
            "/v1/commands/screening.submit",
            content=b'{"narrative": "' + CANARY_NAME.encode() * 20_000 + b'"}',
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        assert_problem(huge, 413)
        # The document the gateway serves is the committed one.
        served = (await identifier.get("/openapi.json")).json()
        committed = json.loads((ROOT / "contracts" / "schema" / "openapi.json").read_text())
        assert served == committed
    # Every refusal was logged (route, agency, status), none of what was sent.
    logs = capfd.readouterr()
    assert '"status": 403' in logs.err and '"route": "(other)"' in logs.err
    for canary in CANARIES:
        assert canary not in logs.out and canary not in logs.err


async def test_no_client_certificate_no_connection(gateway: RunningGateway, certs: Path) -> None:
    context = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    async with httpx.AsyncClient(
        base_url=f"https://127.0.0.1:{gateway.port}", verify=context, timeout=5
    ) as anonymous:
        with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
            await anonymous.get("/v1/feed")


async def test_on_a_certificate_secured_cluster_the_agencys_own_certificate_signs_in(
    tmp_path: Path,
) -> None:
    """deploy/nats/ (TLS users, no nkeys): the gateway signs in to NATS with each agency's
    own client certificate (NRM_GATEWAY_AGENCY_CERTS) and the servers log no violation."""
    secured = SecuredCluster(tmp_path / "hub")
    secured.start()
    services = []
    try:
        await bootstrap(secured.url, secured.settings("admin", tmp_path))
        shared_kek = tmp_path / "kek"
        for name in SERVICES:
            settings = secured.settings(
                name, tmp_path / name, retry_backoff_seconds=(0.05, 0.1), kek_file=shared_kek
            )
            create_hub_keys(settings)
            services.append(await start_service(name, secured.url, settings))
        certs = secured.certs
        gateway_settings = Settings(
            nats_url=secured.url,
            data_dir=tmp_path / "gateway",
            nats_tls_ca=certs / "ca.pem",
            gateway_agency_certs=certs / "users",
            gateway_port=free_port(),
            gateway_tls_cert=certs / "nodes" / "nats-1.pem",  # any server certificate
            gateway_tls_key=certs / "nodes" / "nats-1-key.pem",
            gateway_tls_ca=certs / "ca.pem",
        )
        gateway = await start_gateway(gateway_settings, secured.url, poll_seconds=0.1)
        try:
            async with (
                client_for(gateway, certs, IDENTIFIER) as identifier,
                client_for(gateway, certs, LEGAL_CLINIC) as clinic,
            ):
                case_id = await submitted_case(identifier)

                async def referral() -> list[dict[str, Any]]:
                    return [
                        e
                        for e in (await feed(clinic))["events"]
                        if e["event"]["type"] == "referral.requested"
                        and e["event"]["data"]["case_id"] == str(case_id)
                    ]

                await wait_until(referral, timeout=30)
                body = await sealed_screening(identifier, LEGAL_CLINIC)
                assert_problem(await post(clinic, "screening.submit", body), 403)
        finally:
            await gateway.stop()
    finally:
        for service in services:
            await service.stop()
        secured.stop()
    assert secured.violations() == ""


async def test_nrm_run_gateway_serves_until_sigterm(secured_hub: Settings, certs: Path) -> None:
    """The process a container runs: it prints where it listens, answers, and stops cleanly
    on SIGTERM (the CLI's signal handling, not uvicorn's)."""
    assert secured_hub.nats_url is not None and secured_hub.nats_credentials is not None
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NRM_")}
    env.update(
        PYTHONPATH=str(ROOT),
        NRM_NATS_URL=secured_hub.nats_url,
        NRM_NATS_CREDENTIALS=str(secured_hub.nats_credentials),
        NRM_DATA_DIR=str(secured_hub.data_dir),
        NRM_GATEWAY_PORT=str(port),
        NRM_GATEWAY_TLS_CERT=str(certs / "nodes" / "gateway.pem"),
        NRM_GATEWAY_TLS_KEY=str(certs / "nodes" / "gateway-key.pem"),
        NRM_GATEWAY_TLS_CA=str(certs / "ca.pem"),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "run", "gateway"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
        assert line.startswith(f"NRM gateway listening on https://127.0.0.1:{port}"), line
        context = ssl.create_default_context(cafile=str(certs / "ca.pem"))
        user = certs / "users" / IDENTIFIER
        context.load_cert_chain(f"{user}.pem", f"{user}-key.pem")
        async with httpx.AsyncClient(verify=context, timeout=15) as client:
            key = await client.get(f"https://127.0.0.1:{port}/v1/intake-key")
        assert key.status_code == 200 and key.json()["public_key"]
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 30)
    assert code == 0


async def test_access_request_and_release_over_https(gateway: RunningGateway, certs: Path) -> None:
    """The coordinating body registers the identifying agency's key, the agency asks for its
    case's personal data and opens the release with its own private key: the release passes
    through the gateway still sealed, and only the agency can open it."""
    private_key = generate_private_key()
    async with (
        client_for(gateway, certs, CRISIS_CENTRE) as centre,
        client_for(gateway, certs, COORDINATING_BODY) as coordinator,
        client_for(gateway, certs, IDENTIFIER) as police,
    ):
        case_id = await submitted_case(centre, CRISIS_CENTRE)
        register = RegisterAgencyKey(
            command_id=uuid.uuid4(),
            agency_id=COORDINATING_BODY,
            for_agency=CRISIS_CENTRE,
            public_key=public_key_b64(private_key.public_key()),
        )
        registered = await post(
            coordinator, "agency.register_key", json.loads(register.model_dump_json())
        )
        assert registered.status_code == 200, registered.text
        request = RequestAccess(
            command_id=uuid.uuid4(),
            agency_id=CRISIS_CENTRE,
            case_id=case_id,
            purpose=DataPurpose.ASSISTANCE,
        )
        reply = await post(centre, "access.request", json.loads(request.model_dump_json()))
        assert reply.status_code == 200, reply.text
        assert reply.json()["type"] == "access.released"
        assert CANARY_NAME not in reply.text  # sealed: the gateway never sees it in clear
        released = AccessReleased.model_validate(reply.json()["data"])
        info = release_info(str(case_id), str(request.command_id), CRISIS_CENTRE)
        keys = json.loads(open_sealed_to(private_key, info, released.sealed_field_keys))
        name = PersonalField.FULL_NAME.value
        opened = open_with_field_key(
            b64decode(keys["field_keys"][name], name),
            str(case_id),
            name,
            released.sealed_fields[name],
        )
        assert opened == CANARY_NAME
        # A refusal is a recorded decision, not an error: the hub's access.denied, 200.
        other = RequestAccess(
            command_id=uuid.uuid4(),
            agency_id=IDENTIFIER,
            case_id=case_id,
            purpose=DataPurpose.ASSISTANCE,
        )
        denied = await post(police, "access.request", json.loads(other.model_dump_json()))
        assert denied.status_code == 200, denied.text
        assert denied.json()["type"] == "access.denied"
