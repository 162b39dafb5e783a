"""Key custody, first cut: one AES-256 data key per case, wrapped under the hub's
key-encryption key (KEK) and kept in the replicated KV bucket `nrm-case-keys`.

Purging a case's entry is crypto-shredding: the events stay, the person becomes unreadable.
The KEK never leaves the hub's machine; the wrapped keys reveal nothing without it.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from contracts.sealed import KEY_BYTES, NONCE_BYTES

CURRENT_KEY_VERSION = 1


class KeyCustodyError(RuntimeError):
    pass


def create_key_encryption_key(path: Path) -> None:
    """Write a new random KEK readable only by its owner, unless one exists."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(os.urandom(KEY_BYTES))


def read_key_encryption_key(path: Path) -> bytes:
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        raise KeyCustodyError(f"key-encryption key file {path} does not exist") from None
    if len(key) != KEY_BYTES:
        raise KeyCustodyError(f"key-encryption key file {path} must hold exactly 32 bytes")
    return key


class CaseKeys:
    def __init__(self, bucket: KeyValue, kek: bytes) -> None:
        self._bucket = bucket
        self._kek = AESGCM(kek)

    async def key_for(self, case_id: str) -> tuple[int, bytes]:
        """The case's (key version, data key), created on first use."""
        try:
            entry = await self._bucket.get(case_id)
        except KeyNotFoundError:
            key = AESGCM.generate_key(bit_length=256)
            try:
                await self._bucket.create(case_id, self._wrap(case_id, CURRENT_KEY_VERSION, key))
                return CURRENT_KEY_VERSION, key
            except KeyWrongLastSequenceError:
                entry = await self._bucket.get(case_id)  # another writer won the race
        assert entry.value is not None
        return self._unwrap(case_id, entry.value)

    def _wrap(self, case_id: str, version: int, key: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        wrapped = self._kek.encrypt(nonce, key, _key_ad(case_id, version))
        record = {"kv": version, "n": _b64(nonce), "wrapped": _b64(wrapped)}
        return json.dumps(record).encode()

    def _unwrap(self, case_id: str, raw: bytes) -> tuple[int, bytes]:
        record = json.loads(raw)
        version = int(record["kv"])
        nonce = base64.b64decode(record["n"])
        key = self._kek.decrypt(
            nonce, base64.b64decode(record["wrapped"]), _key_ad(case_id, version)
        )
        return version, key


def _key_ad(case_id: str, version: int) -> bytes:
    return f"nrm-case-key/1|{case_id}|{version}".encode()


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")
