"""Key custody: the hub's secrets and one AES-256 data key per case.

- The key-encryption keys (KEKs) live in a key ring file (`NRM_KEK_FILE`, 0600): several
  versions, one current. Case data keys are wrapped under the current KEK and kept in the
  replicated KV bucket `nrm-case-keys`; each wrapped record names the KEK version, so a
  rotation (`nrm keys rotate-kek`) re-wraps the records and never touches an event.
- Purging a case's record is crypto-shredding: the events stay, the person is unreadable.
- The intake key (X25519, `NRM_INTAKE_KEY_FILE`) opens the personal data agencies seal to the
  hub; the blind-index key (`NRM_BLIND_INDEX_KEY_FILE`) keys the duplicate-detection HMAC;
  the audit signing key (Ed25519) signs the audit log's checkpoints; the attestation signing
  key (Ed25519) signs victim-status attestations and their status list (custody).
Neither a KEK nor a data key ever leaves the hub in clear.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from contracts.public_key_sealing import generate_private_key, write_private_key
from contracts.sealed import KEY_BYTES, NONCE_BYTES
from services.runtime.keyvalue import KeyNotFound, KeyValue, WrongRevision
from services.runtime.settings import Settings

CURRENT_KEY_VERSION = 1
RING_FORMAT = "nrm-kek-ring"


class KeyCustodyError(RuntimeError):
    pass


@dataclass(frozen=True)
class KeyRing:
    current: int
    keys: dict[int, bytes]

    def to_json(self) -> bytes:
        keys = {str(v): base64.b64encode(k).decode() for v, k in sorted(self.keys.items())}
        return json.dumps({"format": RING_FORMAT, "current": self.current, "keys": keys}).encode()


def _write_secret(path: Path, data: bytes, replace: bool = False) -> None:
    """Write a file readable by its owner only; atomically replace when asked."""
    path.parent.mkdir(parents=True, exist_ok=True)
    target = path.with_name(path.name + ".new") if replace else path
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    if replace:
        os.replace(target, path)


def create_hub_keys(settings: Settings) -> None:
    """Create whichever of the hub's secrets do not exist yet (what `nrm up` does)."""
    if not settings.key_encryption_key_file.exists():
        ring = KeyRing(1, {1: os.urandom(KEY_BYTES)})
        _write_secret(settings.key_encryption_key_file, ring.to_json())
    if not settings.intake_private_key_file.exists():
        write_private_key(generate_private_key(), settings.intake_private_key_file)
    if not settings.blind_index_secret_file.exists():
        _write_secret(settings.blind_index_secret_file, os.urandom(KEY_BYTES))
    if not settings.audit_signing_key.exists():  # the audit log's checkpoint key: an Ed25519
        _write_secret(settings.audit_signing_key, os.urandom(32))  # seed (audit.checkpoint)
    if not settings.attestation_signing_key.exists():  # victim-status attestations: an
        _write_secret(settings.attestation_signing_key, os.urandom(32))  # Ed25519 seed


def read_key_ring(path: Path) -> KeyRing:
    try:
        record = json.loads(path.read_bytes())
        if record.get("format") != RING_FORMAT:
            raise ValueError("not a key ring")
        keys = {int(v): base64.b64decode(k) for v, k in record["keys"].items()}
        ring = KeyRing(int(record["current"]), keys)
    except FileNotFoundError:
        raise KeyCustodyError(
            f"NRM_KEK_FILE: key-encryption key file {path} does not exist"
        ) from None
    except (ValueError, KeyError, TypeError, AttributeError):
        raise KeyCustodyError(
            f"NRM_KEK_FILE: key-encryption key file {path} is not a key ring"
        ) from None
    if ring.current not in ring.keys or any(len(k) != KEY_BYTES for k in ring.keys.values()):
        raise KeyCustodyError(f"NRM_KEK_FILE: key-encryption key file {path} is inconsistent")
    return ring


def rotate_key_ring(path: Path) -> KeyRing:
    """Add a new current KEK; earlier ones stay until every record is re-wrapped."""
    ring = read_key_ring(path)
    version = max(ring.keys) + 1
    rotated = KeyRing(version, {**ring.keys, version: os.urandom(KEY_BYTES)})
    _write_secret(path, rotated.to_json(), replace=True)
    return rotated


def retire_old_keys(path: Path) -> KeyRing:
    """Keep only the current KEK (after `CaseKeys.rewrap_all` has moved every record to it)."""
    ring = read_key_ring(path)
    kept = KeyRing(ring.current, {ring.current: ring.keys[ring.current]})
    _write_secret(path, kept.to_json(), replace=True)
    return kept


def read_secret(path: Path, name: str) -> bytes:
    try:
        secret = path.read_bytes()
    except FileNotFoundError:
        raise KeyCustodyError(f"{name} file {path} does not exist") from None
    if len(secret) != KEY_BYTES:
        raise KeyCustodyError(f"{name} file {path} must hold exactly 32 bytes")
    return secret


class CaseKeys:
    """Case data keys in KV, wrapped under the key ring. The ring file is read again when a
    record names a KEK version this process has not seen (after a rotation elsewhere)."""

    def __init__(self, bucket: KeyValue, ring_file: Path) -> None:
        self._bucket = bucket
        self._ring_file = ring_file
        self._ring_stamp = _stamp(ring_file)
        self._ring = read_key_ring(ring_file)

    def _ring_now(self) -> KeyRing:
        """The ring as the file says now: a rotation elsewhere changes the current KEK."""
        stamp = _stamp(self._ring_file)
        if stamp != self._ring_stamp:
            self._ring, self._ring_stamp = read_key_ring(self._ring_file), stamp
        return self._ring

    async def key_for(self, case_id: str) -> tuple[int, bytes]:
        """The case's (key version, data key), created on first use. Its callers ask for a
        new case's key (an intake, a case received from abroad), so creating comes first:
        one round trip, and a second only for a retry, which finds the key created."""
        key = AESGCM.generate_key(bit_length=256)
        try:
            await self._bucket.create(case_id, self._wrap(case_id, CURRENT_KEY_VERSION, key))
            return CURRENT_KEY_VERSION, key
        except WrongRevision:
            entry = await self._bucket.get(case_id)  # created before: a retry, or a race
        return self._unwrap(case_id, entry.value)

    async def existing_key(self, case_id: str) -> tuple[int, bytes] | None:
        """The case's key, or None when it never existed or was shredded."""
        try:
            entry = await self._bucket.get(case_id)
        except KeyNotFound:
            return None
        if not entry.value:
            return None
        return self._unwrap(case_id, entry.value)

    async def shred(self, case_id: str) -> None:
        """Crypto-shredding: purge the record and its history from the bucket."""
        await self._bucket.purge(case_id)

    async def rewrap_all(self) -> int:
        """Re-wrap every record under the current KEK; returns how many moved."""
        ring = self._ring_now()
        moved = 0
        for case_id in await self._bucket.keys():
            entry = await self._bucket.get(case_id)
            if not entry.value or json.loads(entry.value).get("kek") == ring.current:
                continue
            version, key = self._unwrap(case_id, entry.value)
            try:
                await self._bucket.update(
                    case_id, self._wrap(case_id, version, key), last=entry.revision
                )
                moved += 1
            except WrongRevision:
                continue  # shredded or re-wrapped concurrently: nothing left to move
        return moved

    def _wrap(self, case_id: str, version: int, key: bytes) -> bytes:
        ring = self._ring_now()
        kek_version = ring.current
        nonce = os.urandom(NONCE_BYTES)
        wrapped = AESGCM(ring.keys[kek_version]).encrypt(
            nonce, key, _key_ad(case_id, version, kek_version)
        )
        record = {"kv": version, "kek": kek_version, "n": _b64(nonce), "wrapped": _b64(wrapped)}
        return json.dumps(record).encode()

    def _unwrap(self, case_id: str, raw: bytes) -> tuple[int, bytes]:
        record = json.loads(raw)
        version, kek_version = int(record["kv"]), int(record["kek"])
        ring = self._ring_now()
        if kek_version not in ring.keys:
            raise KeyCustodyError(
                f"case key of {case_id} is wrapped under unknown KEK {kek_version}"
            )
        try:
            key = AESGCM(ring.keys[kek_version]).decrypt(
                base64.b64decode(record["n"]),
                base64.b64decode(record["wrapped"]),
                _key_ad(case_id, version, kek_version),
            )
        except InvalidTag:
            raise KeyCustodyError(f"case key record of {case_id} does not unwrap") from None
        return version, key


def _key_ad(case_id: str, version: int, kek_version: int) -> bytes:
    return f"nrm-case-key/2|{case_id}|{version}|{kek_version}".encode()


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_ino, stat.st_mtime_ns
