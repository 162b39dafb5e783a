"""C2SP signed notes and checkpoints: sign, parse, verify; forged and unknown signatures."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.audit.checkpoint import (
    Checkpoint,
    NoteError,
    Signer,
    TrustError,
    VerifierKey,
    create_signing_key,
    key_id,
    load_signer,
    open_note,
)

ORIGIN = "nrm-hub.kg/audit"


def signer(name: str = ORIGIN, seed: bytes = b"\x07" * 32) -> Signer:
    return Signer(name, Ed25519PrivateKey.from_private_bytes(seed))


def test_a_signed_checkpoint_has_the_c2sp_shape_and_verifies() -> None:
    s = signer()
    checkpoint = Checkpoint(ORIGIN, 42, b"\x01" * 32)
    note = s.sign(checkpoint.text())
    text, _, signature_line = note.decode().partition("\n\n")
    root_b64 = base64.b64encode(b"\x01" * 32).decode()
    assert text + "\n" == f"{ORIGIN}\n42\n{root_b64}\n"
    assert signature_line.startswith(f"\u2014 {ORIGIN} ") and signature_line.endswith("\n")
    blob = base64.b64decode(signature_line.split(" ")[2])
    assert blob[:4] == key_id(ORIGIN, s.verifier.public_key) and len(blob) == 68
    body, signed_by = open_note(note, [s.verifier])
    assert signed_by == [ORIGIN] and Checkpoint.parse(body) == checkpoint


def test_verifier_keys_round_trip_and_check_their_id() -> None:
    key = signer().verifier
    encoded = key.encode()
    name, hex_id, _ = encoded.split("+")
    assert name == ORIGIN and hex_id == key.id.hex()
    assert VerifierKey.parse(encoded) == key
    with pytest.raises(ValueError, match="key id"):
        VerifierKey.parse(f"{name}+00000000+{encoded.split('+')[2]}")
    with pytest.raises(ValueError):
        VerifierKey.parse("no-plus-signs")


def test_a_forged_signature_is_a_trust_failure() -> None:
    s = signer()
    note = bytearray(s.sign(Checkpoint(ORIGIN, 1, b"\x02" * 32).text()))
    note[-10] = ord("A") if note[-10] != ord("A") else ord("B")
    with pytest.raises(TrustError, match="does not verify"):
        open_note(bytes(note), [s.verifier])


def test_a_changed_body_is_a_trust_failure() -> None:
    s = signer()
    note = s.sign(Checkpoint(ORIGIN, 1, b"\x02" * 32).text()).replace(b"\n1\n", b"\n2\n", 1)
    with pytest.raises(TrustError):
        open_note(note, [s.verifier])


def test_a_note_by_an_unknown_key_is_not_trusted() -> None:
    impostor = signer(seed=b"\x09" * 32)
    note = impostor.sign(Checkpoint(ORIGIN, 1, b"\x02" * 32).text())
    with pytest.raises(TrustError, match="no signature by a trusted key"):
        open_note(note, [signer().verifier])


def test_extra_signatures_by_unknown_keys_are_ignored() -> None:
    s, witness = signer(), signer("witness.example/w1", b"\x05" * 32)
    note = s.sign(Checkpoint(ORIGIN, 3, b"\x03" * 32).text())
    cosigned = note + witness.sign(note.decode().split("\n\n")[0] + "\n").split(b"\n\n")[1]
    assert open_note(cosigned, [s.verifier])[1] == [ORIGIN]
    assert open_note(cosigned, [s.verifier, witness.verifier])[1] == [ORIGIN, witness.name]


@pytest.mark.parametrize(
    "raw",
    [
        b"no signature block\n",
        b"origin\n1\nAAAA\n\n- origin c2ln\n",
        b"\xff\xfe\n\n",
        "origin\n1\x00\n\n\u2014 origin AAAAAAAA\n".encode(),
        "origin\n1\t\n\n\u2014 origin AAAAAAAA\n".encode(),
        "origin\r\n1\n\n\u2014 origin AAAAAAAA\n".encode(),
        "origin\n1\n\n\u2014 origin AAAA\x1fAAAA\n".encode(),
    ],
)
def test_malformed_notes_are_refused(raw: bytes) -> None:
    with pytest.raises(NoteError):
        open_note(raw, [signer().verifier])


@pytest.mark.parametrize(
    "text",
    [
        "o\n01\n" + base64.b64encode(b"\0" * 32).decode() + "\n",
        "o\n1\nAAAA\n",
        "o\n1\n",
        "\n1\nx\n",
    ],
)
def test_malformed_checkpoint_bodies_are_refused(text: str) -> None:
    with pytest.raises(NoteError):
        Checkpoint.parse(text)


def test_signing_key_file_is_private_and_loads(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "audit-signing"
    create_signing_key(path)
    first = path.read_bytes()
    create_signing_key(path)  # never overwritten
    assert path.read_bytes() == first and len(first) == 32
    assert path.stat().st_mode & 0o777 == 0o600
    loaded = load_signer(path, ORIGIN)
    note = loaded.sign(Checkpoint(ORIGIN, 0, b"\0" * 32).text())
    assert open_note(note, [loaded.verifier])[1] == [ORIGIN]
    path.write_bytes(b"short")
    with pytest.raises(ValueError, match="32 bytes"):
        load_signer(path, ORIGIN)
