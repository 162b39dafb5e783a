"""The attestation credential and status list as an offline verifier reads them
(contracts/attestation.py): a round trip, every way a check fails with its own verdict (the
exit code of `nrm attest verify`), the status list's bits and compression, the document
binding, and that nothing about the person is in the credential or its QR code."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import uuid
import zlib
from pathlib import Path

import pytest
import segno

from contracts.attestation import (
    MIN_LIST_SIZE,
    STATUS_LIST_VALIDITY,
    Attestation,
    Binding,
    HubPublicKey,
    HubSigningKey,
    StatusList,
    Verdict,
    issuer_for,
    normalise_document_number,
    read_signing_key,
    status_list_uri,
    verify,
)
from services.cli import main

NOW = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
URI = status_list_uri("kg", "list-1")
DOCUMENT = "AN 4418207"
FAST = 1_000  # binding iterations in tests: the format carries them, the hub uses 600 000


def hub(country: str = "kg") -> HubSigningKey:
    return HubSigningKey(issuer_for(country), os.urandom(32))


def attestation(
    key: HubSigningKey, *, index: int = 3, bound: bool = True, days: int = 365
) -> Attestation:
    attestation_id = uuid.uuid4()
    binding = Binding.of(key.salt_for(attestation_id), DOCUMENT, FAST) if bound else None
    return Attestation(
        attestation_id=attestation_id,
        issuer=key.issuer,
        country=key.issuer.rsplit(":", 1)[1].upper(),
        victim_status="identified",
        issued_at=NOW,
        expires_at=NOW + dt.timedelta(days=days),
        status_index=index,
        status_uri=status_list_uri(key.issuer.rsplit(":", 1)[1], "list-1"),
        binding=binding,
    )


def status(key: HubSigningKey, revoked: frozenset[int] = frozenset(), at: dt.datetime = NOW) -> str:
    uri = status_list_uri(key.issuer.rsplit(":", 1)[1], "list-1")
    return StatusList.of(10, revoked).sign(key, uri, at)


def payload(token: str) -> dict[str, object]:
    part = token.removesuffix("~").split(".")[1]
    decoded: dict[str, object] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


def test_a_credential_round_trips_and_says_what_the_format_says() -> None:
    key = hub()
    issued = attestation(key)
    credential = issued.sign(key)
    assert credential.endswith("~") and credential.count(".") == 2  # SD-JWT, no disclosures
    header = json.loads(base64.urlsafe_b64decode(credential.split(".")[0] + "=="))
    assert header == {"alg": "Ed25519", "typ": "dc+sd-jwt", "kid": key.public.kid}
    claims = payload(credential)
    assert claims["iss"] == "urn:nrm-hub:kg" and claims["vct"] == "urn:nrm-hub:vct:victim-status:1"
    assert claims["status"] == {"status_list": {"idx": 3, "uri": URI}}
    assert set(claims) == {
        "iss", "iat", "exp", "jti", "vct", "victim_status", "nrm_country", "status", "doc_binding"
    }  # fmt: skip
    result = verify(credential, key.public, status(key), NOW + dt.timedelta(days=1))
    assert result.verdict is Verdict.VALID and result.attestation == issued


def test_the_published_key_file_round_trips_and_holds_no_private_part() -> None:
    key = hub()
    text = key.public.to_json()
    assert '"d"' not in text and key.seed.hex() not in text
    again = HubPublicKey.from_json(text)
    assert again.kid == key.public.kid and again.issuer == key.issuer
    with pytest.raises(ValueError, match="unreadable hub key"):
        HubPublicKey.from_json('{"format": "something else"}')


@pytest.mark.parametrize("position", [40, 300, 600, -10])  # header, payload, payload, signature
def test_a_changed_byte_fails_as_altered(position: int) -> None:
    key = hub()
    credential = attestation(key).sign(key)
    body = credential.removesuffix("~")
    position %= len(body)
    if body[position] == ".":
        position += 1
    swapped = "B" if body[position] != "B" else "C"
    altered = body[:position] + swapped + body[position + 1 :] + "~"
    result = verify(altered, key.public, status(key), NOW)
    # A changed header byte may also make the header unreadable or name another key.
    allowed = {Verdict.TAMPERED} if position > body.index(".") else set(Verdict) - {Verdict.VALID}
    assert result.verdict in allowed, result


def test_each_failure_has_its_own_verdict() -> None:
    key, kazakh = hub(), hub("kz")
    credential = attestation(key, index=3).sign(key)
    fine = status(key)
    later = NOW + dt.timedelta(days=2)
    assert verify(credential, key.public, fine, later).verdict is Verdict.VALID
    assert verify(credential, key.public, fine, NOW + dt.timedelta(days=366)).verdict is (
        Verdict.EXPIRED
    )
    assert verify(credential, key.public, fine, NOW - dt.timedelta(days=1)).verdict is (
        Verdict.EXPIRED
    )  # not yet valid
    assert verify(credential, key.public, status(key, frozenset({3})), later).verdict is (
        Verdict.REVOKED
    )
    assert verify(credential, key.public, status(key, frozenset({2, 4})), later).verdict is (
        Verdict.VALID
    )
    assert verify("not a credential", key.public, fine, later).verdict is Verdict.UNREADABLE
    assert verify(credential, key.public, fine, later, "AN 0000000").verdict is (
        Verdict.BINDING_MISMATCH
    )
    # A Kazakh credential checked with the Kyrgyz key: another hub's, not "altered".
    kz_credential = attestation(kazakh).sign(kazakh)
    assert verify(kz_credential, key.public, fine, later).verdict is Verdict.WRONG_ISSUER
    assert verify(kz_credential, kazakh.public, status(kazakh), later).verdict is Verdict.VALID
    # The status list must be this hub's, intact, for this list and not out of date.
    stale = NOW + STATUS_LIST_VALIDITY + dt.timedelta(seconds=1)
    assert verify(credential, key.public, fine, stale).verdict is Verdict.STATUS_LIST_UNUSABLE
    assert verify(credential, key.public, status(kazakh), later).verdict is (
        Verdict.STATUS_LIST_UNUSABLE
    )
    other_list = StatusList.of(10, frozenset()).sign(key, status_list_uri("kg", "list-2"), NOW)
    assert verify(credential, key.public, other_list, later).verdict is (
        Verdict.STATUS_LIST_UNUSABLE
    )
    assert verify(credential, key.public, fine[:-3] + "AAA", later).verdict is (
        Verdict.STATUS_LIST_UNUSABLE
    )
    codes = {int(v) for v in Verdict}
    assert len(codes) == len(Verdict) and 1 not in codes  # 1 is Python's generic failure


def test_a_credential_signed_by_the_same_key_for_another_hub_is_wrong_issuer() -> None:
    key = hub()
    posing = HubSigningKey(issuer_for("kz"), key.seed)  # same key, claims to be kz
    credential = attestation(posing).sign(posing)
    assert verify(credential, key.public, status(key), NOW).verdict is Verdict.WRONG_ISSUER


def test_the_binding_recomputes_from_the_document_however_it_is_typed() -> None:
    key = hub()
    credential = attestation(key).sign(key)
    # Full-width letters and digits (as some keyboards type them) fold to the same number.
    full_width = "".join(chr(ord(c) + 0xFEE0) for c in "AN4418207")
    for typed in ("AN4418207", "an 441-8207", "AN 4418207 ", full_width):
        result = verify(credential, key.public, status(key), NOW, typed)
        assert result.verdict is Verdict.VALID and result.binding_checked, typed
    assert normalise_document_number(" an-44.18 207") == "AN4418207"
    unbound = attestation(key, bound=False).sign(key)
    assert verify(unbound, key.public, status(key), NOW).verdict is Verdict.VALID
    assert verify(unbound, key.public, status(key), NOW, DOCUMENT).verdict is (
        Verdict.BINDING_MISMATCH
    )


def test_the_salt_is_per_attestation_and_stable_for_a_retry() -> None:
    key = hub()
    first, second = uuid.uuid4(), uuid.uuid4()
    assert key.salt_for(first) == key.salt_for(first) != key.salt_for(second)
    assert Binding.of(key.salt_for(first), DOCUMENT, FAST) != Binding.of(
        key.salt_for(second), DOCUMENT, FAST
    )


def test_the_status_list_bits_follow_the_token_status_list_draft() -> None:
    # draft-ietf-oauth-status-list, 1-bit example: bytes 0xB9 0xA3, zlib, base64url.
    example = StatusList.decode("eNrbuRgAAhcBXQ")
    assert example.revoked == frozenset({0, 3, 4, 5, 7, 8, 9, 13, 15})
    assert example.size == 16
    encoded = StatusList(16, example.revoked).encode()
    assert zlib.decompress(base64.urlsafe_b64decode(encoded + "==")) == bytes([0xB9, 0xA3])
    listed = StatusList.of(5, frozenset({1, 4}))
    assert listed.size == MIN_LIST_SIZE  # a short list does not tell how many were issued
    again = StatusList.decode(listed.encode())
    assert again == listed and again.is_revoked(4) and not again.is_revoked(2)
    assert len(listed.encode()) < 300  # 16 KiB of mostly zeros compresses to almost nothing
    with pytest.raises(IndexError):
        again.is_revoked(MIN_LIST_SIZE)


def test_nothing_about_the_person_is_in_the_credential_or_its_qr(tmp_path: Path) -> None:
    key = hub()
    credential = attestation(key).sign(key)
    decoded = json.dumps(payload(credential))
    for clear in (DOCUMENT, "4418207", normalise_document_number(DOCUMENT)):
        assert clear not in credential and clear not in decoded
    svg, png = tmp_path / "qr.svg", tmp_path / "qr.png"
    assert main(["attest", "qr", credential, "--out", str(svg)]) == 0
    assert main(["attest", "qr", credential, "--out", str(png)]) == 0
    assert png.read_bytes().startswith(b"\x89PNG") and b"<svg" in svg.read_bytes()
    for path in (svg, png):
        assert b"4418207" not in path.read_bytes()
    # The QR carries exactly the credential text, which a scanner gives back.
    assert segno.make_qr(credential.strip(), error="m").matrix  # encodable at level M
    assert main(["attest", "qr", credential, "--out", str(tmp_path / "qr.gif")]) == 2


def test_the_cli_verifies_offline_with_an_exit_code_per_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = hub()
    credential = attestation(key).sign(key)
    (tmp_path / "hub.json").write_text(key.public.to_json())
    (tmp_path / "status.jwt").write_text(status(key, at=dt.datetime.now(dt.UTC)))
    (tmp_path / "credential.txt").write_text(credential + "\n")
    base = ["attest", "verify", "--key", str(tmp_path / "hub.json")]
    base += ["--status-list", str(tmp_path / "status.jwt")]
    stale = ["--at", (dt.datetime.now(dt.UTC) + STATUS_LIST_VALIDITY * 2).isoformat()]
    capsys.readouterr()
    assert main([*base, "--file", str(tmp_path / "credential.txt")]) == 0
    assert capsys.readouterr().out.startswith("VALID: identified victim of trafficking")
    assert main([*base, credential, "--document-number", "an4418207"]) == 0
    assert "matches the document number given" in capsys.readouterr().out
    assert main([*base, credential, "--document-number", "XX1"]) == 7
    assert main([*base, credential, "--at", "2030-01-01"]) == 4
    assert main([*base, credential, *stale, "--json"]) == 8  # the list is out of date by then
    out = capsys.readouterr().out
    assert '"verdict": "status_list_unusable"' in out
    assert main([*base, "garbage"]) == 2
    assert main([*base]) == 2  # neither text nor file
    assert main([*base[:-1], str(tmp_path / "missing"), credential]) == 2
    # An officer reads the verdict in Russian or Kyrgyz; the exit code is the same.
    capsys.readouterr()
    assert main([*base, credential, "--lang", "ky"]) == 0
    assert capsys.readouterr().out.startswith("\u0416\u0410\u0420\u0410\u041a\u0422\u0423\u0423")
    assert main([*base, credential, "--at", "2030-01-01", "--lang", "ru"]) == 4
    assert (
        "\u0441\u0440\u043e\u043a \u0434\u0435\u0439\u0441\u0442\u0432\u0438\u044f"
        in capsys.readouterr().out
    )


def test_the_signing_key_file_must_be_a_32_byte_seed(tmp_path: Path) -> None:
    path = tmp_path / "attestation-signing"
    with pytest.raises(ValueError, match="does not exist"):
        read_signing_key(path, issuer_for("kg"))
    path.write_bytes(b"short")
    with pytest.raises(ValueError, match="exactly 32 bytes"):
        read_signing_key(path, issuer_for("kg"))
