"""Victim-status attestations on a real, secured hub (`nrm up`'s nkey users), end to end
through the command line: issued with consent, verified by a fresh process that has only the
hub's key file and status list (no NATS, no hub data), checked online, revoked, refused
without consent or for a case not identified, audited; and nothing about the person in the
credential, its QR code, the command line's output or the hub's logs."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sys
import uuid
from pathlib import Path

import nats
import pytest

from contracts.attestation import (
    Attestation,
    HubSigningKey,
    StatusList,
    Verdict,
    issuer_for,
    status_list_uri,
)
from contracts.commands import Consent, PersonalData, ScreeningInterview
from contracts.vocabulary import DataPurpose
from services.client import HubClient
from services.runtime.connection import connect_options
from services.runtime.settings import Settings
from tests.integration.hub_reads import CANARIES, CANARY_NAME, CANARY_PHONE, screening

pytestmark = pytest.mark.integration
NRM = [sys.executable, "-m", "services.cli"]
OWNER = "kg-health-osh"
OTHER = "kg-ngo-osh-crisis-centre"
BORDER = "kg-border-batken"
EXPECTED_AUDIT = {"attestation.issued", "attestation.revoked", "attestation.checked"}
CANARY_DOCUMENT = "AC 5519 0042"
WITH_ATTESTATION = Consent(purposes=frozenset({DataPurpose.ASSISTANCE, DataPurpose.ATTESTATION}))


def hub_env(hub: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NRM_")}
    env["PYTHONPATH"] = str(Path(__file__).parents[2])
    assert hub.nats_url is not None and hub.nats_credentials is not None
    env.update(
        NRM_NATS_URL=hub.nats_url,
        NRM_DATA_DIR=str(hub.data_dir),
        NRM_NATS_CREDENTIALS=str(hub.nats_credentials),
    )
    return env


def offline_env(empty: Path) -> dict[str, str]:
    """A fresh process that knows no hub: no URL, no credentials, an empty data dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NRM_")}
    env["PYTHONPATH"] = str(Path(__file__).parents[2])
    env["NRM_DATA_DIR"] = str(empty)
    return env


async def nrm(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *NRM,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    raw_out, raw_err = await asyncio.wait_for(proc.communicate(), timeout=90)
    out, err = raw_out.decode(), raw_err.decode()
    for canary in (*CANARIES, CANARY_DOCUMENT, "55190042"):
        assert canary not in out and canary not in err, args
    assert proc.returncode is not None
    return proc.returncode, out, err


def interview(consent: Consent, **kwargs: object) -> ScreeningInterview:
    case = screening(OWNER, consent=consent, **kwargs)  # type: ignore[arg-type]
    data = PersonalData(full_name=CANARY_NAME, phone=CANARY_PHONE, document_number=CANARY_DOCUMENT)
    return case.model_copy(update={"personal_data": data})


async def test_an_attestation_issued_with_consent_verifies_offline_until_revoked(
    secured_hub: Settings, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    hub = secured_hub
    assert hub.nats_url is not None
    agency = await nats.connect(hub.nats_url, **connect_options(hub, OWNER))
    try:
        client = HubClient(agency, timeout=30)
        cases = {}
        for name, screened in (
            ("consented", interview(WITH_ATTESTATION)),
            ("assistance_only", interview(Consent())),
            ("not_identified", interview(WITH_ATTESTATION, means=frozenset())),
        ):
            reply = await client.send(screened)
            assert reply["status"] == "accepted", reply
            cases[name] = reply["aggregate_id"]
    finally:
        await agency.close()

    env = hub_env(hub)
    credential_file, qr_file = tmp_path / "credential.txt", tmp_path / "credential.svg"
    code, out, err = await nrm(
        env, "attest", "issue", cases["consented"], "--agency", OWNER,
        "--valid-days", "90", "--out", str(credential_file), "--qr", str(qr_file),
    )  # fmt: skip
    assert code == 0, err
    attestation_id = out.split()[1]
    credential = credential_file.read_text().strip()
    assert qr_file.read_bytes().startswith(b"<?xml") or b"<svg" in qr_file.read_bytes()

    # Refused: another agency, no consent covering `attestation`, a case not identified.
    for case, agency_id, reason in (
        (cases["consented"], OTHER, "only the case owner or the coordinating body"),
        (cases["assistance_only"], OWNER, "does not cover the purpose attestation"),
        (cases["not_identified"], OWNER, "not an identified or presumed victim"),
    ):
        code, _, err = await nrm(env, "attest", "issue", case, "--agency", agency_id)
        assert code == 1 and reason in err, err

    key_file, status_file = tmp_path / "kg-hub.json", tmp_path / "status.jwt"
    assert (await nrm(env, "attest", "key", "--out", str(key_file)))[0] == 0
    assert (await nrm(env, "attest", "status-list", "--out", str(status_file)))[0] == 0

    # A fresh process with only the key and the status list: no URL, no hub data.
    officer = tmp_path / "officer"
    officer.mkdir()
    offline = offline_env(officer)
    check = ["attest", "verify", "--key", str(key_file), "--status-list", str(status_file)]
    code, out, _ = await nrm(offline, *check, "--file", str(credential_file))
    assert code == Verdict.VALID and out.startswith("VALID: identified victim"), out
    code, out, _ = await nrm(offline, *check, credential, "--document-number", "ac55190042")
    assert code == Verdict.VALID and "matches the document number given" in out
    assert (await nrm(offline, *check, credential, "--document-number", "AC1"))[0] == (
        Verdict.BINDING_MISMATCH
    )
    altered = credential[:150] + ("x" if credential[150] != "x" else "y") + credential[151:]
    assert (await nrm(offline, *check, altered))[0] == Verdict.TAMPERED
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(days=91)).isoformat()
    assert (await nrm(offline, *check, credential, "--at", later))[0] == Verdict.EXPIRED
    # A Kazakh hub's credential checked with the Kyrgyz key: another issuer.
    kazakh = HubSigningKey(issuer_for("kz"), os.urandom(32))
    now = dt.datetime.now(dt.UTC)
    kz_credential = Attestation(
        uuid.uuid4(), kazakh.issuer, "KZ", "identified", now, now + dt.timedelta(days=30), 0,
        status_list_uri("kz", "list-1"), None,
    ).sign(kazakh)  # fmt: skip
    assert (await nrm(offline, *check, kz_credential))[0] == Verdict.WRONG_ISSUER
    kz_key, kz_status = tmp_path / "kz-hub.json", tmp_path / "kz-status.jwt"
    kz_key.write_text(kazakh.public.to_json())
    kz_list = StatusList.of(1, frozenset()).sign(kazakh, status_list_uri("kz", "list-1"), now)
    kz_status.write_text(kz_list)
    kz_check = ["attest", "verify", "--key", str(kz_key), "--status-list", str(kz_status)]
    assert (await nrm(offline, *kz_check, kz_credential))[0] == Verdict.VALID

    # Online, any agency may ask the hub; the check is recorded with who asked.
    code, out, err = await nrm(env, "attest", "check", attestation_id, "--agency", BORDER)
    assert code == Verdict.VALID and "VALID" in out, err

    # Revoked by the owner: a status list fetched since says so.
    code, _, err = await nrm(
        env, "attest", "revoke", attestation_id, "--agency", OWNER,
        "--reason", "not_a_trafficking_case",
    )  # fmt: skip
    assert code == 0, err
    assert (await nrm(env, "attest", "status-list", "--out", str(status_file)))[0] == 0
    code, out, _ = await nrm(offline, *check, "--file", str(credential_file))
    assert code == Verdict.REVOKED and "revoked" in out
    assert (await nrm(env, "attest", "check", attestation_id, "--agency", BORDER))[0] == (
        Verdict.REVOKED
    )

    # Issuance and revocation are in the audit log, under the case, by the agency that acted.
    audited: list[dict[str, object]] = []
    for _ in range(50):
        code, out, err = await nrm(env, "audit", "access", "--case", cases["consented"], "--json")
        assert code == 0, err
        audited = json.loads(out)
        if {e["action"] for e in audited} >= EXPECTED_AUDIT:
            break
        await asyncio.sleep(0.2)
    actions = {e["action"]: e for e in audited}
    assert set(actions) >= EXPECTED_AUDIT, audited
    assert actions["attestation.issued"]["actor"]["agency"] == OWNER  # type: ignore[index]
    assert actions["attestation.checked"]["actor"]["agency"] == BORDER  # type: ignore[index]

    # Nothing about the person in the credential, its QR code or the hub's logs.
    for text in (credential, qr_file.read_text(), key_file.read_text(), status_file.read_text()):
        for canary in (*CANARIES, CANARY_DOCUMENT, "55190042"):
            assert canary not in text
    logs = capfd.readouterr()
    for canary in (*CANARIES, CANARY_DOCUMENT, "55190042"):
        assert canary not in logs.out and canary not in logs.err
