"""A second verifier written from docs/AUDIT-BUNDLE.md alone (no services.audit import in the
checking code): it must accept what `nrm audit export` writes and agree on the root, which
shows the document says enough to verify a bundle independently."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tests.unit.test_audit_bundle import SIGNER, bundle


def independent_root(leaf_hashes: list[bytes]) -> bytes:
    """MTH of RFC 6962 §2.1, recursively (fine for a test)."""
    if not leaf_hashes:
        return hashlib.sha256(b"").digest()
    if len(leaf_hashes) == 1:
        return leaf_hashes[0]
    k = 1
    while k * 2 < len(leaf_hashes):
        k *= 2
    left, right = independent_root(leaf_hashes[:k]), independent_root(leaf_hashes[k:])
    return hashlib.sha256(b"\x01" + left + right).digest()


def independent_verify(directory: Path) -> tuple[int, bytes]:
    keys = {}
    for line in (directory / "keys.vkey").read_text().splitlines():
        name, key_id, blob = line.split("+", 2)
        raw = base64.b64decode(blob)
        assert raw[0] == 1 and len(raw) == 33
        assert hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4].hex() == key_id
        keys[(name, bytes.fromhex(key_id))] = raw[1:]
    roots: dict[int, bytes] = {}
    for path in sorted((directory / "checkpoints").glob("*.note")):
        note = path.read_bytes().decode()
        split = note.rindex("\n\n")
        text, signatures = note[: split + 1], note[split + 2 :].splitlines()
        verified = False
        for line in signatures:
            assert line.startswith("\u2014 ")
            name, blob = line[2:].split(" ")
            sig = base64.b64decode(blob)
            if (name, sig[:4]) in keys:
                Ed25519PublicKey.from_public_bytes(keys[(name, sig[:4])]).verify(
                    sig[4:], text.encode()
                )
                verified = True
        assert verified
        origin, size, root = text.split("\n")[:3]
        assert origin == "nrm-hub.kg/audit"
        assert roots.setdefault(int(size), base64.b64decode(root)) == base64.b64decode(root)
    hashes: list[bytes] = []
    for index, line in enumerate((directory / "leaves.jsonl").read_bytes().split(b"\n")[:-1]):
        value = json.loads(line)
        canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        assert canonical.encode() == line
        assert value["type"] == "audit.recorded" and value["data"]["index"] == index
        assert value["subject"] == str(index)
        if index:
            assert value["data"]["prev"] == hashes[-1].hex()
        hashes.append(hashlib.sha256(b"\x00" + line).digest())
        if len(hashes) in roots:
            assert independent_root(hashes) == roots[len(hashes)]
    assert len(hashes) >= max(roots, default=0)
    return len(hashes), independent_root(hashes)


def test_an_independent_verifier_agrees(tmp_path: Path) -> None:
    from services.audit.bundle import verify_bundle

    directory, leaves, _ = bundle(tmp_path, 100)
    size, root = independent_verify(directory)
    report = verify_bundle(directory, [SIGNER.verifier])
    assert size == len(leaves) == report.leaves and root.hex() == report.root
