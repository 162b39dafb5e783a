"""Sealing to a public key (HPKE, RFC 9180): how personal data reaches the hub and how field
keys reach an agency, never in clear on the wire.

Suite: base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM, single-shot, empty AAD.
The `info` string binds each message to its context, so a sealed blob moved to another
command, case or agency does not open:

    intake  (agency -> hub)   info = "nrm-intake/1|" + command_id + "|" + agency_id
    release (hub -> agency)   info = "nrm-release/1|" + case_id + "|" + request_id + "|" + agency_id

JSON form: {"v": 1, "suite": "X25519-SHA256-A256GCM", "kid": <key id>, "blob": <base64 of
enc (32 bytes) || ciphertext || tag>}. A key id is the hex of the first 8 bytes of SHA-256
over the raw 32-byte X25519 public key. Public keys travel as base64 of those 32 bytes;
private keys are stored as PKCS#8 PEM. The recipe for other languages, step by step, with test
vectors: docs/SEALING.md and contracts/test_vectors/sealing.json.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path
from typing import Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite
from pydantic import BaseModel, ConfigDict, Field

from contracts.sealed import b64decode, b64encode

SUITE_NAME = "X25519-SHA256-A256GCM"
_SUITE = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_256_GCM)


class PublicKeySealingError(ValueError):
    """A blob did not open (wrong key, wrong context, tampered). Says nothing more."""


class SealedToKey(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    v: Literal[1] = 1
    suite: Literal["X25519-SHA256-A256GCM"] = "X25519-SHA256-A256GCM"
    kid: str = Field(pattern=r"^[0-9a-f]{16}$", description="Key id of the recipient key")
    blob: str = Field(min_length=1, max_length=200_000, description="Base64 enc || ct || tag")


def intake_info(command_id: str, agency_id: str) -> bytes:
    return f"nrm-intake/1|{command_id}|{agency_id}".encode()


def release_info(case_id: str, request_id: str, agency_id: str) -> bytes:
    return f"nrm-release/1|{case_id}|{request_id}|{agency_id}".encode()


def raw_public_key(public_key: X25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public_key: X25519PublicKey) -> str:
    return hashlib.sha256(raw_public_key(public_key)).hexdigest()[:16]


def public_key_b64(public_key: X25519PublicKey) -> str:
    return b64encode(raw_public_key(public_key))


def public_key_from_b64(text: str) -> X25519PublicKey:
    try:
        raw = b64decode(text, "public_key")
        return X25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise ValueError("public_key must be base64 of a raw 32-byte X25519 key") from None


def seal_to(
    public_key: X25519PublicKey,
    info: bytes,
    plaintext: bytes,
    *,
    ephemeral_key: X25519PrivateKey | None = None,
) -> SealedToKey:
    """Seal `plaintext` to `public_key` in the context `info`. `ephemeral_key` is for test
    vectors only: the library draws its own ephemeral key, so a fixed one takes the spelled-out
    RFC 9180 path below, which gives the same wire format (the vectors prove both open)."""
    if ephemeral_key is None:
        blob = _SUITE.encrypt(plaintext, public_key, info=info)
    else:
        blob = hpke_base_seal(public_key, info, plaintext, ephemeral_key).blob
    return SealedToKey(kid=key_id(public_key), blob=b64encode(blob))


# RFC 9180 identifiers of the suite: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM.
KEM_ID, KDF_ID, AEAD_ID = 0x0020, 0x0001, 0x0002
_KEM_SUITE_ID = b"KEM" + KEM_ID.to_bytes(2, "big")
_HPKE_SUITE_ID = b"HPKE" + b"".join(i.to_bytes(2, "big") for i in (KEM_ID, KDF_ID, AEAD_ID))
_MODE_BASE = b"\x00"
_KEY_BYTES, _NONCE_BYTES = 32, 12  # Nk, Nn of AES-256-GCM


def _labeled_extract(suite_id: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    # HKDF-Extract with an empty salt is HMAC under a zero key, as RFC 5869 says.
    return hmac.digest(salt, b"HPKE-v1" + suite_id + label + ikm, "sha256")


def _labeled_expand(suite_id: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    labeled = length.to_bytes(2, "big") + b"HPKE-v1" + suite_id + label + info
    out, block, counter = b"", b"", 1
    while len(out) < length:  # HKDF-Expand (RFC 5869)
        block = hmac.digest(prk, block + labeled + bytes([counter]), "sha256")
        out, counter = out + block, counter + 1
    return out[:length]


class HpkeSteps(BaseModel):
    """The intermediate values of one base-mode seal, for implementers to compare with."""

    model_config = ConfigDict(frozen=True)

    enc: bytes
    shared_secret: bytes
    key: bytes
    base_nonce: bytes
    blob: bytes  # enc || ciphertext || tag


def hpke_base_seal(
    public_key: X25519PublicKey, info: bytes, plaintext: bytes, ephemeral_key: X25519PrivateKey
) -> HpkeSteps:
    """RFC 9180 SetupBaseS + Seal (sequence 0, empty AAD) with a given ephemeral key."""
    enc = raw_public_key(ephemeral_key.public_key())
    dh = ephemeral_key.exchange(public_key)
    kem_context = enc + raw_public_key(public_key)
    eae_prk = _labeled_extract(_KEM_SUITE_ID, b"", b"eae_prk", dh)
    shared_secret = _labeled_expand(_KEM_SUITE_ID, eae_prk, b"shared_secret", kem_context, 32)
    psk_id_hash = _labeled_extract(_HPKE_SUITE_ID, b"", b"psk_id_hash", b"")
    info_hash = _labeled_extract(_HPKE_SUITE_ID, b"", b"info_hash", info)
    context = _MODE_BASE + psk_id_hash + info_hash
    secret = _labeled_extract(_HPKE_SUITE_ID, shared_secret, b"secret", b"")
    key = _labeled_expand(_HPKE_SUITE_ID, secret, b"key", context, _KEY_BYTES)
    base_nonce = _labeled_expand(_HPKE_SUITE_ID, secret, b"base_nonce", context, _NONCE_BYTES)
    ciphertext = AESGCM(key).encrypt(base_nonce, plaintext, b"")
    return HpkeSteps(
        enc=enc, shared_secret=shared_secret, key=key, base_nonce=base_nonce, blob=enc + ciphertext
    )


def open_sealed_to(private_key: X25519PrivateKey, info: bytes, sealed: SealedToKey) -> bytes:
    if sealed.kid != key_id(private_key.public_key()):
        raise PublicKeySealingError("sealed to another key")
    try:
        return _SUITE.decrypt(b64decode(sealed.blob, "blob"), private_key, info=info)
    except (InvalidTag, ValueError):
        raise PublicKeySealingError("does not open with this key in this context") from None


def generate_private_key() -> X25519PrivateKey:
    return X25519PrivateKey.generate()


def write_private_key(private_key: X25519PrivateKey, path: Path) -> None:
    """PKCS#8 PEM, created readable by its owner only; never overwrites."""

    path.parent.mkdir(parents=True, exist_ok=True)
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)


def read_private_key(path: Path) -> X25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise ValueError(f"private key file {path} does not exist") from None
    except ValueError:
        raise ValueError(f"{path} is not a PEM private key") from None
    if not isinstance(key, X25519PrivateKey):
        raise ValueError(f"{path} does not hold an X25519 private key")
    return key
