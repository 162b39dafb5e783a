"""Audit bundles on disk (docs/AUDIT-BUNDLE.md): offline verification, streamed, and inclusion
proofs. No NATS here: an auditor runs this on a copy, trusting only the keys they hold.

Verification streams the leaves in runs of ~1 MiB of whole lines (checked in worker processes
with jobs > 1, services/audit/leaf_chunks.py) and keeps a compact range, to which it appends
each run's complete subtrees by their roots (hashed with the run), so memory is bounded by a
few runs, however long the log. Every leaf is checked (not only the ends): canonical form,
index = position, the link to the previous leaf, and the root at every checkpoint's size.
"""

from __future__ import annotations

import base64
import itertools
import json
import multiprocessing
import multiprocessing.context
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import BinaryIO

from services.audit.checkpoint import Checkpoint, NoteError, TrustError, VerifierKey, open_note
from services.audit.domain import LeafError, parse_leaf
from services.audit.leaf_chunks import CHUNK_BYTES, Chunk, check_range, chunk_bounds
from services.audit.merkle import (
    HASH_SIZE,
    CompactRange,
    ProofError,
    inclusion_ranges,
    leaf_hash,
    range_roots,
    verify_inclusion,
)

BUNDLE_FORMAT = "nrm-audit-bundle/1"
PROOF_FORMAT = "nrm-audit-inclusion-proof/1"
LEAVES_FILE = "leaves.jsonl"
CHECKPOINTS_DIR = "checkpoints"
KEYS_FILE = "keys.vkey"
MANIFEST_FILE = "MANIFEST.json"
EVENTS_FILE = "events.jsonl"  # optional: the audited events, for replay
NOTE_SUFFIX = ".note"

EXIT_OK, EXIT_INTEGRITY, EXIT_UNREADABLE, EXIT_TRUST = 0, 1, 2, 3
PROGRESS_EVERY = 10_000  # leaves between progress reports
# Chunks checked ahead of the walk: enough that the workers keep busy while this process opens
# the checkpoints (a hub's bundle has one a second: ~150 Ed25519 signatures, ~20 ms) instead
# of stopping after two each. A checked chunk waiting here is ~0.1 MB (its leaf hashes and
# subtree roots), so this bounds memory at a few MB, not growing with the log.
CHUNKS_AHEAD = 16
Progress = Callable[[int], None]


class BundleUnreadable(Exception):
    """The input cannot be read at all (missing file, bad key file): exit 2."""


@dataclass(frozen=True)
class Failure:
    kind: str  # "integrity" or "trust"
    reason: str
    index: int | None = None
    checkpoint: str | None = None

    @property
    def exit_code(self) -> int:
        return EXIT_TRUST if self.kind == "trust" else EXIT_INTEGRITY

    def describe(self) -> str:
        where = []
        if self.index is not None:
            where.append(f"leaf {self.index}")
        if self.checkpoint is not None:
            where.append(f"checkpoint {self.checkpoint}")
        return f"{', '.join(where) or 'bundle'}: {self.reason}"


@dataclass
class Report:
    leaves: int = 0
    checkpoints: int = 0
    signed_size: int = 0
    root: str | None = None
    trust: str = "bundle keys"
    since_size: int | None = None
    failure: Failure | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return self.failure.exit_code if self.failure else EXIT_OK

    def as_json(self) -> dict[str, object]:
        out = asdict(self)
        out["ok"] = self.failure is None
        out["exit_code"] = self.exit_code
        out["unsigned_tail"] = self.leaves - self.signed_size
        return out


class _Stop(Exception):
    def __init__(self, failure: Failure) -> None:
        self.failure = failure


def read_keys(path: Path) -> list[VerifierKey]:
    """Verifier keys, one per line (blank lines and # comments ignored)."""
    try:
        lines = path.read_text("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleUnreadable(f"cannot read keys {path}: {type(exc).__name__}") from None
    keys = []
    for number, line in enumerate(lines, 1):
        if line.strip() and not line.startswith("#"):
            try:
                keys.append(VerifierKey.parse(line))
            except ValueError as exc:
                raise BundleUnreadable(f"{path} line {number}: {exc}") from None
    return keys


def checkpoint_files(directory: Path) -> list[Path]:
    folder = directory / CHECKPOINTS_DIR
    if not folder.is_dir():
        raise BundleUnreadable(f"{folder} is not a directory")
    return sorted(p for p in folder.iterdir() if p.name.endswith(NOTE_SUFFIX))


def open_checkpoint(raw: bytes, keys: list[VerifierKey], name: str) -> Checkpoint:
    """A checkpoint signed by a trusted key whose name is its origin, or _Stop."""
    try:
        text, signers = open_note(raw, keys)
        checkpoint = Checkpoint.parse(text)
    except TrustError as exc:
        raise _Stop(Failure("trust", str(exc), checkpoint=name)) from None
    except NoteError as exc:
        raise _Stop(Failure("integrity", str(exc), checkpoint=name)) from None
    if checkpoint.origin not in signers:
        raise _Stop(Failure("trust", "no trusted key named after its origin signed it", None, name))
    return checkpoint


def iter_leaves(path: Path) -> Iterator[tuple[int, bytes]]:
    """(position, exact leaf bytes) one line at a time; _Stop on an unterminated last line."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise BundleUnreadable(f"cannot read {path}: {type(exc).__name__}") from None
    with handle:
        for position, line in enumerate(handle):
            if not line.endswith(b"\n"):
                raise _Stop(Failure("integrity", "the last line is cut short", position))
            yield position, line[:-1]


def verify_bundle(
    directory: Path,
    trusted: list[VerifierKey] | None = None,
    since: bytes | None = None,
    progress: Progress | None = None,
    jobs: int = 1,
    chunk_bytes: int = CHUNK_BYTES,
) -> Report:
    """Check everything in the bundle; the report names the first failure, if any. With
    jobs > 1, leaves are parsed and hashed in that many processes; the verdict is the same."""
    report = Report(trust="given keys" if trusted is not None else "bundle keys (unpinned)")
    keys = trusted if trusted is not None else read_keys(directory / KEYS_FILE)
    if trusted is None:
        report.warnings.append("trusting the keys inside the bundle: pass --key to pin yours")
    try:
        _verify(directory, keys, since, report, progress, jobs, chunk_bytes)
    except _Stop as stop:
        report.failure = stop.failure
    return report


def _verify(
    directory: Path,
    keys: list[VerifierKey],
    since: bytes | None,
    report: Report,
    progress: Progress | None,
    jobs: int,
    chunk_bytes: int,
) -> None:
    # The workers start on the leaves while this process opens the checkpoints (§6 step 1
    # still decides first: its failure is reported before any leaf's).
    with _ChunkFeed(directory / LEAVES_FILE, jobs, chunk_bytes) as chunks:
        roots = _signed_roots(directory, keys, since, report)
        _walk(chunks, roots, report, progress)


def _signed_roots(
    directory: Path, keys: list[VerifierKey], since: bytes | None, report: Report
) -> dict[int, tuple[str, bytes]]:
    """§6 steps 1-2: size -> (checkpoint name, root) of every checkpoint and the kept one."""
    roots: dict[int, tuple[str, bytes]] = {}
    previous_size = -1
    for path in checkpoint_files(directory):
        checkpoint = open_checkpoint(_read(path), keys, path.name)
        if checkpoint.size < previous_size:
            reason = f"size went back from {previous_size} to {checkpoint.size}"
            raise _Stop(Failure("integrity", reason, checkpoint=path.name))
        known = roots.get(checkpoint.size)
        if known is not None and known[1] != checkpoint.root:
            reason = f"two checkpoints of size {checkpoint.size} with different roots ({known[0]})"
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
    return roots


def _walk(
    chunks: Iterable[Chunk],
    roots: dict[int, tuple[str, bytes]],
    report: Report,
    progress: Progress | None,
) -> None:
    """§6 steps 3-6 over the checked chunks, in file order."""
    tree = CompactRange()
    if 0 in roots and roots[0][1] != tree.root():
        raise _Stop(Failure("integrity", "the empty tree has another root", None, roots[0][0]))
    walk = _LeafWalk(tree, roots, report, progress)
    for chunk in chunks:
        walk.take(chunk)
    if walk.suspect is not None:
        raise _Stop(Failure("integrity", _changed(walk.suspect - 1), walk.suspect - 1))
    report.root = tree.root().hex()
    biggest = max(roots, default=0)
    if tree.size < biggest:
        name = roots[biggest][0]
        reason = f"the bundle ends after {tree.size} leaves but {name} covers {biggest}"
        raise _Stop(Failure("integrity", reason, tree.size, name))


class _ChunkFeed:
    """The file's chunks, checked (leaf hashes and subtree roots, parsing, links inside each
    chunk), in file order; with jobs > 1 in that many worker processes, started as soon as
    the feed is made, at most CHUNKS_AHEAD (or 2 x jobs) chunks in flight, so memory stays
    flat however long the file. A file that cannot be read is reported when the chunks are
    asked for."""

    def __init__(self, path: Path, jobs: int, chunk_bytes: int) -> None:
        self.path = path
        self.unreadable: BundleUnreadable | None = None
        self.pool: ProcessPoolExecutor | None = None
        self.pending: deque[Future[Chunk]] = deque()
        self.limit = max(CHUNKS_AHEAD, 2 * jobs)
        try:
            self.bounds = chunk_bounds(path, chunk_bytes)
            self.ahead = list(itertools.islice(self.bounds, 2))
        except OSError as exc:
            self.unreadable = BundleUnreadable(f"cannot read {path}: {type(exc).__name__}")
            return
        if jobs > 1 and len(self.ahead) > 1:  # one chunk or one process: no pool to start
            self.pool = ProcessPoolExecutor(jobs, mp_context=_worker_context())
            self._submit()

    def _submit(self) -> None:
        assert self.pool is not None
        for start, end in itertools.chain(self.ahead, self.bounds):
            self.pending.append(self.pool.submit(check_range, self.path, start, end))
            if len(self.pending) >= self.limit:
                break
        self.ahead = []

    def __iter__(self) -> Iterator[Chunk]:
        if self.unreadable is not None:
            raise self.unreadable
        try:
            if self.pool is None:
                for start, end in itertools.chain(self.ahead, self.bounds):
                    yield check_range(self.path, start, end)
                return
            while self.pending:
                done = self.pending.popleft().result()
                self._submit()
                yield done
        except OSError as exc:
            raise BundleUnreadable(f"cannot read {self.path}: {type(exc).__name__}") from None

    def __enter__(self) -> _ChunkFeed:
        return self

    def __exit__(self, *_: object) -> None:
        if self.pool is not None:  # also when the walk stops at a failure: drop the rest
            self.pool.shutdown(cancel_futures=True)


def default_jobs() -> int:
    """The cores this process may use."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _worker_context() -> multiprocessing.context.BaseContext:
    """fork when this process has one thread: workers start in ~10 ms with every module
    already loaded. With other threads running, a forked child could inherit a lock held by
    one of them, so forkserver (~0.8 s to start: a fresh interpreter imports the checker)."""
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


class _LeafWalk:
    """The sequential part of §6 steps 3-5, fed one checked chunk at a time: index = position,
    the links (and which leaf a broken one points at), the compact range and the root at
    every checkpoint size. The first failure in leaf order stops it."""

    def __init__(
        self,
        tree: CompactRange,
        roots: dict[int, tuple[str, bytes]],
        report: Report,
        progress: Progress | None,
    ) -> None:
        self.tree, self.roots, self.report, self.progress = tree, roots, report, progress
        self.sizes = deque(sorted(roots))  # checkpoint sizes not yet reached
        self.last_hash = b""  # of the leaf before the next one
        self.suspect: int | None = None  # a broken link into leaf `suspect`: the next decides

    def take(self, chunk: Chunk) -> None:
        base = self.tree.size
        first_linked = (
            chunk.first_prev is None if base == 0 else chunk.first_prev == self.last_hash.hex()
        )
        clean = 0
        if self.suspect is None and chunk.clean and chunk.indices[0] == base and first_linked:
            clean = chunk.clean  # leaves that pass steps 3-4: only the tree is left to do
        if clean:
            self._append(chunk.levels, base, base + clean)
        for j in range(clean, chunk.count):
            self._one(chunk, j, base + j, first_linked if j == 0 else bool(chunk.links[j]))
        if chunk.cut:
            position = base + chunk.count
            raise _Stop(Failure("integrity", "the last line is cut short", position))

    def _append(self, levels: Sequence[bytes], first: int, stop: int) -> None:
        """Leaves [tree size, stop) into the tree from `subtree_levels(hashes, first)` (a few
        subtree roots at a time), stopping at each checkpoint size to compare roots (and
        every 10,000 leaves to report progress)."""
        tree, roots = self.tree, self.roots
        while tree.size < stop:
            size = tree.size
            step = min(stop - size, PROGRESS_EVERY - size % PROGRESS_EVERY)
            while self.sizes and self.sizes[0] <= size:
                self.sizes.popleft()
            if self.sizes:
                step = min(step, self.sizes[0] - size)
            tree.extend_levels(levels, first, size + step)
            known = roots.get(tree.size)
            if known is not None and known[1] != tree.root():
                position = tree.size - 1
                self.report.leaves = position  # the leaves before it passed
                reason = f"leaves 0..{position} do not hash to the root signed in {known[0]}"
                raise _Stop(Failure("integrity", reason, position, known[0]))
            self.report.leaves = tree.size
            if self.progress is not None and tree.size % PROGRESS_EVERY == 0:
                self.progress(tree.size)
        at = HASH_SIZE * (stop - first)
        self.last_hash = levels[0][at - HASH_SIZE : at]

    def _one(self, chunk: Chunk, j: int, position: int, linked: bool) -> None:
        """One leaf, every check in the order of §6 (the slow, exact path)."""
        error = chunk.errors.get(j)
        if error is not None:
            raise _Stop(Failure("integrity", error, position))
        index = chunk.indices[j]
        if index != position:
            reason = (
                f"the leaf at this position says index {index}: "
                "a leaf was deleted, inserted or moved"
            )
            raise _Stop(Failure("integrity", reason, position))
        if position == 0 and chunk.first_prev is not None:
            raise _Stop(Failure("integrity", "the first leaf names a previous leaf", 0))
        linked = position == 0 or linked
        if self.suspect is not None:
            # The link into `suspect` broke. If the link out of it broke too, `suspect` itself
            # was changed; otherwise the leaf before it was.
            if linked:
                raise _Stop(Failure("integrity", _changed(self.suspect - 1), self.suspect - 1))
            raise _Stop(Failure("integrity", _changed(self.suspect), self.suspect))
        if not linked:
            self.suspect = position
        if self.suspect is None:
            self._append([chunk.hashes[32 * j : 32 * j + 32]], position, position + 1)
        else:  # no root check while a link is broken: the next leaf names the changed one
            self.tree.append(chunk.hashes[32 * j : 32 * j + 32])
            self.last_hash = chunk.hashes[32 * j : 32 * j + 32]
            self.report.leaves = self.tree.size
            if self.progress is not None and self.tree.size % PROGRESS_EVERY == 0:
                self.progress(self.tree.size)


def _changed(index: int) -> str:
    return f"leaf {index} was changed: it no longer hashes to what the next leaf records"


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise BundleUnreadable(f"cannot read {path}: {type(exc).__name__}") from None


# --- inclusion proofs ---------------------------------------------------------------------


def build_inclusion_proof(directory: Path, index: int) -> dict[str, object]:
    """A self-contained proof that leaf `index` is in the latest checkpoint covering it.
    Two passes over the leaves, O(log n) memory."""
    best: tuple[Path, Checkpoint] | None = None
    keys = read_keys(directory / KEYS_FILE)
    for path in checkpoint_files(directory):
        try:
            checkpoint = Checkpoint.parse(open_note(_read(path), keys)[0])
        except (NoteError, TrustError):
            continue
        if checkpoint.size > index and (best is None or checkpoint.size > best[1].size):
            best = (path, checkpoint)
    if best is None:
        raise ValueError(f"no signed checkpoint covers leaf {index} yet")
    path, checkpoint = best
    leaf: bytes | None = None

    def hashes() -> Iterator[bytes]:
        nonlocal leaf
        for position, raw in iter_leaves(directory / LEAVES_FILE):
            if position == index:
                leaf = raw
            yield leaf_hash(raw)

    ranges = inclusion_ranges(index, checkpoint.size)
    try:
        roots = range_roots(ranges, hashes()) if ranges else {}
        if leaf is None:
            for _ in hashes():
                if leaf is not None:
                    break
    except _Stop as stop:
        raise ValueError(stop.failure.describe()) from None
    if leaf is None:
        raise ValueError(f"the bundle has no leaf {index}")
    return {
        "format": PROOF_FORMAT,
        "index": index,
        "tree_size": checkpoint.size,
        "leaf": leaf.decode("ascii"),
        "proof": [roots[r].hex() for r in ranges],
        "checkpoint": _read(path).decode("utf-8"),
        "keys": [k.encode() for k in keys],
    }


def verify_inclusion_proof(
    document: bytes, trusted: list[VerifierKey] | None = None
) -> tuple[int, str]:
    """(exit code, message) for a proof written by `build_inclusion_proof`."""
    try:
        proof = json.loads(document)
        if proof.get("format") != PROOF_FORMAT:
            raise ValueError("not an nrm inclusion proof")
        index, size = int(proof["index"]), int(proof["tree_size"])
        leaf = str(proof["leaf"]).encode("ascii")
        path = [bytes.fromhex(h) for h in proof["proof"]]
        note = str(proof["checkpoint"]).encode("utf-8")
        keys = trusted if trusted is not None else [VerifierKey.parse(k) for k in proof["keys"]]
    except (ValueError, KeyError, TypeError, UnicodeError) as exc:
        return EXIT_UNREADABLE, f"unreadable proof: {type(exc).__name__}"
    try:
        checkpoint = open_checkpoint(note, keys, "in proof")
    except _Stop as stop:
        return stop.failure.exit_code, stop.failure.describe()
    if checkpoint.size != size:
        return EXIT_INTEGRITY, f"the proof is for size {size}, the checkpoint has {checkpoint.size}"
    try:
        entry = parse_leaf(leaf)
    except LeafError as exc:
        return EXIT_INTEGRITY, f"leaf {index}: {exc}"
    if entry.index != index:
        return EXIT_INTEGRITY, f"leaf {index}: the leaf says index {entry.index}"
    try:
        verify_inclusion(index, size, leaf_hash(leaf), path, checkpoint.root)
    except ProofError as exc:
        return EXIT_INTEGRITY, f"leaf {index}: {exc}"
    return EXIT_OK, f"leaf {index} is in the log of size {size} signed by {checkpoint.origin}"


# --- writing ------------------------------------------------------------------------------


class BundleWriter:
    """Writes a bundle as its parts arrive (export streams the audit stream through it)."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CHECKPOINTS_DIR).mkdir(exist_ok=True)
        if (directory / LEAVES_FILE).exists() or any((directory / CHECKPOINTS_DIR).iterdir()):
            raise BundleUnreadable(f"{directory} already holds a bundle: choose an empty directory")
        self.directory = directory
        self._leaves = (directory / LEAVES_FILE).open("wb")
        self._events: BinaryIO | None = None
        self.leaves = 0
        self.checkpoints = 0

    def leaf(self, raw: bytes) -> None:
        if b"\n" in raw:
            raise ValueError("a leaf must not contain a newline")
        self._leaves.write(raw + b"\n")
        self.leaves += 1

    def event(self, sequence: int, raw: bytes) -> None:
        if self._events is None:
            self._events = (self.directory / EVENTS_FILE).open("wb")
        record = {"sequence": sequence, "data": base64.b64encode(raw).decode()}
        self._events.write(json.dumps(record, sort_keys=True, separators=(",", ":")).encode())
        self._events.write(b"\n")

    def checkpoint(self, sequence: int, note: bytes) -> None:
        (self.directory / CHECKPOINTS_DIR / f"{sequence:010d}{NOTE_SUFFIX}").write_bytes(note)
        self.checkpoints += 1

    def close(self, keys: list[VerifierKey], origin: str) -> None:
        self._leaves.close()
        if self._events is not None:
            self._events.close()
        (self.directory / KEYS_FILE).write_text("".join(k.encode() + "\n" for k in keys))
        manifest = {
            "format": BUNDLE_FORMAT,
            "origin": origin,
            "leaves": self.leaves,
            "checkpoints": self.checkpoints,
        }
        (self.directory / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
