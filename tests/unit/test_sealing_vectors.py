"""The sealing test vectors (contracts/test_vectors/sealing.json, docs/SEALING.md) are what the
hub's own code does: its seal reproduces each blob from the fixed keys, its open opens each one
to the plaintext, the screening in the file is accepted by the hub's intake, and a blob moved to
another context does not open."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from contracts.commands import SubmitScreening
from contracts.public_key_sealing import (
    PublicKeySealingError,
    SealedToKey,
    hpke_base_seal,
    intake_info,
    key_id,
    open_sealed_to,
    public_key_b64,
    seal_to,
)
from contracts.sealed import b64encode
from contracts.sealing_vectors import VECTORS_FILE, screening_example
from services.identifier.intake import open_interview

FILE: dict[str, Any] = json.loads(VECTORS_FILE.read_text("utf-8"))
VECTORS: list[dict[str, Any]] = FILE["vectors"]


def _private(hex_text: str) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(bytes.fromhex(hex_text))


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["name"].split(":")[0])
def test_the_hub_reproduces_each_vector_from_its_fixed_keys(vector: dict[str, Any]) -> None:
    recipient = X25519PublicKey.from_public_bytes(bytes.fromhex(vector["recipient_public_key_hex"]))
    ephemeral = _private(vector["ephemeral_private_key_hex"])
    info = vector["info"].encode()
    plaintext = bytes.fromhex(vector["plaintext_hex"])
    assert plaintext.decode() == vector["plaintext"] and info.hex() == vector["info_hex"]
    assert key_id(recipient) == vector["kid"]
    assert public_key_b64(recipient) == vector["recipient_public_key_b64"]
    sealed = seal_to(recipient, info, plaintext, ephemeral_key=ephemeral)
    assert sealed.model_dump() == vector["sealed"]
    steps = hpke_base_seal(recipient, info, plaintext, ephemeral)
    assert steps.enc.hex() == vector["enc_hex"]
    assert steps.shared_secret.hex() == vector["shared_secret_hex"]
    assert (steps.key.hex(), steps.base_nonce.hex()) == (
        vector["key_hex"],
        vector["base_nonce_hex"],
    )
    assert steps.blob.hex() == vector["enc_hex"] + vector["ciphertext_hex"]


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["name"].split(":")[0])
def test_the_hub_opens_each_vector_and_nothing_moved_elsewhere(vector: dict[str, Any]) -> None:
    recipient = _private(vector["recipient_private_key_hex"])
    sealed = SealedToKey.model_validate(vector["sealed"])
    info = vector["info"].encode()
    assert open_sealed_to(recipient, info, sealed) == bytes.fromhex(vector["plaintext_hex"])
    with pytest.raises(PublicKeySealingError):
        open_sealed_to(recipient, info + b"x", sealed)
    tampered = bytearray(bytes.fromhex(vector["enc_hex"] + vector["ciphertext_hex"]))
    tampered[-1] ^= 1
    with pytest.raises(PublicKeySealingError):
        open_sealed_to(
            recipient, info, sealed.model_copy(update={"blob": b64encode(bytes(tampered))})
        )


def test_the_library_path_and_the_spelled_out_path_open_alike() -> None:
    """Production seals with a fresh ephemeral key inside the library; the vectors' path
    with a given one. Each opens what the other sealed to the same key."""
    recipient = X25519PrivateKey.generate()
    info = intake_info("5f2d9a40-8c1e-4b7a-9d3f-6a1e2c4b5d02", "kg-ngo-osh-crisis-centre")
    for ephemeral in (None, X25519PrivateKey.generate()):
        sealed = seal_to(
            recipient.public_key(), info, b'{"full_name":"x"}', ephemeral_key=ephemeral
        )
        assert open_sealed_to(recipient, info, sealed) == b'{"full_name":"x"}'
    assert seal_to(recipient.public_key(), info, b"a") != seal_to(
        recipient.public_key(), info, b"a"
    )


def test_the_sealed_screening_in_the_file_is_taken_by_the_hubs_intake() -> None:
    intake = VECTORS[0]
    command = SubmitScreening.model_validate(FILE["screening_submit"])
    assert command.personal_data.model_dump() == intake["sealed"]
    interview = open_interview(command, _private(intake["recipient_private_key_hex"]))
    assert interview == screening_example()


def test_the_suite_is_rfc_9180_base_mode_x25519_sha256_aes256gcm() -> None:
    assert FILE["suite"] == {
        "name": "X25519-SHA256-A256GCM",
        "mode": "base",
        "mode_id": 0,
        "kem": "DHKEM(X25519, HKDF-SHA256)",
        "kem_id": 0x0020,
        "kdf": "HKDF-SHA256",
        "kdf_id": 0x0001,
        "aead": "AES-256-GCM",
        "aead_id": 0x0002,
        "aad": "empty",
        "sequence_number": 0,
    }
