"""Checking audit leaves fast, a chunk of `leaves.jsonl` at a time, so that chunks can be
checked in worker processes and only the Merkle tree is built in one place (bundle.py).

The fast path never decides alone against a leaf: it either proves a leaf sound and returns
what the sequential checks need (its index and `prev`), or hands the leaf to `parse_leaf`
(domain.py), which gives the verdict and the error message. So a leaf is accepted here only
when `parse_leaf` accepts it too, with the same index and prev
(tests/unit/test_audit_leaf_chunks.py checks this on tampered and random leaves).

The contract check is compiled: msgspec decodes a leaf straight from its bytes into the
`_Leaf` structs below (unknown fields forbidden, exact JSON types: no null, float or bool
where the contract has text or an integer; constants, lengths and RFC 3339 times checked in
C; the hashes' hex digits in one pass per chunk). Re-encoding the structs with sorted keys
and comparing byte for byte proves the canonical form (docs/AUDIT-BUNDLE.md §2.1): for
printable ASCII without DEL (0x7f), msgspec escapes every character as `canonical_json` does
(a test checks all 128) and sorts ASCII keys the same way; a missing optional member stays
missing (UNSET is never written), and a leaf that spells a member the canonical form would
drop (a null) or write otherwise (a float, `\\/`, `\\u0041`, a non-ASCII character, a time in
another form) does not come out the same and takes the slow path. Leaves are ids and codes,
so in practice every one takes the fast path. A chunk is decoded and re-encoded in one call
each per ~64 KiB of its lines (`decode_lines` / `encode_lines`); only if that fails is it
taken leaf by leaf. The worker also hashes the complete subtrees of the chunk's clean leaves
(`merkle.subtree_levels`), so the one sequential tree appends a few roots per chunk.

This module imports neither pydantic nor the contracts: a worker process starts quickly.
"""

from __future__ import annotations

import datetime as dt
import gc
import hashlib
import re
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from services.audit.merkle import HASH_SIZE, subtree_levels

# The contract's fields (contracts/envelope.py Envelope, contracts/operations.py AuditEntry,
# AuditActor, AuditSource), as msgspec structs. Optional members are `X | UnsetType`: absent
# is allowed, a null is not (the canonical form has no nulls, so a null takes the slow path).
# A hash is 64 characters here, checked in C; that they are lower-case hex is checked after
# the decode (`_all_hex`): a pattern in Meta costs a call into `re` per leaf, ~0.9 µs.
# gc=False: a leaf's structs hold only text, numbers, dicts and lists, never a cycle, so the
# collector need not track them. Fields are declared in sorted order (kw_only allows required
# after optional) and encoded in that order ("deterministic": dict keys sorted, struct fields
# as declared), which is the sorted order without a sort per object (~0.5 µs per leaf less
# than order="sorted"; a test checks the order).
_Hash = Annotated[str, Meta(min_length=64, max_length=64)]
_Text = Annotated[str, Meta(min_length=1)]


class _Actor(Struct, forbid_unknown_fields=True, gc=False, kw_only=True):
    agency: str | UnsetType = UNSET
    role: str | UnsetType = UNSET
    service: str | UnsetType = UNSET


class _Source(Struct, forbid_unknown_fields=True, gc=False, kw_only=True):
    id: str | UnsetType = UNSET
    sequence: Annotated[int, Meta(ge=1)]
    sha256: _Hash  # lower-case hex: `_all_hex`
    stream: str


class _Entry(Struct, forbid_unknown_fields=True, gc=False, kw_only=True):
    action: str
    actor: _Actor
    detail: dict[str, str | list[str]] | UnsetType = UNSET
    ids: dict[str, str]
    index: Annotated[int, Meta(ge=0)]
    # 64 characters (parse_leaf refuses any other length too); equal to the previous leaf's
    # hex hash proves its form, else `_HEX64` decides.
    prev: _Hash | UnsetType = UNSET
    purpose: str | UnsetType = UNSET
    source: _Source
    time: dt.datetime | UnsetType = UNSET


class _Leaf(Struct, forbid_unknown_fields=True, gc=False, kw_only=True):
    """A leaf: the CloudEvent around the entry. `subject` is required here (it must be the
    index; a leaf without one fails the contract: the slow path says so)."""

    causationid: str | UnsetType = UNSET
    correlationid: str | UnsetType = UNSET
    data: _Entry
    datacontenttype: Literal["application/json"] | UnsetType = UNSET
    dataschema: str | UnsetType = UNSET
    id: _Text
    source: _Text
    specversion: Literal["1.0"] | UnsetType = UNSET
    subject: str
    time: dt.datetime
    type: Literal["audit.recorded"]  # AuditEntry.TYPE, repeated to keep pydantic out


_DECODER = msgspec.json.Decoder(_Leaf)
_ENCODER = msgspec.json.Encoder(order="deterministic")  # see the structs above
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX_DIGITS = b"0123456789abcdef"
_DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError)

CHUNK_BYTES = 1 << 20  # ~1,300 leaves: big enough to pay for a trip to a worker
# Lines decoded at once, so that fewer of a chunk's ~45,000 leaf objects live at a time.
# Measured on 100k leaves in one process: the previous whole-chunk check took ~21,000 page
# faults (fresh memory every chunk, ~0.6-0.9 µs a leaf of system time), this one ~2,000.
# 64 KiB (~80 leaves, ~0.3 MB of their objects) rather than 256 KiB: the objects decoded,
# re-encoded and checked are still in the core's cache (~5 % less CPU a leaf, measured
# side by side, docs/PERFORMANCE.md item 19; 16 KiB pieces lose it to the per-piece calls).
PIECE_BYTES = 1 << 16


def ascii_without_del(raw: bytes) -> bool:
    """ASCII without DEL: the only bytes where msgspec's output can be the canonical form."""
    return raw.isascii() and b"\x7f" not in raw


def _decoded(raw: bytes) -> _Leaf | None:
    """The leaf, if it follows the contract's types and is in canonical form, else None."""
    if not ascii_without_del(raw):
        return None
    try:
        leaf = _DECODER.decode(raw)
    except _DECODE_ERRORS:
        return None
    return leaf if _ENCODER.encode(leaf) == raw else None


def quick_leaf(raw: bytes, expected_prev: str | None = None) -> tuple[int, str | None] | None:
    """(index, prev) of a leaf proven canonical and following the contract, or None when
    only `parse_leaf` can say (it may still accept the leaf). `expected_prev`, the hex leaf
    hash of the leaf before, only saves checking the form of a prev equal to it."""
    leaf = _decoded(raw)
    if leaf is None:
        return None
    return _facts(leaf, expected_prev)


def _all_hex(hashes: list[str]) -> bool:
    """Every character of these (already 64-character) hashes a lower-case hex digit."""
    # One pass in C over a whole chunk's hashes, ~0.1 µs per leaf (str.strip with these
    # characters or a regex: 0.6-0.8). Non-ASCII text encodes to bytes not deleted.
    return not "".join(hashes).encode("utf-8", "replace").translate(None, _HEX_DIGITS)


def _facts(leaf: _Leaf, expected_prev: str | None) -> tuple[int, str | None] | None:
    """(index, prev) of a decoded canonical leaf, after the checks between its fields."""
    entry = leaf.data
    index, prev = entry.index, entry.prev
    if leaf.subject != str(index) or not _all_hex([entry.source.sha256]):
        return None
    if not isinstance(prev, str):  # UNSET: no prev (leaf 0)
        return index, None
    if prev != expected_prev and _HEX64.fullmatch(prev) is None:
        return None
    return index, prev


def slow_leaf(raw: bytes) -> tuple[int, str | None] | str:
    """(index, prev) by the full contract check, or the reason the leaf fails it."""
    from services.audit.domain import LeafError, parse_leaf  # pydantic: only when needed

    try:
        entry = parse_leaf(raw)
    except LeafError as exc:
        return str(exc)
    return entry.index, entry.prev


@dataclass
class Chunk:
    """What the sequential checks need from a run of consecutive lines of `leaves.jsonl`."""

    count: int = 0  # complete lines (leaves)
    hashes: bytes = b""  # RFC 6962 leaf hash of each, 32 bytes apiece
    indices: array[int] = field(default_factory=lambda: array("q"))  # each leaf's data.index
    links: bytes = b""  # per leaf j >= 1: 1 if its prev is the hash of leaf j-1 of the chunk
    first_prev: str | None = None  # prev of the chunk's first leaf
    errors: dict[int, str] = field(default_factory=dict)  # leaf (in chunk) -> why it fails
    clean: int = 0  # leaves 0..clean-1 parse, count up by one and link to each other
    cut: bool = False  # the chunk ends with a line with no line feed (the file's last)
    # The clean leaves' subtree roots (merkle.subtree_levels from indices[0]; level 0 is
    # `hashes`): the parent appends them to its tree a few roots at a time.
    levels: list[bytes] = field(default_factory=list)


def check_lines(data: bytes) -> Chunk:
    """Hash and check each line of `data` (whole lines; only the file's last may be cut)."""
    # A chunk allocates ~10 objects per leaf and frees them all when done: without a pause,
    # the cyclic collector would run every few hundred leaves and, in a process with a big
    # heap (the hub's bench verifies in-process), walk all of that heap every few chunks.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _check_lines(data)
    finally:
        if was_enabled:
            gc.enable()


def _check_lines(data: bytes) -> Chunk:
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" after the final line feed, else a line cut short
    chunk = Chunk(count=len(lines), cut=tail != b"")
    sha256 = hashlib.sha256
    digests = [sha256(b"\x00" + raw).digest() for raw in lines]
    chunk.hashes = b"".join(digests)
    if not _check_whole(chunk, data[: len(data) - len(tail)], chunk.hashes):
        _check_each(chunk, lines, digests)
    add_levels(chunk)
    return chunk


def add_levels(chunk: Chunk) -> None:
    """The subtree roots of the chunk's clean leaves, placed where their indices say (the
    parent uses them only when the first index is the leaf's position)."""
    clean = chunk.hashes[: HASH_SIZE * chunk.clean]
    chunk.levels = subtree_levels(clean, chunk.indices[0]) if chunk.clean else [clean]


def _check_whole(chunk: Chunk, body: bytes, hashes: bytes) -> bool:
    """The common case, one decode and one encode per piece of ~PIECE_BYTES: every line a
    canonical leaf following the contract, indices counting up by one, each linked to the
    one before. False (and `chunk` untouched but for its hashes) when any of that fails:
    `_check_each` then says where."""
    count = chunk.count
    if not count or not ascii_without_del(body):
        return False
    view = memoryview(body)  # pieces decoded in place, not copied
    prevs: list[str] = []  # per piece, its leaves' prevs (all but the chunk's first leaf)
    first = following = 0  # the chunk's first index; the index the next leaf must have
    first_prev: str | None = None
    start, size = 0, len(body)
    while start < size:  # whole lines: the body ends with a line feed
        end = body.find(b"\n", min(start + PIECE_BYTES, size) - 1) + 1 or size
        try:
            leaves = _DECODER.decode_lines(view[start:end])
        except _DECODE_ERRORS:
            return False
        # encode_lines writes each leaf and a line feed, and no leaf holds a raw line feed:
        # equal bytes mean each line is its leaf's canonical form (blank lines, skipped by
        # decode_lines, make them differ; so does a piece of blank lines only). Compared in
        # place: same length, and the body holds the encoding at `start`.
        encoded = _ENCODER.encode_lines(leaves)
        if not leaves or len(encoded) != end - start or not body.startswith(encoded, start):
            return False
        entries = [leaf.data for leaf in leaves]
        if start == 0:
            first = following = entries[0].index
            given = entries[0].prev
            first_prev = given if isinstance(given, str) else None
        expected = range(following, following + len(leaves))
        if [entry.index for entry in entries] != list(expected):
            return False
        if [leaf.subject for leaf in leaves] != list(map(str, expected)):
            return False
        if not _all_hex([entry.source.sha256 for entry in entries]):
            return False
        try:
            linked = entries[1:] if start == 0 else entries
            prevs.append("".join([entry.prev for entry in linked]))  # type: ignore[misc]
        except TypeError:  # a leaf after the chunk's first without prev
            return False
        following += len(leaves)
        start = end
    if following - first != count:  # one leaf per line
        return False
    # Leaf j's prev equal to the hex hash of leaf j-1 links it and proves its form. Every prev
    # is 64 characters, so equal concatenations mean equal prevs, one by one.
    if "".join(prevs) != hashes[: HASH_SIZE * (count - 1)].hex():
        return False
    if first_prev is not None and _HEX64.fullmatch(first_prev) is None:
        return False
    chunk.indices = array("q", range(first, following))
    chunk.links = b"\x00" + b"\x01" * (count - 1)
    chunk.first_prev = first_prev
    chunk.clean = count
    return True


def _check_each(chunk: Chunk, lines: Sequence[bytes], digests: Sequence[bytes]) -> None:
    """Leaf by leaf: each one's facts or the slow path's reason, and where the chunk stops
    being clean."""
    links = bytearray(len(lines))
    indices = array("q", bytes(8 * len(lines)))
    errors = chunk.errors
    clean = -1
    previous_hex: str | None = None  # hex leaf hash of the line before (none before the first)
    for j, raw in enumerate(lines):
        facts = quick_leaf(raw, previous_hex)
        if facts is None:
            found = slow_leaf(raw)
            if isinstance(found, str):
                errors[j] = found
                if clean < 0:
                    clean = j
                previous_hex = digests[j].hex()
                continue
            facts = found
        index, prev = facts
        indices[j] = index
        if j == 0:
            chunk.first_prev = prev
        else:
            links[j] = prev == previous_hex
            if clean < 0 and (not links[j] or index != indices[0] + j):
                clean = j
        previous_hex = digests[j].hex()
    chunk.links, chunk.indices = bytes(links), indices
    chunk.clean = len(lines) if clean < 0 else clean


def check_range(path: Path, start: int, end: int) -> Chunk:
    """`check_lines` over bytes [start, end) of a file (run in a worker process)."""
    with path.open("rb") as handle:
        handle.seek(start)
        return check_lines(handle.read(end - start))


def chunk_bounds(path: Path, target: int = CHUNK_BYTES) -> Iterator[tuple[int, int]]:
    """Byte ranges [start, end) of whole lines, about `target` bytes each, covering the file
    (the last may end with a line cut short). Only a few bytes are read around each end."""
    size = path.stat().st_size
    start = 0
    with path.open("rb") as handle:
        while start < size:
            end = start + target
            if end >= size:
                yield start, size
                return
            handle.seek(end - 1)
            while True:  # the first line feed at or after end - 1
                block = handle.read(1 << 16)
                at = block.find(b"\n")
                if at >= 0 or not block:
                    break
                end += len(block)
            end = size if at < 0 else end + at
            yield start, end
            start = end
