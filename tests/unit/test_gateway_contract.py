"""The gateway's pure parts: its OpenAPI document (valid 3.1, one path per command, the routes
the app serves), the agency a client certificate names, and how hub replies become HTTP."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from contracts.commands import ALL_COMMANDS
from contracts.openapi import (
    FEED_PATH,
    FEED_STREAM_PATH,
    INTAKE_KEY_PATH,
    STATUS_OF_CODE,
    command_path,
    openapi,
)
from contracts.replies import ErrorCode
from services.agencies.registry import load_registry
from services.gateway.agencies import AgencyConnections
from services.gateway.app import Gateway, Problem, create_app, hub_answer
from services.gateway.identity import agency_of
from services.gateway.server import tls_files
from services.runtime.settings import Settings, SettingsError

REGISTRY = load_registry(None, "kg")
CANARY = "Aigul Canarykyzy"


def certificate(*emails: str) -> dict[str, Any]:
    """As ssl.SSLSocket.getpeercert() gives a verified certificate."""
    return {
        "subject": ((("commonName", "whoever"),),),
        "subjectAltName": tuple(("email", e) for e in emails),
    }


def test_the_document_is_valid_openapi_3_1() -> None:
    document = openapi()
    assert document["openapi"] == "3.1.0"
    validate(document)  # raises on any error
    committed = Path(__file__).resolve().parents[2] / "contracts" / "schema" / "openapi.json"
    validate(json.loads(committed.read_text("utf-8")))


def test_every_command_is_a_post_with_its_model_and_an_idempotency_key() -> None:
    paths = openapi()["paths"]
    for command in ALL_COMMANDS:
        operation = paths[command_path(command)]["post"]
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": f"#/components/schemas/{command.__name__}"}
        assert [p["name"] for p in operation["parameters"]] == ["Idempotency-Key"]
        assert "application/problem+json" in operation["responses"]["422"]["content"]
    assert {INTAKE_KEY_PATH, FEED_PATH, FEED_STREAM_PATH} <= set(paths)
    assert openapi()["components"]["securitySchemes"]["agencyCertificate"]["type"] == "mutualTLS"


def app() -> Any:
    settings = Settings(nats_url="nats://127.0.0.1:1")
    return create_app(Gateway(REGISTRY, AgencyConnections(settings, "nats://127.0.0.1:1")))


def test_the_app_serves_exactly_the_documented_paths() -> None:
    served = {route.path for route in app().routes} - {"/openapi.json"}
    assert served == set(openapi()["paths"])


async def test_without_a_certificate_naming_an_agency_everything_is_refused() -> None:
    """Plain HTTP (no TLS, so no peer certificate): 403 before anything else is read."""
    transport = httpx.ASGITransport(app=app())
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        body = {"command_id": str(uuid.uuid4()), "agency_id": "kg-mia-osh", "x": CANARY}
        response = await client.post(
            "/v1/commands/screening.submit",
            json=body,
            headers={"Idempotency-Key": body["command_id"]},
        )
        assert response.status_code == 403
        assert response.headers["content-type"].startswith("application/problem+json")
        assert CANARY not in response.text
        assert (await client.get("/v1/feed")).status_code == 403
        missing = await client.get(f"/v1/nothing/{CANARY}")
        assert missing.status_code == 404 and CANARY not in missing.text


@pytest.mark.parametrize(
    ("peer", "agency"),
    [
        (certificate("kg-mia-osh@kg.nrm-hub"), "kg-mia-osh"),
        (certificate("kg-mia-osh@kz.nrm-hub"), None),  # another country's name
        (certificate("referral@kg.nrm-hub"), None),  # a service, not an agency
        (certificate("admin@kg.nrm-hub"), None),
        (certificate("kg-unknown@kg.nrm-hub"), None),
        (certificate("kg-mia-osh@kg.nrm-hub", "kg-mia-bishkek@kg.nrm-hub"), None),
        (certificate(), None),
        (None, None),
        ({"subjectAltName": (("DNS", "kg-mia-osh@kg.nrm-hub"),)}, None),
    ],
)
def test_the_agency_is_the_certificates_email_name(
    peer: dict[str, Any] | None, agency: str | None
) -> None:
    assert agency_of(peer, REGISTRY) == agency


def envelope(data: dict[str, Any]) -> bytes:
    return json.dumps({"specversion": "1.0", "type": "command.x", "data": data}).encode()


def test_an_answer_is_passed_on_as_it_came() -> None:
    raw = envelope({"status": "accepted", "command_id": str(uuid.uuid4())})
    response = hub_answer(raw)
    assert response.status_code == 200 and response.body == raw
    assert response.media_type == "application/cloudevents+json"


@pytest.mark.parametrize("code", list(ErrorCode))
def test_a_rejection_becomes_problem_details_with_the_hubs_errors(code: ErrorCode) -> None:
    command_id = str(uuid.uuid4())
    rejected = {
        "status": "rejected",
        "command_id": command_id,
        "errors": [{"field": "region", "code": str(code), "reason": "not a region"}],
    }
    with pytest.raises(Problem) as refused:
        hub_answer(envelope(rejected))
    details = refused.value.details
    assert details.status == STATUS_OF_CODE[code]
    assert details.type == f"urn:nrm-hub:problem:{code}"
    assert details.command_id == command_id
    assert [(e.field, e.code) for e in details.errors] == [("region", code)]


def test_the_gateway_serves_mutual_tls_only() -> None:
    with pytest.raises(SettingsError, match="NRM_GATEWAY_TLS_CERT"):
        tls_files(Settings())


def test_nrm_run_gateway_without_its_tls_files_stops_naming_them(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from services.cli import main

    for name in ("NRM_GATEWAY_TLS_CERT", "NRM_GATEWAY_TLS_KEY", "NRM_GATEWAY_TLS_CA"):
        monkeypatch.delenv(name, raising=False)
    assert main(["run", "gateway", "--nats-url", "nats://127.0.0.1:1"]) == 2
    assert "NRM_GATEWAY_TLS_CERT" in capsys.readouterr().err


def test_gateway_settings_come_from_the_environment(tmp_path: Path) -> None:
    for name in ("cert.pem", "key.pem", "ca.pem"):
        (tmp_path / name).write_text("x")
    settings = Settings.from_env(
        {
            "NRM_GATEWAY_HOST": "0.0.0.0",
            "NRM_GATEWAY_PORT": "9443",
            "NRM_GATEWAY_TLS_CERT": str(tmp_path / "cert.pem"),
            "NRM_GATEWAY_TLS_KEY": str(tmp_path / "key.pem"),
            "NRM_GATEWAY_TLS_CA": str(tmp_path / "ca.pem"),
        }
    )
    assert (settings.gateway_host, settings.gateway_port) == ("0.0.0.0", 9443)
    assert tls_files(settings)[2] == str(tmp_path / "ca.pem")
    with pytest.raises(SettingsError, match="NRM_GATEWAY_TLS_CA"):
        Settings.from_env({"NRM_GATEWAY_TLS_CA": str(tmp_path / "missing.pem")})
    with pytest.raises(SettingsError, match="NRM_GATEWAY_HOST"):
        Settings.from_env({"NRM_GATEWAY_HOST": "anywhere"})


@pytest.mark.parametrize(
    "raw",
    [b"not json", b"[]", b'{"data": []}', b'{"data": {"status": "rejected", "errors": []}}'],
)
def test_an_unreadable_reply_is_a_bad_gateway(raw: bytes) -> None:
    with pytest.raises(Problem) as refused:
        hub_answer(raw)
    assert refused.value.details.status == 502
