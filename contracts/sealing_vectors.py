"""Test vectors for sealing to a public key (docs/SEALING.md), so a system in another language
can check its HPKE sealing against the hub's: fixed recipient and ephemeral keys, every
intermediate value, the blob and the JSON that travels. Generated with the spelled-out RFC 9180
path of `contracts.public_key_sealing` into contracts/test_vectors/sealing.json (`nrm contracts
generate`); a test proves the hub's own code opens each one and that the file is up to date.

The keys are derived from public labels: they are test keys, known to everyone."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from contracts.commands import ScreeningInterview, SubmitScreening
from contracts.public_key_sealing import (
    AEAD_ID,
    KDF_ID,
    KEM_ID,
    SUITE_NAME,
    hpke_base_seal,
    intake_info,
    key_id,
    public_key_b64,
    raw_public_key,
    release_info,
)
from contracts.sealed import b64encode

VECTORS_FILE = Path(__file__).parent / "test_vectors" / "sealing.json"
SCREENING_EXAMPLE = Path(__file__).parent / "examples" / "02-screening.submit.json"
RELEASE_CASE_ID = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
RELEASE_REQUEST_ID = "16fd2706-8baf-433b-82eb-8c7fada847da"
RELEASE_AGENCY_ID = "kg-ngo-bishkek-mens-shelter"


def vector_key(label: str) -> X25519PrivateKey:
    """A fixed X25519 key from a public label (never a real key)."""
    return X25519PrivateKey.from_private_bytes(
        hashlib.sha256(f"nrm-hub test vector: {label}".encode()).digest()
    )


def _raw_private(key: X25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def screening_example() -> ScreeningInterview:
    """The screening of contracts/examples/, as the agency holds it (personal data in clear)."""
    payload = json.loads(SCREENING_EXAMPLE.read_text("utf-8"))["payload"]
    return ScreeningInterview.model_validate(payload)


def intake_plaintext(interview: ScreeningInterview) -> bytes:
    """What an agency seals: the `personal_data` object as UTF-8 JSON (any JSON spelling does;
    this is the compact one the Python client writes)."""
    return interview.personal_data.model_dump_json(exclude_none=True).encode()


def _vector(
    name: str,
    recipient: X25519PrivateKey,
    ephemeral: X25519PrivateKey,
    info: bytes,
    plaintext: bytes,
) -> dict[str, Any]:
    steps = hpke_base_seal(recipient.public_key(), info, plaintext, ephemeral)
    public = recipient.public_key()
    blob = b64encode(steps.blob)
    return {
        "name": name,
        "recipient_private_key_hex": _raw_private(recipient).hex(),
        "recipient_public_key_hex": raw_public_key(public).hex(),
        "recipient_public_key_b64": public_key_b64(public),
        "kid": key_id(public),
        "ephemeral_private_key_hex": _raw_private(ephemeral).hex(),
        "info": info.decode(),
        "info_hex": info.hex(),
        "aad_hex": "",
        "plaintext": plaintext.decode(),
        "plaintext_hex": plaintext.hex(),
        "enc_hex": steps.enc.hex(),
        "shared_secret_hex": steps.shared_secret.hex(),
        "key_hex": steps.key.hex(),
        "base_nonce_hex": steps.base_nonce.hex(),
        "ciphertext_hex": steps.blob[len(steps.enc) :].hex(),
        "blob_b64": blob,
        "sealed": {"v": 1, "suite": SUITE_NAME, "kid": key_id(public), "blob": blob},
    }


def sealed_screening() -> dict[str, Any]:
    """The screening example as it travels, sealed to the test intake key with the fixed
    ephemeral key: the first vector, and the AsyncAPI document's example. The example file's
    own JSON with `personal_data` replaced (a model dump would order its sets by hash)."""
    payload = json.loads(SCREENING_EXAMPLE.read_text("utf-8"))["payload"]
    body = {**payload, "personal_data": intake_vector()["sealed"]}
    SubmitScreening.model_validate(body)  # what the hub parses
    return body


def intake_vector() -> dict[str, Any]:
    interview = screening_example()
    return _vector(
        "intake: the personal data of contracts/examples/02-screening.submit.json, sealed by "
        "the agency to the hub's intake key",
        vector_key("intake recipient"),
        vector_key("intake ephemeral"),
        intake_info(str(interview.command_id), interview.agency_id),
        intake_plaintext(interview),
    )


def release_vector() -> dict[str, Any]:
    field_key = hashlib.sha256(b"nrm-hub test vector: a field key").digest()
    content = {"key_version": 1, "field_keys": {"full_name": b64encode(field_key)}}
    return _vector(
        "release: field keys sealed by the hub to an agency's registered key (access.released)",
        vector_key("release recipient"),
        vector_key("release ephemeral"),
        release_info(RELEASE_CASE_ID, RELEASE_REQUEST_ID, RELEASE_AGENCY_ID),
        json.dumps(content, separators=(",", ":")).encode(),
    )


def vectors() -> dict[str, Any]:
    intake = intake_vector()
    return {
        "description": "HPKE (RFC 9180) sealing test vectors of the NRM Hub; the recipe is "
        "docs/SEALING.md. All byte strings are hex unless the name ends in _b64 (standard "
        "base64 with padding). Test keys only.",
        "suite": {
            "name": SUITE_NAME,
            "mode": "base",
            "mode_id": 0,
            "kem": "DHKEM(X25519, HKDF-SHA256)",
            "kem_id": KEM_ID,
            "kdf": "HKDF-SHA256",
            "kdf_id": KDF_ID,
            "aead": "AES-256-GCM",
            "aead_id": AEAD_ID,
            "aad": "empty",
            "sequence_number": 0,
        },
        "vectors": [intake, release_vector()],
        "screening_submit": sealed_screening(),
    }


def render() -> str:
    return json.dumps(vectors(), indent=2, ensure_ascii=False) + "\n"
