"""Checkpoints as C2SP signed notes (`tlog-checkpoint` body, `signed-note` framing), Ed25519.

A checkpoint body is three lines: origin, tree size in decimal, base64 root hash. A signed note
is the body, a blank line, then one line per signature: U+2014, space, key name, space,
base64(4-byte key id || 64-byte signature). The signature covers the body with its final
newline. Key id = SHA-256(name || 0x0A || 0x01 || public key)[:4]. A verifier key is written
`name+<key id hex>+base64(0x01 || public key)`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from services.audit.merkle import HASH_SIZE

ED25519 = 0x01
SIGNATURE_PREFIX = "\u2014 "
MAX_SIGNATURES = 100
_NAME_RE = re.compile(r"^[^\s+]+$")
_SIZE_RE = re.compile(r"^(0|[1-9][0-9]*)$")
# Any character below space but the newline that ends each line (one C scan per note).
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")


class NoteError(ValueError):
    """The note is not well formed (an integrity failure)."""


class TrustError(ValueError):
    """No trusted key signed the note, or a trusted key's signature is wrong."""


def key_id(name: str, public_key: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([ED25519]) + public_key).digest()[:4]


def _check_name(name: str) -> str:
    if not name or not _NAME_RE.match(name):
        raise ValueError(f"key name {name!r} must be non-empty without spaces or '+'")
    return name


@dataclass(frozen=True)
class VerifierKey:
    name: str
    public_key: bytes  # raw 32 bytes

    @property
    def id(self) -> bytes:
        return key_id(self.name, self.public_key)

    def encode(self) -> str:
        blob = base64.b64encode(bytes([ED25519]) + self.public_key).decode()
        return f"{self.name}+{self.id.hex()}+{blob}"

    @classmethod
    def parse(cls, text: str) -> VerifierKey:
        parts = text.strip().split("+", 2)  # base64 may itself contain "+"
        if len(parts) != 3:
            raise ValueError("a verifier key is name+keyid+base64 key")
        name, hex_id, blob = parts
        try:
            raw = base64.b64decode(blob, validate=True)
        except binascii.Error:
            raise ValueError("verifier key: the key is not base64") from None
        if len(raw) != 33 or raw[0] != ED25519:
            raise ValueError("verifier key: only Ed25519 (type 0x01, 32 bytes) is supported")
        key = cls(_check_name(name), raw[1:])
        if key.id.hex() != hex_id.lower():
            raise ValueError("verifier key: the key id does not match the name and key")
        return key

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class Signer:
    name: str
    private_key: Ed25519PrivateKey

    @property
    def verifier(self) -> VerifierKey:
        raw = self.private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return VerifierKey(self.name, raw)

    def sign(self, text: str) -> bytes:
        """The signed note: text (ending in one newline), blank line, signature line."""
        body = _check_text(text)
        signature = self.private_key.sign(body)
        blob = base64.b64encode(self.verifier.id + signature).decode()
        return body + f"\n{SIGNATURE_PREFIX}{self.name} {blob}\n".encode()


def create_signing_key(path: Path) -> None:
    """Write a new Ed25519 private key (32-byte seed) readable only by its owner, unless one
    exists."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(os.urandom(32))


def load_signer(path: Path, name: str) -> Signer:
    try:
        seed = path.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"audit signing key file {path} does not exist") from None
    if len(seed) != 32:
        raise ValueError(f"audit signing key file {path} must hold exactly 32 bytes")
    return Signer(_check_name(name), Ed25519PrivateKey.from_private_bytes(seed))


def _check_text(text: str) -> bytes:
    if not text.endswith("\n") or "\n\n" in text or text.startswith("\n"):
        raise NoteError("note text must end in one newline and have no blank line")
    if any(ord(c) < 0x20 and c != "\n" for c in text):
        raise NoteError("note text has a control character")
    return text.encode()


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes

    def text(self) -> str:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "":
            raise NoteError("a checkpoint has an origin, a size and a root line")
        origin, size, root_b64 = lines[0], lines[1], lines[2]
        if not origin:
            raise NoteError("checkpoint origin is empty")
        if not _SIZE_RE.match(size):
            raise NoteError("checkpoint size is not a decimal number")
        try:
            root = base64.b64decode(root_b64, validate=True)
        except binascii.Error:
            raise NoteError("checkpoint root is not base64") from None
        if len(root) != HASH_SIZE:
            raise NoteError("checkpoint root is not 32 bytes")
        return cls(origin, int(size), root)


def open_note(raw: bytes, trusted: Sequence[VerifierKey]) -> tuple[str, list[str]]:
    """The note's text and the names of the trusted keys that signed it. NoteError if it is
    malformed; TrustError if no trusted key signed it or a trusted key's signature is wrong."""
    try:
        note = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise NoteError("note is not UTF-8") from None
    if _CONTROL.search(note) is not None:
        raise NoteError("note has a control character")
    split = note.rfind("\n\n")
    if split < 0 or not note.endswith("\n"):
        raise NoteError("note has no signature block")
    text, block = note[: split + 1], note[split + 2 :]
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError("note has too many signatures")
    signed_by: list[str] = []
    for line in lines:
        if not line.startswith(SIGNATURE_PREFIX):
            raise NoteError("a signature line must start with an em dash and a space")
        parts = line[len(SIGNATURE_PREFIX) :].split(" ")
        if len(parts) != 2:
            raise NoteError("a signature line is: em dash, name, signature")
        name, blob = parts
        try:
            sig = base64.b64decode(blob, validate=True)
        except binascii.Error:
            raise NoteError("a signature is not base64") from None
        if len(sig) < 5:
            raise NoteError("a signature is too short")
        key = next((k for k in trusted if k.name == name and k.id == sig[:4]), None)
        if key is None:
            continue  # unknown signers are ignored (e.g. witnesses we do not track)
        if not key.verify(text.encode(), sig[4:]):
            raise TrustError(f"the signature by {name} does not verify")
        signed_by.append(name)
    if not signed_by:
        raise TrustError("no signature by a trusted key")
    return text, signed_by
