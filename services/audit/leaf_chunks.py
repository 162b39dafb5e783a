"""Checking audit leaves fast, a chunk of `leaves.jsonl` at a time, so that chunks can be
checked in worker processes and only the Merkle tree is built in one place (bundle.py).

`quick_leaf` is a fast path that never decides alone against a leaf: it either proves a leaf
sound and returns what the sequential checks need (its index and `prev`), or returns None and
the leaf goes through `parse_leaf` (domain.py), which gives the verdict and the error message.
So a leaf is accepted here only when `parse_leaf` accepts it too, with the same index and prev
(tests/unit/test_audit_leaf_chunks.py checks this on tampered and random leaves).

Why orjson's bytes may stand for the canonical form (docs/AUDIT-BUNDLE.md §2.1): for a leaf
of printable ASCII, no DEL (0x7f), orjson with sorted keys writes exactly what
`canonical_json` writes, because it escapes every ASCII character the same way (a test checks
all 128) and sorts ASCII keys in the same order. It differs for DEL and every non-ASCII
character (written raw as UTF-8, where the canonical form writes `\\uXXXX`), for floats and
nulls (which the canonical form refuses or drops): such leaves take the slow path. Leaves are
ids and codes, so in practice every one takes the fast path.

This module imports neither pydantic nor the contracts: a worker process starts quickly.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

AUDIT_RECORDED = "audit.recorded"  # AuditEntry.TYPE, repeated to keep pydantic out


def _shapes(
    required: dict[str, type], optional: dict[str, type]
) -> dict[tuple[str, ...], tuple[type, ...]]:
    """Every key tuple (sorted, as in a canonical leaf) an object may have, mapped to the type
    each value must have: the contract's fields (contracts/envelope.py, operations.py)."""
    shapes = {}
    for mask in range(1 << len(optional)):
        chosen = {k: t for i, (k, t) in enumerate(optional.items()) if mask >> i & 1}
        fields = dict(sorted({**required, **chosen}.items()))
        shapes[tuple(fields)] = tuple(fields.values())
    return shapes


# Envelope: specversion, datacontenttype, dataschema, correlationid, causationid are optional;
# the leaf's subject must be its index, so it is required here (else: the slow path says why).
_ENVELOPE_SHAPES = _shapes(
    {"data": dict, "id": str, "source": str, "subject": str, "time": str, "type": str},
    {
        "specversion": str,
        "datacontenttype": str,
        "dataschema": str,
        "correlationid": str,
        "causationid": str,
    },
)
_ENTRY_SHAPES = _shapes(
    {"index": int, "action": str, "actor": dict, "ids": dict, "source": dict},
    {"time": str, "purpose": str, "detail": dict, "prev": str},
)
_ACTOR_SHAPES = _shapes({}, {"agency": str, "role": str, "service": str})
_SOURCE_SHAPES = _shapes({"stream": str, "sequence": int, "sha256": str}, {"id": str})
_HEX64 = re.compile(r"[0-9a-f]{64}")
# The writer's time form (pydantic writes UTC as Z); any other form takes the slow path.
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?Z")
_TIMES_KEPT = 4096
_times: set[str] = set()  # times already found good: leaves written together share them

CHUNK_BYTES = 1 << 20  # ~1,300 leaves: big enough to pay for a trip to a worker


def _is_time(value: str) -> bool:
    """A time pydantic reads as a datetime, in the writer's form (checked once per string)."""
    if value in _times:
        return True
    if _TIME.fullmatch(value) is None:
        return False
    try:
        dt.datetime.fromisoformat(value)
    except ValueError:  # e.g. 2026-02-30: let pydantic say so
        return False
    if len(_times) >= _TIMES_KEPT:
        _times.clear()
    _times.add(value)
    return True


def _all_text(values: Iterable[object]) -> bool:
    try:
        "".join(values)  # type: ignore[arg-type]  # TypeError on anything but str, in C
    except TypeError:
        return False
    return True


def quick_leaf(raw: bytes, expected_prev: str | None = None) -> tuple[int, str | None] | None:
    """(index, prev) of a leaf proven canonical and following the contract, or None when
    only `parse_leaf` can say (it may still accept the leaf). `expected_prev`, the hex leaf
    hash of the leaf before, only saves checking the form of a prev equal to it."""
    if not raw.isascii() or b"\x7f" in raw:
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    # Equal to its sorted re-serialisation: canonical, so the keys are in sorted order too.
    if type(value) is not dict or orjson.dumps(value, option=orjson.OPT_SORT_KEYS) != raw:
        return None
    # Each object has an allowed key set and each value its exact type (an int is not a
    # bool; no nulls or floats anywhere in a leaf).
    if _ENVELOPE_SHAPES.get(tuple(value)) != tuple(map(type, value.values())):
        return None
    data = value["data"]
    if _ENTRY_SHAPES.get(tuple(data)) != tuple(map(type, data.values())):
        return None
    actor, ids, source, index = data["actor"], data["ids"], data["source"], data["index"]
    if _ACTOR_SHAPES.get(tuple(actor)) != tuple(map(type, actor.values())):
        return None
    if _SOURCE_SHAPES.get(tuple(source)) != tuple(map(type, source.values())):
        return None
    if (
        value["type"] != AUDIT_RECORDED
        or value.get("specversion", "1.0") != "1.0"
        or value.get("datacontenttype", "application/json") != "application/json"
        or not value["id"]
        or not value["source"]
        or index < 0
        or value["subject"] != str(index)
        or source["sequence"] < 1
        or _HEX64.fullmatch(source["sha256"]) is None
        or (value["time"] not in _times and not _is_time(value["time"]))
        or ("time" in data and data["time"] not in _times and not _is_time(data["time"]))
        or not _all_text(ids.values())
    ):
        return None
    if "detail" in data:
        for item in data["detail"].values():
            if type(item) is not str and (type(item) is not list or not _all_text(item)):
                return None
    prev = data.get("prev")
    if prev is not None and prev != expected_prev and _HEX64.fullmatch(prev) is None:
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


def check_lines(data: bytes) -> Chunk:
    """Hash and check each line of `data` (whole lines; only the file's last may be cut)."""
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" after the final line feed, else a line cut short
    chunk = Chunk(count=len(lines), cut=tail != b"")
    hashes = bytearray()
    links = bytearray(len(lines))
    indices = array("q", bytes(8 * len(lines)))
    errors = chunk.errors
    sha256 = hashlib.sha256
    clean = -1
    previous_hex: str | None = None  # hex leaf hash of the line before (none before the first)
    for j, raw in enumerate(lines):
        digest = sha256(b"\x00" + raw).digest()
        hashes += digest
        facts = quick_leaf(raw, previous_hex)
        if facts is None:
            found = slow_leaf(raw)
            if isinstance(found, str):
                errors[j] = found
                if clean < 0:
                    clean = j
                previous_hex = digest.hex()
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
        previous_hex = digest.hex()
    chunk.hashes, chunk.links, chunk.indices = bytes(hashes), bytes(links), indices
    chunk.clean = len(lines) if clean < 0 else clean
    return chunk


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
