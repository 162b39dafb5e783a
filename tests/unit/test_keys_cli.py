"""`nrm keys init` and `nrm keys check`: every secret a hub needs, made 0600 and checked."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from services.cli import main

SECRETS = ("kek", "intake.pem", "blind-index", "audit-signing", "attestation-signing")


def _env_for(out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NRM_KEK_FILE", str(out / "kek"))
    monkeypatch.setenv("NRM_INTAKE_KEY_FILE", str(out / "intake.pem"))
    monkeypatch.setenv("NRM_BLIND_INDEX_KEY_FILE", str(out / "blind-index"))
    monkeypatch.setenv("NRM_AUDIT_SIGNING_KEY_FILE", str(out / "audit-signing"))
    monkeypatch.setenv("NRM_ATTESTATION_SIGNING_KEY_FILE", str(out / "attestation-signing"))


def test_init_makes_every_secret_owner_only_and_never_overwrites(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "secrets"
    assert main(["keys", "init", "--out", str(out)]) == 0
    for name in SECRETS:
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o600, name
    assert (out / "intake.pub").read_text().strip()
    assert (out / "audit-signing.vkey").read_text().startswith("nrm-hub.kg/audit+")
    assert '"iss": "urn:nrm-hub:kg"' in (out / "attestation.pub").read_text()
    before = {name: (out / name).read_bytes() for name in SECRETS}
    assert main(["keys", "init", "--out", str(out)]) == 2
    assert "not overwriting" in capsys.readouterr().err
    assert {name: (out / name).read_bytes() for name in SECRETS} == before


def test_check_names_the_setting_of_each_missing_or_malformed_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "secrets"
    assert main(["keys", "init", "--out", str(out)]) == 0
    _env_for(out, monkeypatch)
    capsys.readouterr()
    assert main(["keys", "check"]) == 0
    assert capsys.readouterr().out.count(": ok ") == 5
    (out / "blind-index").unlink()
    (out / "kek").write_bytes(b"32 random bytes are not a key ring")
    assert main(["keys", "check"]) == 1
    report = capsys.readouterr().out
    assert "NRM_BLIND_INDEX_KEY_FILE:" in report and "does not exist" in report
    assert "NRM_KEK_FILE:" in report and "not a key ring" in report
    assert "NRM_INTAKE_KEY_FILE: ok" in report


def test_a_service_without_its_key_stops_with_one_line_naming_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "secrets"
    assert main(["keys", "init", "--out", str(out)]) == 0
    _env_for(out, monkeypatch)
    (out / "audit-signing").unlink()
    capsys.readouterr()
    # Fails before it connects: the URL is never dialled.
    assert main(["run", "audit", "--nats-url", "nats://127.0.0.1:1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nrm: NRM_AUDIT_SIGNING_KEY_FILE:"), err
