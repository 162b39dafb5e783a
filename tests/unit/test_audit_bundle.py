"""Offline verification of audit bundles: an untouched bundle verifies; every tamper of the
battery (flip a byte, delete, insert, reorder, truncate, forge a signature, two checkpoints of
one size) is detected with the right leaf index and reason. Logs of 0 to 2,000 leaves."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import shutil
import uuid
from functools import cache
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from contracts.operations import AuditActor, AuditEntry, AuditSource
from services.audit.bundle import (
    CHECKPOINTS_DIR,
    LEAVES_FILE,
    BundleWriter,
    build_inclusion_proof,
    verify_bundle,
    verify_inclusion_proof,
)
from services.audit.checkpoint import Checkpoint, Signer
from services.audit.domain import LeafError, parse_leaf
from services.audit.log import LogState
from services.cli import main

ORIGIN = "nrm-hub.kg/audit"
SIGNER = Signer(ORIGIN, Ed25519PrivateKey.from_private_bytes(b"\x11" * 32))
IMPOSTOR = Signer(ORIGIN, Ed25519PrivateKey.from_private_bytes(b"\x22" * 32))
T0 = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
SIZES = [0, 1, 2, 3, 5, 8, 17, 64, 100, 255, 1000, 2000]


def entry(index: int) -> AuditEntry:
    rng = random.Random(index)
    return AuditEntry(
        index=index,
        time=T0 + dt.timedelta(seconds=index),
        action=rng.choice(["victim.identified", "referral.accepted", "access.granted"]),
        actor=AuditActor(
            agency="kg-ngo-osh-crisis-centre", role="ngo", service="urn:nrm-hub:kg:referral"
        ),
        ids={"case_id": str(uuid.UUID(int=rng.getrandbits(128)))},
        purpose="assistance" if index % 3 == 0 else None,
        source=AuditSource(
            stream="NRM_EVENTS",
            sequence=index + 1,
            id=str(uuid.UUID(int=rng.getrandbits(128))),
            sha256=hashlib.sha256(index.to_bytes(8, "big")).hexdigest(),
        ),
    )


@cache
def generated(size: int) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    """(leaves, checkpoint notes): a checkpoint every ~size/4 leaves and one at the end."""
    state = LogState()
    leaves: list[bytes] = []
    notes: list[bytes] = []
    every = max(1, size // 4)
    for index in range(size):
        raw = state.leaf_for(entry(index), "urn:nrm-hub:kg:audit", T0)
        state.appended(raw)
        leaves.append(raw)
        if (index + 1) % every == 0 and index + 1 != size:
            notes.append(state.signed_checkpoint(SIGNER))
    notes.append(state.signed_checkpoint(SIGNER))
    return tuple(leaves), tuple(notes)


def write(directory: Path, leaves: list[bytes], notes: list[bytes]) -> Path:
    writer = BundleWriter(directory)
    for raw in leaves:
        writer.leaf(raw)
    for seq, note in enumerate(notes, 1):
        writer.checkpoint(seq, note)
    writer.close([SIGNER.verifier], ORIGIN)
    return directory


def bundle(tmp_path: Path, size: int) -> tuple[Path, list[bytes], list[bytes]]:
    leaves, notes = generated(size)
    return write(tmp_path / "bundle", list(leaves), list(notes)), list(leaves), list(notes)


def rewrite_leaves(directory: Path, leaves: list[bytes]) -> None:
    (directory / LEAVES_FILE).write_bytes(b"".join(raw + b"\n" for raw in leaves))


def failure_of(directory: Path) -> tuple[int, int | None, str]:
    report = verify_bundle(directory, [SIGNER.verifier])
    assert report.failure is not None, "tampering went undetected"
    return report.exit_code, report.failure.index, report.failure.reason


@pytest.mark.parametrize("size", SIZES)
def test_an_untouched_bundle_verifies(tmp_path: Path, size: int) -> None:
    directory, _leaves, _ = bundle(tmp_path, size)
    report = verify_bundle(directory, [SIGNER.verifier])
    assert report.failure is None and report.exit_code == 0
    assert report.leaves == size == report.signed_size
    # Without pinned keys it still verifies, and says whose keys it trusted.
    unpinned = verify_bundle(directory)
    assert unpinned.exit_code == 0 and "unpinned" in unpinned.trust and unpinned.warnings


@pytest.mark.parametrize("size", [s for s in SIZES if s > 0])
def test_a_flipped_byte_is_found_at_its_leaf(tmp_path: Path, size: int) -> None:
    directory, leaves, _ = bundle(tmp_path, size)
    rng = random.Random(size)
    for _ in range(12 if size <= 255 else 4):
        index = rng.randrange(size)
        position = rng.randrange(len(leaves[index]))
        tampered = list(leaves)
        raw = bytearray(leaves[index])
        raw[position] ^= 0x01
        tampered[index] = bytes(raw)
        rewrite_leaves(directory, tampered)
        code, found, reason = failure_of(directory)
        prev_at = leaves[index].find(b'"prev":"') + len(b'"prev":"')
        in_prev = index > 0 and prev_at <= position < prev_at + 64
        # Documented limit: a change to the *last* leaf's `prev` cannot be told apart from a
        # change to the leaf before it; it is reported there.
        try:
            parse_leaf(bytes(raw))
            still_a_leaf = True
        except LeafError:
            still_a_leaf = False
        expected = index - 1 if in_prev and still_a_leaf and index == size - 1 else index
        assert (code, found) == (1, expected), reason


@pytest.mark.parametrize(("size", "index", "expected"), [(8, 3, 3), (8, 7, 6), (2, 1, 0)])
def test_a_changed_link_still_valid_is_localised(
    tmp_path: Path, size: int, index: int, expected: int
) -> None:
    """A hex digit of `prev` changed to another hex digit: the leaf still parses, only the
    links show it. On the last leaf it is reported one earlier (documented limit)."""
    directory, leaves, _ = bundle(tmp_path, size)
    raw = leaves[index]
    at = raw.find(b'"prev":"') + len(b'"prev":"')
    changed = raw[:at] + (b"0" if raw[at : at + 1] != b"0" else b"1") + raw[at + 1 :]
    parse_leaf(changed)  # still a well-formed leaf
    rewrite_leaves(directory, [*leaves[:index], changed, *leaves[index + 1 :]])
    assert failure_of(directory)[:2] == (1, expected)


@pytest.mark.parametrize("size", [s for s in SIZES if s > 1])
def test_a_deleted_leaf_is_found_where_it_is_missing(tmp_path: Path, size: int) -> None:
    directory, leaves, _ = bundle(tmp_path, size)
    index = random.Random(size).randrange(size - 1)
    rewrite_leaves(directory, leaves[:index] + leaves[index + 1 :])
    code, found, reason = failure_of(directory)
    assert (code, found) == (1, index) and "deleted, inserted or moved" in reason


@pytest.mark.parametrize("size", [s for s in SIZES if s > 1])
def test_an_inserted_leaf_is_found_where_it_was_put(tmp_path: Path, size: int) -> None:
    directory, leaves, _ = bundle(tmp_path, size)
    rng = random.Random(size)
    index, copied = rng.randrange(size), rng.randrange(size)
    if copied == index:
        copied = (index + 1) % size
    rewrite_leaves(directory, [*leaves[:index], leaves[copied], *leaves[index:]])
    code, found, reason = failure_of(directory)
    assert (code, found) == (1, index) and "deleted, inserted or moved" in reason


@pytest.mark.parametrize("size", [s for s in SIZES if s > 1])
def test_reordered_leaves_are_found_at_the_first_moved_one(tmp_path: Path, size: int) -> None:
    directory, leaves, _ = bundle(tmp_path, size)
    index = random.Random(size).randrange(size - 1)
    swapped = list(leaves)
    swapped[index], swapped[index + 1] = swapped[index + 1], swapped[index]
    rewrite_leaves(directory, swapped)
    assert failure_of(directory)[:2] == (1, index)


@pytest.mark.parametrize("size", [s for s in SIZES if s > 0])
def test_a_truncated_log_is_found_at_the_first_missing_leaf(tmp_path: Path, size: int) -> None:
    directory, leaves, _ = bundle(tmp_path, size)
    keep = random.Random(size).randrange(size)
    rewrite_leaves(directory, leaves[:keep])
    code, found, reason = failure_of(directory)
    assert (code, found) == (1, keep) and "ends after" in reason
    # Cut in the middle of a line: the cut line is named.
    (directory / LEAVES_FILE).write_bytes(b"".join(r + b"\n" for r in leaves)[:-5])
    assert failure_of(directory)[:2] == (1, size - 1)


@pytest.mark.parametrize("size", [0, 1, 64, 2000])
def test_a_forged_checkpoint_signature_is_a_trust_failure(tmp_path: Path, size: int) -> None:
    directory, _, notes = bundle(tmp_path, size)
    target = sorted((directory / CHECKPOINTS_DIR).iterdir())[-1]
    note = bytearray(notes[-1])
    note[-6] = ord("A") if note[-6] != ord("A") else ord("B")
    target.write_bytes(bytes(note))
    code, _, reason = failure_of(directory)
    assert code == 3 and "does not verify" in reason
    # Signed by a key the auditor does not hold: also a trust failure.
    text = notes[-1].decode().split("\n\n")[0] + "\n"
    target.write_bytes(IMPOSTOR.sign(text))
    code, _, reason = failure_of(directory)
    assert code == 3 and "no signature by a trusted key" in reason


@pytest.mark.parametrize("size", [1, 8, 2000])
def test_a_rewritten_log_with_a_forged_checkpoint_is_a_trust_failure(
    tmp_path: Path, size: int
) -> None:
    """The immudb lesson: a consistent-looking rewrite still needs the operator's key."""
    directory, _leaves, _ = bundle(tmp_path, size)
    state = LogState()
    rewritten = []
    for index in range(size):
        e = entry(index)
        if index == 0:
            e = e.model_copy(update={"action": "referral.revoked"})
        raw = state.leaf_for(e, "urn:nrm-hub:kg:audit", T0)
        state.appended(raw)
        rewritten.append(raw)
    shutil.rmtree(directory)
    write(directory, rewritten, [state.signed_checkpoint(IMPOSTOR)])
    assert failure_of(directory)[0] == 3


@pytest.mark.parametrize("size", [1, 5, 2000])
def test_two_checkpoints_of_one_size_with_different_roots(tmp_path: Path, size: int) -> None:
    directory, _, _notes = bundle(tmp_path, size)
    other = SIGNER.sign(Checkpoint(ORIGIN, size, b"\x42" * 32).text())
    (directory / CHECKPOINTS_DIR / "9999999999.note").write_bytes(other)
    code, _, reason = failure_of(directory)
    assert code == 1 and "two checkpoints of size" in reason


def test_a_checkpoint_whose_size_goes_back_is_refused(tmp_path: Path) -> None:
    directory, _, notes = bundle(tmp_path, 100)
    (directory / CHECKPOINTS_DIR / "9999999999.note").write_bytes(notes[0])
    code, _, reason = failure_of(directory)
    assert code == 1 and "went back" in reason


def test_a_chain_rewritten_after_a_leaf_is_caught_by_the_signed_root(tmp_path: Path) -> None:
    """Changing leaf 10 and re-linking every later leaf keeps the chain whole; the signed
    root at the next checkpoint still catches it."""
    directory, leaves, _notes = bundle(tmp_path, 40)
    state = LogState()
    rewritten = []
    for index in range(40):
        e = parse_leaf(leaves[index])
        if index == 10:
            e = e.model_copy(update={"action": "referral.revoked"})
        raw = state.leaf_for(e.model_copy(update={"prev": None}), "urn:nrm-hub:kg:audit", T0)
        state.appended(raw)
        rewritten.append(raw)
    rewrite_leaves(directory, rewritten)
    code, found, reason = failure_of(directory)
    assert code == 1 and found is not None and found >= 10 and "root signed" in reason


def test_your_kept_checkpoint_must_be_consistent(tmp_path: Path) -> None:
    directory, _leaves, notes = bundle(tmp_path, 64)
    kept = notes[1]
    assert verify_bundle(directory, [SIGNER.verifier], since=kept).exit_code == 0
    forked = SIGNER.sign(
        Checkpoint(
            ORIGIN, Checkpoint.parse(kept.decode().split("\n\n")[0] + "\n").size, b"\x01" * 32
        ).text()
    )
    report = verify_bundle(directory, [SIGNER.verifier], since=forked)
    assert report.exit_code == 1 and report.failure is not None
    # A kept checkpoint beyond the bundle means the bundle is missing leaves.
    state = LogState()
    for index in range(70):
        state.appended(state.leaf_for(entry(index), "urn:nrm-hub:kg:audit", T0))
    later = state.signed_checkpoint(SIGNER)
    report = verify_bundle(directory, [SIGNER.verifier], since=later)
    assert report.exit_code == 1 and report.failure is not None and report.failure.index == 64


@pytest.mark.parametrize("size", [1, 2, 7, 64, 1000])
def test_inclusion_proofs_verify_offline_and_refuse_tampering(tmp_path: Path, size: int) -> None:
    directory, leaves, _ = bundle(tmp_path, size)
    for index in {0, size // 2, size - 1}:
        proof = build_inclusion_proof(directory, index)
        document = json.dumps(proof).encode()
        assert verify_inclusion_proof(document)[0] == 0
        assert verify_inclusion_proof(document, [SIGNER.verifier])[0] == 0
        assert verify_inclusion_proof(document, [IMPOSTOR.verifier])[0] == 3
        if size > 1:
            wrong_leaf = dict(proof, leaf=leaves[(index + 1) % size].decode())
            assert verify_inclusion_proof(json.dumps(wrong_leaf).encode())[0] == 1
        if proof["proof"]:
            flipped = list(proof["proof"])  # type: ignore[call-overload]
            flipped[0] = ("0" if flipped[0][0] != "0" else "1") + flipped[0][1:]
            assert verify_inclusion_proof(json.dumps(dict(proof, proof=flipped)).encode())[0] == 1
        assert verify_inclusion_proof(b"{not json")[0] == 2


def test_the_cli_exit_codes_and_json_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory, leaves, _ = bundle(tmp_path, 17)
    keyfile = tmp_path / "trusted.vkey"
    keyfile.write_text(SIGNER.verifier.encode() + "\n")
    assert main(["audit", "verify", str(directory), "--key", str(keyfile), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["leaves"] == 17 and report["trust"] == "given keys"
    impostor = tmp_path / "impostor.vkey"
    impostor.write_text(IMPOSTOR.verifier.encode() + "\n")
    assert main(["audit", "verify", str(directory), "--key", str(impostor)]) == 3
    assert "TRUST FAILURE" in capsys.readouterr().out
    rewrite_leaves(directory, [*leaves[:5], *leaves[6:]])
    assert main(["audit", "verify", str(directory), "--json"]) == 1
    failure = json.loads(capsys.readouterr().out)["failure"]
    assert failure["index"] == 5 and failure["kind"] == "integrity"
    assert main(["audit", "verify", str(tmp_path / "absent")]) == 2
    garbage = tmp_path / "garbage.vkey"
    garbage.write_text("not a key\n")
    assert main(["audit", "verify", str(directory), "--key", str(garbage)]) == 2
