"""`verify_bundle` in chunks and with worker processes reaches the same verdict, the same
failure (leaf index, reason, checkpoint) and the same report as the one-leaf-at-a-time
verifier it replaced (kept below as the reference), on untouched bundles and on every tamper
kind of test_audit_bundle.py, whatever the chunk size and the number of jobs."""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from services.audit.bundle import (
    CHECKPOINTS_DIR,
    LEAVES_FILE,
    Failure,
    Report,
    _Stop,
    checkpoint_files,
    iter_leaves,
    open_checkpoint,
    verify_bundle,
)
from services.audit.checkpoint import Checkpoint, VerifierKey
from services.audit.domain import LeafError, parse_leaf
from services.audit.log import LogState
from services.audit.merkle import CompactRange, leaf_hash
from services.cli import main
from tests.unit.test_audit_bundle import (
    IMPOSTOR,
    ORIGIN,
    SIGNER,
    T0,
    bundle,
    entry,
    rewrite_leaves,
    write,
)


def reference(directory: Path, since: bytes | None = None) -> Report:
    """The verifier before chunks and jobs (commit 7c16bbb), leaf by leaf."""
    report = Report(trust="given keys")
    keys: list[VerifierKey] = [SIGNER.verifier]
    try:
        roots: dict[int, tuple[str, bytes]] = {}
        previous_size = -1
        for path in checkpoint_files(directory):
            checkpoint = open_checkpoint(path.read_bytes(), keys, path.name)
            if checkpoint.size < previous_size:
                reason = f"size went back from {previous_size} to {checkpoint.size}"
                raise _Stop(Failure("integrity", reason, checkpoint=path.name))
            known = roots.get(checkpoint.size)
            if known is not None and known[1] != checkpoint.root:
                reason = (
                    f"two checkpoints of size {checkpoint.size} with different roots ({known[0]})"
                )
                raise _Stop(Failure("integrity", reason, checkpoint=path.name))
            roots.setdefault(checkpoint.size, (path.name, checkpoint.root))
            previous_size = checkpoint.size
            report.checkpoints += 1
        if since is not None:
            kept = open_checkpoint(since, keys, "--since")
            known = roots.get(kept.size)
            if known is not None and known[1] != kept.root:
                reason = f"your checkpoint of size {kept.size} and {known[0]} have different roots"
                raise _Stop(Failure("integrity", reason, checkpoint="--since"))
            roots.setdefault(kept.size, ("--since", kept.root))
            report.since_size = kept.size
        report.signed_size = max((s for s, (n, _) in roots.items() if n != "--since"), default=0)
        tree = CompactRange()
        hashes: list[bytes] = []
        suspect: int | None = None
        if 0 in roots and roots[0][1] != tree.root():
            raise _Stop(Failure("integrity", "the empty tree has another root", None, roots[0][0]))
        for position, raw in iter_leaves(directory / LEAVES_FILE):
            try:
                leaf = parse_leaf(raw)
            except LeafError as exc:
                raise _Stop(Failure("integrity", str(exc), position)) from None
            if leaf.index != position:
                reason = (
                    f"the leaf at this position says index {leaf.index}: "
                    "a leaf was deleted, inserted or moved"
                )
                raise _Stop(Failure("integrity", reason, position))
            if position == 0 and leaf.prev is not None:
                raise _Stop(Failure("integrity", "the first leaf names a previous leaf", 0))
            linked = position == 0 or leaf.prev == hashes[-1].hex()
            if suspect is not None:
                if linked:
                    raise _Stop(Failure("integrity", _changed(suspect - 1), suspect - 1))
                raise _Stop(Failure("integrity", _changed(suspect), suspect))
            if not linked:
                suspect = position
            hashed = leaf_hash(raw)
            tree.append(hashed)
            hashes = [*hashes[-1:], hashed]
            known = roots.get(tree.size)
            if suspect is None and known is not None and known[1] != tree.root():
                reason = f"leaves 0..{position} do not hash to the root signed in {known[0]}"
                raise _Stop(Failure("integrity", reason, position, known[0]))
            report.leaves = tree.size
        if suspect is not None:
            raise _Stop(Failure("integrity", _changed(suspect - 1), suspect - 1))
        report.root = tree.root().hex()
        biggest = max(roots, default=0)
        if tree.size < biggest:
            name = roots[biggest][0]
            reason = f"the bundle ends after {tree.size} leaves but {name} covers {biggest}"
            raise _Stop(Failure("integrity", reason, tree.size, name))
    except _Stop as stop:
        report.failure = stop.failure
    return report


def _changed(index: int) -> str:
    return f"leaf {index} was changed: it no longer hashes to what the next leaf records"


def verdicts(directory: Path, since: bytes | None = None, jobs: tuple[int, ...] = (1, 2)) -> None:
    """Every way of verifying gives the reference's report, field for field."""
    expected = reference(directory, since).as_json()
    leaf_bytes = max(1, (directory / LEAVES_FILE).stat().st_size // max(1, expected["leaves"]))
    for n in jobs:
        for chunk in (1, 3 * leaf_bytes, 1 << 20):  # a line, ~3 leaves, the default size
            got = verify_bundle(directory, [SIGNER.verifier], since, jobs=n, chunk_bytes=chunk)
            assert got.as_json() == expected, (n, chunk)


Tamper = Callable[[Path, list[bytes], list[bytes]], bytes | None]


def flip(seed: int) -> Tamper:
    def tamper(directory: Path, leaves: list[bytes], _notes: list[bytes]) -> None:
        rng = random.Random(seed)
        index = rng.randrange(len(leaves))
        raw = bytearray(leaves[index])
        raw[rng.randrange(len(raw))] ^= 0x01
        rewrite_leaves(directory, [*leaves[:index], bytes(raw), *leaves[index + 1 :]])

    return tamper


def relink(index: int) -> Tamper:
    def tamper(directory: Path, leaves: list[bytes], _notes: list[bytes]) -> None:
        raw = leaves[index]
        at = raw.find(b'"prev":"') + len(b'"prev":"')
        changed = raw[:at] + (b"0" if raw[at : at + 1] != b"0" else b"1") + raw[at + 1 :]
        rewrite_leaves(directory, [*leaves[:index], changed, *leaves[index + 1 :]])

    return tamper


def delete(d: Path, leaves: list[bytes], _n: list[bytes]) -> None:
    rewrite_leaves(d, leaves[:7] + leaves[8:])


def insert(d: Path, leaves: list[bytes], _n: list[bytes]) -> None:
    rewrite_leaves(d, [*leaves[:9], leaves[2], *leaves[9:]])


def swap(d: Path, leaves: list[bytes], _n: list[bytes]) -> None:
    rewrite_leaves(d, [*leaves[:11], leaves[12], leaves[11], *leaves[13:]])


def truncate(d: Path, leaves: list[bytes], _n: list[bytes]) -> None:
    rewrite_leaves(d, leaves[:13])


def cut_line(d: Path, leaves: list[bytes], _n: list[bytes]) -> None:
    (d / LEAVES_FILE).write_bytes(b"".join(r + b"\n" for r in leaves)[:-5])


def cut_after_a_broken_link(d: Path, leaves: list[bytes], notes: list[bytes]) -> None:
    relink(len(leaves) - 2)(d, leaves, notes)
    (d / LEAVES_FILE).write_bytes((d / LEAVES_FILE).read_bytes()[:-5])


def blank_line(d: Path, leaves: list[bytes], _n: list[bytes]) -> None:
    rewrite_leaves(d, [*leaves[:4], b"", *leaves[4:]])


def not_canonical(d: Path, leaves: list[bytes], _n: list[bytes]) -> None:
    spaced = json.dumps(json.loads(leaves[6])).encode()
    rewrite_leaves(d, [*leaves[:6], spaced, *leaves[7:]])


def first_names_a_previous(d: Path, leaves: list[bytes], _n: list[bytes]) -> None:
    rewrite_leaves(d, [leaves[1], *leaves[1:]])


def forge_signature(d: Path, _l: list[bytes], notes: list[bytes]) -> None:
    note = bytearray(notes[-1])
    note[-6] = ord("A") if note[-6] != ord("A") else ord("B")
    sorted((d / CHECKPOINTS_DIR).iterdir())[-1].write_bytes(bytes(note))


def impostor_checkpoint(d: Path, _l: list[bytes], notes: list[bytes]) -> None:
    text = notes[-1].decode().split("\n\n")[0] + "\n"
    sorted((d / CHECKPOINTS_DIR).iterdir())[-1].write_bytes(IMPOSTOR.sign(text))


def fork(d: Path, leaves: list[bytes], _n: list[bytes]) -> None:
    other = SIGNER.sign(Checkpoint(ORIGIN, len(leaves), b"\x42" * 32).text())
    (d / CHECKPOINTS_DIR / "9999999999.note").write_bytes(other)


def size_back(d: Path, _l: list[bytes], notes: list[bytes]) -> None:
    (d / CHECKPOINTS_DIR / "9999999999.note").write_bytes(notes[0])


def rewrite_chain(d: Path, leaves: list[bytes], _n: list[bytes]) -> None:
    """Leaf 10 changed and every later leaf re-linked: only the signed root catches it."""
    state = LogState()
    rewritten = []
    for index in range(len(leaves)):
        e = parse_leaf(leaves[index])
        if index == 10:
            e = e.model_copy(update={"action": "referral.revoked"})
        raw = state.leaf_for(e.model_copy(update={"prev": None}), "urn:nrm-hub:kg:audit", T0)
        state.appended(raw)
        rewritten.append(raw)
    rewrite_leaves(d, rewritten)


def rewrite_and_resign(d: Path, leaves: list[bytes], _n: list[bytes]) -> None:
    state = LogState()
    rewritten = []
    for index in range(len(leaves)):
        e = entry(index)
        raw = state.leaf_for(e, "urn:nrm-hub:kg:audit", T0)
        state.appended(raw)
        rewritten.append(raw)
    shutil.rmtree(d)
    write(d, rewritten, [state.signed_checkpoint(IMPOSTOR)])


def slow_path_leaves(d: Path, leaves: list[bytes], _n: list[bytes]) -> None:
    """A sound log whose leaves carry non-ASCII text (the slow path) among plain ones: it
    still verifies, with a new signed checkpoint."""
    state = LogState()
    rewritten = []
    for index in range(len(leaves)):
        e = entry(index)
        if index % 3 == 1:
            e = e.model_copy(update={"action": "victim.identified\u2014\u00e9"})
        raw = state.leaf_for(e, "urn:nrm-hub:kg:audit", T0)
        state.appended(raw)
        rewritten.append(raw)
    shutil.rmtree(d)
    write(d, rewritten, [state.signed_checkpoint(SIGNER)])


TAMPERS: dict[str, Tamper | None] = {
    "untouched": None,
    "flip-a": flip(1),
    "flip-b": flip(2),
    "flip-c": flip(3),
    "relink-middle": relink(5),
    "relink-last": relink(16),
    "relink-first-after-0": relink(1),
    "delete": delete,
    "insert": insert,
    "swap": swap,
    "truncate": truncate,
    "cut-line": cut_line,
    "cut-after-broken-link": cut_after_a_broken_link,
    "blank-line": blank_line,
    "not-canonical": not_canonical,
    "first-names-a-previous": first_names_a_previous,
    "forge-signature": forge_signature,
    "impostor-checkpoint": impostor_checkpoint,
    "fork": fork,
    "size-back": size_back,
    "rewrite-chain": rewrite_chain,
    "rewrite-and-resign": rewrite_and_resign,
    "slow-path-leaves": slow_path_leaves,
}


@pytest.mark.parametrize("name", list(TAMPERS))
def test_jobs_and_chunks_give_the_references_verdict(tmp_path: Path, name: str) -> None:
    directory, leaves, notes = bundle(tmp_path, 17)
    tamper = TAMPERS[name]
    if tamper is not None:
        tamper(directory, leaves, notes)
    verdicts(directory)


@pytest.mark.parametrize("size", [0, 1, 2, 64])
def test_small_and_empty_logs(tmp_path: Path, size: int) -> None:
    directory, _, _ = bundle(tmp_path, size)
    verdicts(directory)


def test_kept_checkpoints(tmp_path: Path) -> None:
    directory, _, notes = bundle(tmp_path, 64)
    verdicts(directory, since=notes[1])
    forked = SIGNER.sign(Checkpoint(ORIGIN, 32, b"\x01" * 32).text())
    verdicts(directory, since=forked, jobs=(1,))
    state = LogState()
    for index in range(70):
        state.appended(state.leaf_for(entry(index), "urn:nrm-hub:kg:audit", T0))
    verdicts(directory, since=state.signed_checkpoint(SIGNER), jobs=(1,))


def test_a_large_log_with_many_tampered_places_in_worker_processes(tmp_path: Path) -> None:
    directory, leaves, _ = bundle(tmp_path, 2000)
    verdicts(directory, jobs=(2,))
    for seed in range(3):
        flip(seed)(directory, leaves, [])
        verdicts(directory, jobs=(3,))


def test_the_cli_gives_the_same_answer_with_any_jobs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory, leaves, _ = bundle(tmp_path, 17)
    rewrite_leaves(directory, [*leaves[:5], *leaves[6:]])
    printed = []
    for jobs in ("1", "2"):
        assert main(["audit", "verify", str(directory), "--json", "--jobs", jobs]) == 1
        printed.append(capsys.readouterr().out)
    assert printed[0] == printed[1] and json.loads(printed[0])["failure"]["index"] == 5
    with pytest.raises(SystemExit):
        main(["audit", "verify", str(directory), "--jobs", "0"])
    (directory / LEAVES_FILE).unlink()  # unreadable input: exit 2 either way
    for jobs in ("1", "2"):
        assert main(["audit", "verify", str(directory), "--jobs", jobs]) == 2
    capsys.readouterr()
