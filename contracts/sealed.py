"""Sealed personal-data fields: the format, version 1.

A sealed value is AES-256-GCM ciphertext of the UTF-8 field value under the case's data key,
with associated data that binds it to one case, one field and one key version:

    AD = "nrm-sealed/1|" + case_id + "|" + field_name + "|" + str(key_version)   (UTF-8)

JSON form: {"v": 1, "alg": "A256GCM", "kv": <key version>, "n": <base64 12-byte nonce>,
"ct": <base64 ciphertext || 16-byte tag>}. Because the AD is recomputed by the reader from
where it found the value, a sealed value copied to another field or another case fails to
open. The format is language neutral: any AES-GCM implementation can open it.
"""

from __future__ import annotations

import base64
import os
from typing import Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BaseModel, ConfigDict, Field, field_validator

FORMAT_VERSION = 1
NONCE_BYTES = 12
KEY_BYTES = 32


class SealedValueError(ValueError):
    """A sealed value did not open. Never carries the plaintext or the key."""


class SealedValue(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    v: Literal[1] = Field(default=1, description="Sealed-field format version")
    alg: Literal["A256GCM"] = "A256GCM"
    kv: int = Field(ge=1, description="Version of the case data key that sealed this value")
    n: str = Field(description="Base64 12-byte GCM nonce")
    ct: str = Field(description="Base64 ciphertext followed by the 16-byte GCM tag")

    @field_validator("n")
    @classmethod
    def _nonce_is_12_bytes(cls, value: str) -> str:
        if len(_b64decode(value, "n")) != NONCE_BYTES:
            raise ValueError("nonce must be 12 bytes")
        return value

    @field_validator("ct")
    @classmethod
    def _ciphertext_has_tag(cls, value: str) -> str:
        if len(_b64decode(value, "ct")) < 16:
            raise ValueError("ciphertext shorter than the GCM tag")
        return value


def associated_data(case_id: str, field: str, key_version: int) -> bytes:
    return f"nrm-sealed/{FORMAT_VERSION}|{case_id}|{field}|{key_version}".encode()


def seal(key: bytes, case_id: str, field: str, key_version: int, plaintext: str) -> SealedValue:
    nonce = os.urandom(NONCE_BYTES)
    ct = AESGCM(key).encrypt(
        nonce, plaintext.encode(), associated_data(case_id, field, key_version)
    )
    return SealedValue(kv=key_version, n=_b64encode(nonce), ct=_b64encode(ct))


def open_sealed(key: bytes, case_id: str, field: str, sealed: SealedValue) -> str:
    try:
        plaintext = AESGCM(key).decrypt(
            _b64decode(sealed.n, "n"),
            _b64decode(sealed.ct, "ct"),
            associated_data(case_id, field, sealed.kv),
        )
    except InvalidTag:
        raise SealedValueError(
            f"sealed field {field!r} does not open for this case and key version"
        ) from None
    return plaintext.decode()


def _b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _b64decode(text: str, name: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise ValueError(f"{name} is not valid base64") from None
