"""Sealed personal-data fields: the format, version 2.

Every personal-data field is sealed on its own with AES-256-GCM under a *field key* derived
from the case's data key, so that key custody can release the keys of some fields of a case
(what a referral needs) without releasing the others:

    field_key = HKDF-SHA256(ikm = case data key, salt = empty (RFC 5869: HashLen zero bytes),
                            info = "nrm-field-key/2|" + case_id + "|" + field + "|" + kv,
                            length = 32)
    AD        = "nrm-sealed/2|" + case_id + "|" + field_name + "|" + kv        (UTF-8)

where `kv` is the decimal key version. JSON form: {"v": 2, "alg": "A256GCM", "kv": <key version>,
"n": <base64 12-byte nonce>, "ct": <base64 ciphertext || 16-byte tag>}. Because the reader
recomputes the AD (and the field key) from where it found the value, a sealed value copied to
another field or another case fails to open. The format is language neutral: any HKDF and
AES-GCM implementation opens it (see the test vector in tests/unit/test_sealed_fields*).
"""

from __future__ import annotations

import base64
import os
from typing import Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import BaseModel, ConfigDict, Field, field_validator

FORMAT_VERSION = 2
NONCE_BYTES = 12
KEY_BYTES = 32


class SealedValueError(ValueError):
    """A sealed value did not open. Never carries the plaintext or the key."""


class SealedValue(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    v: Literal[2] = Field(default=2, description="Sealed-field format version")
    alg: Literal["A256GCM"] = "A256GCM"
    kv: int = Field(ge=1, description="Version of the case data key that sealed this value")
    n: str = Field(description="Base64 12-byte GCM nonce")
    ct: str = Field(description="Base64 ciphertext followed by the 16-byte GCM tag")

    @field_validator("n")
    @classmethod
    def _nonce_is_12_bytes(cls, value: str) -> str:
        if len(b64decode(value, "n")) != NONCE_BYTES:
            raise ValueError("nonce must be 12 bytes")
        return value

    @field_validator("ct")
    @classmethod
    def _ciphertext_has_tag(cls, value: str) -> str:
        if len(b64decode(value, "ct")) < 16:
            raise ValueError("ciphertext shorter than the GCM tag")
        return value


def associated_data(case_id: str, field: str, key_version: int) -> bytes:
    return f"nrm-sealed/{FORMAT_VERSION}|{case_id}|{field}|{key_version}".encode()


def field_key(case_key: bytes, case_id: str, field: str, key_version: int) -> bytes:
    """The key one field of one case is sealed under: what key custody releases."""
    info = f"nrm-field-key/{FORMAT_VERSION}|{case_id}|{field}|{key_version}".encode()
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(case_key)


def seal(
    case_key: bytes, case_id: str, field: str, key_version: int, plaintext: str
) -> SealedValue:
    nonce = os.urandom(NONCE_BYTES)
    key = field_key(case_key, case_id, field, key_version)
    ct = AESGCM(key).encrypt(
        nonce, plaintext.encode(), associated_data(case_id, field, key_version)
    )
    return SealedValue(kv=key_version, n=b64encode(nonce), ct=b64encode(ct))


def open_sealed(case_key: bytes, case_id: str, field: str, sealed: SealedValue) -> str:
    """Open with the case data key (the hub side)."""
    return open_with_field_key(
        field_key(case_key, case_id, field, sealed.kv), case_id, field, sealed
    )


def open_with_field_key(key: bytes, case_id: str, field: str, sealed: SealedValue) -> str:
    """Open with a released field key (the agency side)."""
    try:
        plaintext = AESGCM(key).decrypt(
            b64decode(sealed.n, "n"),
            b64decode(sealed.ct, "ct"),
            associated_data(case_id, field, sealed.kv),
        )
    except (InvalidTag, ValueError):
        raise SealedValueError(
            f"sealed field {field!r} does not open for this case and key version"
        ) from None
    return plaintext.decode()


def b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def b64decode(text: str, name: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise ValueError(f"{name} is not valid base64") from None
