"""The verifier appends each chunk's leaves to its tree by aligned subtree roots built in the
workers (merkle.subtree_levels, CompactRange.extend_levels), not one leaf at a time. Whatever
the log's size, the checkpoints' sizes (right or wrong roots, inside a chunk or on its edge),
the chunk size and a tampered leaf, the report is the one-leaf-at-a-time reference's
(test_audit_verify_jobs.reference), field for field: the root, the failure, its leaf and its
checkpoint. Progress is still reported at every multiple of PROGRESS_EVERY."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.audit import bundle as bundle_module
from services.audit.bundle import verify_bundle
from services.audit.checkpoint import Checkpoint
from services.audit.log import LogState
from tests.unit.test_audit_bundle import ORIGIN, SIGNER, T0, entry, generated, write
from tests.unit.test_audit_verify_jobs import reference

LEAF_BYTES = len(generated(4)[0][1]) + 1  # about one line of these logs


def log_with_checkpoints(
    size: int, sizes: list[int], wrong: set[int]
) -> tuple[list[bytes], list[bytes]]:
    """`size` linked leaves and a checkpoint at each of `sizes` (sorted), signed by the
    trusted key; those at a size in `wrong` sign another root."""
    state = LogState()
    leaves: list[bytes] = []
    notes: list[bytes] = []
    pending = sorted(sizes)
    for index in range(max([size, *sizes])):
        while pending and pending[0] == state.size:
            notes.append(_note(state, pending.pop(0), wrong))
        raw = state.leaf_for(entry(index), "urn:nrm-hub:kg:audit", T0)
        state.appended(raw)
        leaves.append(raw)
    notes += [_note(state, s, wrong) for s in pending]
    return leaves[:size], notes


def _note(state: LogState, size: int, wrong: set[int]) -> bytes:
    root = state.checkpoint(ORIGIN).root if size == state.size else b"\x00" * 32
    if size in wrong:
        root = bytes([root[0] ^ 1]) + root[1:]
    return SIGNER.sign(Checkpoint(ORIGIN, size, root).text())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    size=st.integers(0, 140),
    sizes=st.lists(st.integers(0, 150), max_size=6),
    data=st.data(),
)
def test_any_log_checkpoints_and_chunks_give_the_references_report(
    size: int, sizes: list[int], data: st.DataObject
) -> None:
    wrong = set(data.draw(st.lists(st.sampled_from(sizes), max_size=2))) if sizes else set()
    leaves, notes = log_with_checkpoints(size, sizes, wrong)
    if leaves and data.draw(st.booleans()):  # a changed leaf, with or without a checkpoint after
        at = data.draw(st.integers(0, len(leaves) - 1))
        leaves[at] = leaves[at].replace(b'"action":"', b'"action":"x', 1)
    chunk_bytes = data.draw(st.integers(1, 40)) * LEAF_BYTES + data.draw(st.integers(-5, 5))
    with tempfile.TemporaryDirectory() as tmp:
        directory = write(Path(tmp) / "bundle", leaves, notes)
        expected = reference(directory).as_json()
        got = verify_bundle(directory, [SIGNER.verifier], jobs=1, chunk_bytes=max(1, chunk_bytes))
        assert got.as_json() == expected


@pytest.mark.parametrize("jobs", [1, 2])
def test_progress_is_reported_at_every_multiple_as_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jobs: int
) -> None:
    monkeypatch.setattr(bundle_module, "PROGRESS_EVERY", 7)
    leaves, notes = log_with_checkpoints(100, [3, 14, 50, 99, 100], set())
    directory = write(tmp_path / "bundle", leaves, notes)
    seen: list[int] = []
    report = verify_bundle(directory, [SIGNER.verifier], None, seen.append, jobs, 5 * LEAF_BYTES)
    assert report.failure is None and report.leaves == 100
    assert seen == list(range(7, 101, 7))
