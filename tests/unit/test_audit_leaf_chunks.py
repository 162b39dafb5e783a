"""The fast leaf check (services/audit/leaf_chunks.py) never disagrees with `parse_leaf`, and
msgspec's sorted output is the canonical form wherever the fast path relies on it.

Three claims, each tested here:
1. msgspec's JSON encoder with sorted keys writes exactly `canonical_json`'s bytes for any
   value without nulls or floats whose strings are ASCII without DEL (every ASCII character
   is escaped the same way; keys sort the same way); it differs on DEL and non-ASCII text,
   which therefore take the slow path.
2. `quick_leaf(raw)` is either None (the slow path decides) or exactly `parse_leaf`'s index and
   prev, never accepting a leaf that `parse_leaf` refuses: over the test vectors, leaves with
   random content (non-ASCII text included), random byte flips, times in any form msgspec
   reads, and hand-made edge cases.
3. A chunk checked whole (one decode, one encode) gives exactly what checking it leaf by leaf
   gives, on clean, tampered and mixed chunks.
4. The writer's `leaf_bytes`, which leans on claim 1, writes exactly the reference form:
   `canonical_json` of the envelope as the models dump it, whatever the text in the entry.
"""

from __future__ import annotations

import datetime as dt
import gc
import hashlib
import json
import random
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.envelope import Envelope
from contracts.operations import AuditActor, AuditEntry, AuditSource
from services.audit import leaf_chunks
from services.audit.domain import (
    LEAF_ID_NAMESPACE,
    LeafError,
    canonical_json,
    leaf_bytes,
    parse_leaf,
)
from services.audit.leaf_chunks import (
    Chunk,
    _check_each,
    _check_whole,
    add_levels,
    check_lines,
    quick_leaf,
    slow_leaf,
)
from services.audit.log import LogState
from tests.unit.test_audit_bundle import generated

T0 = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)


def sorted_msgspec(value: Any) -> bytes:
    return msgspec.json.encode(value, order="sorted")


def agrees(raw: bytes) -> tuple[int, str | None] | None:
    """quick_leaf's answer, after checking it against parse_leaf's."""
    fast = quick_leaf(raw)
    try:
        entry = parse_leaf(raw)
    except LeafError:
        assert fast is None, f"the fast path accepted a leaf parse_leaf refuses: {raw!r}"
        return None
    assert fast is None or fast == (entry.index, entry.prev), raw
    return fast


# --- 1. msgspec's bytes and the canonical form ---------------------------------------------


def test_every_ascii_character_is_escaped_as_the_canonical_form_does_but_del() -> None:
    for code in range(0x80):
        text = f"a{chr(code)}b"
        same = sorted_msgspec({"k": text}) == canonical_json({"k": text})
        assert same == (code != 0x7F), hex(code)


def test_non_ascii_text_is_where_msgspec_differs() -> None:
    for text in ["é", "Бишкек", "\u2014", "\U0001f600", "\u00a0"]:
        assert sorted_msgspec(text) != canonical_json(text)
        assert canonical_json(text).isascii() and not sorted_msgspec(text).isascii()


_ascii_text = st.text(st.characters(min_codepoint=0, max_codepoint=0x7E), max_size=12)
_any_text = st.text(max_size=12)
_int64 = st.integers(min_value=-(2**63), max_value=2**64 - 1)


def _json_values(text: st.SearchStrategy[str], scalars: st.SearchStrategy[Any]) -> Any:
    return st.recursive(
        scalars | text,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
        max_leaves=20,
    )


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(_json_values(_ascii_text, st.booleans() | _int64))
def test_msgspec_sorted_is_the_canonical_form_for_ascii_values(value: Any) -> None:
    assert sorted_msgspec(value) == canonical_json(value)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(_json_values(_any_text, st.booleans() | _int64 | st.floats() | st.none()))
def test_where_msgspec_and_the_canonical_form_differ_the_fast_path_says_no(value: Any) -> None:
    """Any value at all (non-ASCII, floats, nulls, nesting): where msgspec's bytes are not the
    canonical form, a leaf holding that value in its detail is not accepted by the fast path
    unless parse_leaf accepts it too."""
    try:
        canonical = canonical_json(value)
    except ValueError:  # a float: the canonical form has none
        canonical = None
    try:
        fast_bytes = sorted_msgspec(value)
    except (TypeError, OverflowError):  # not expected (msgspec writes big ints), but harmless
        fast_bytes = None
    if canonical is not None and fast_bytes == canonical:
        assert canonical.isascii()
    entry = make_entry(0)
    leaf = json.loads(LogState().leaf_for(entry, "urn:nrm-hub:kg:audit", T0))
    leaf["data"]["detail"] = {"v": value}
    for raw in (fast_bytes and sorted_msgspec(leaf), _canonical_or_none(leaf)):
        if raw is not None and b"\n" not in raw:
            agrees(raw)


def _canonical_or_none(value: Any) -> bytes | None:
    try:
        return canonical_json(value)
    except ValueError:
        return None


# --- 2. quick_leaf agrees with parse_leaf -------------------------------------------------


def make_entry(index: int, rng: random.Random | None = None, text: str = "") -> AuditEntry:
    rng = rng or random.Random(index)
    return AuditEntry(
        index=index,
        time=T0 + dt.timedelta(seconds=rng.randrange(10**6), microseconds=rng.randrange(10**6)),
        action=rng.choice(["victim.identified", "access.granted", "unreadable"]) + text,
        actor=AuditActor(
            agency=rng.choice([None, "kg-ngo-osh-crisis-centre" + text]),
            role=rng.choice([None, "ngo"]),
            service=rng.choice([None, "urn:nrm-hub:kg:referral"]),
        ),
        ids={f"k{i}_id{text}": str(uuid.UUID(int=rng.getrandbits(128))) for i in range(3)},
        purpose=rng.choice([None, "assistance" + text]),
        detail=rng.choice(
            [{}, {"basis": "consent" + text}, {"fields": ["full_name", text], "reason": "x"}]
        ),
        source=AuditSource(
            stream="NRM_EVENTS",
            sequence=index + 1,
            id=rng.choice([None, str(uuid.UUID(int=rng.getrandbits(128)))]),
            sha256=hashlib.sha256(index.to_bytes(8, "big")).hexdigest(),
        ),
    )


def reference_leaf(entry: AuditEntry, previous: bytes | None, source: str) -> bytes:
    """The leaf as docs/AUDIT-BUNDLE.md defines it, spelled out the plain way."""
    entry = entry.model_copy(update={"prev": previous.hex() if previous else None})
    envelope = Envelope(
        id=str(uuid.uuid5(LEAF_ID_NAMESPACE, f"{entry.source.stream}:{entry.source.sequence}")),
        source=source,
        type=AuditEntry.TYPE,
        time=T0,
        subject=str(entry.index),
        data=entry.model_dump(mode="json"),
    )
    return canonical_json(envelope.model_dump(mode="json"))


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**40), st.text(max_size=6), st.sampled_from(["urn:nrm-hub:kg:audit", "é"]))
def test_the_writers_leaf_is_the_reference_form(index: int, text: str, source: str) -> None:
    """Any text: ASCII, DEL, control characters, non-ASCII (the slow way), and nulls."""
    entry = make_entry(index, text=text)
    previous = None if index == 0 else hashlib.sha256(text.encode()).digest()
    written = leaf_bytes(entry, previous, source, T0)
    assert written == reference_leaf(entry, previous, source)
    assert parse_leaf(written).prev == (previous.hex() if previous else None)


def test_the_bundle_test_vectors_all_take_the_fast_path() -> None:
    leaves, _ = generated(1000)
    for raw in leaves:
        entry = parse_leaf(raw)
        assert quick_leaf(raw) == (entry.index, entry.prev)
        assert sorted_msgspec(json.loads(raw)) == raw == canonical_json(json.loads(raw))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10**6), _any_text)
def test_random_leaves_agree_and_ascii_ones_take_the_fast_path(index: int, text: str) -> None:
    previous = hashlib.sha256(text.encode()).digest() if index else None
    entry = make_entry(index, random.Random(index), text)
    raw = leaf_bytes(entry, previous, "urn:nrm-hub:kg:audit", T0)
    fast = agrees(raw)
    plain = all(ord(c) < 0x7F for c in text)  # control characters are escaped alike
    assert (fast is not None) == plain  # non-ASCII text or DEL: the slow path
    if plain:
        assert fast == (index, previous.hex() if previous else None)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 63), st.data())
def test_flipped_bytes_never_make_the_paths_disagree(index: int, data: st.DataObject) -> None:
    leaves, _ = generated(64)
    raw = bytearray(leaves[index])
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    agrees(bytes(raw))


def _edit(raw: bytes, old: bytes, new: bytes) -> bytes:
    assert old in raw
    return raw.replace(old, new, 1)


def edge_cases() -> list[bytes]:
    leaves, _ = generated(8)
    raw = leaves[3]  # has time, prev, ids, source.id
    value = json.loads(raw)
    cases = [
        _edit(raw, b'"index":3', b'"index":3.0'),
        _edit(raw, b'"index":3', b'"index":true'),
        _edit(raw, b'"index":3', b'"index":-3'),
        _edit(raw, b'"index":3', b'"index":"3"'),
        _edit(raw, b'"index":3', b'"index":30000000000000000000000'),
        _edit(raw, b'"subject":"3"', b'"subject":"03"'),
        _edit(raw, b'"subject":"3"', b'"subject":3'),
        _edit(raw, b'"sequence":4', b'"sequence":0'),
        _edit(raw, b'"sequence":4', b'"sequence":null'),
        _edit(raw, b'"specversion":"1.0"', b'"specversion":"1.1"'),
        _edit(raw, b'"specversion":"1.0"', b'"specversion":1.0'),
        _edit(raw, b'"type":"audit.recorded"', b'"type":"audit.recordee"'),
        _edit(raw, b'"source":"urn', b'"source":"\\u0075rn'),
        _edit(raw, b'"source":"urn', b'"source":"\x7furn'),
        _edit(raw, b'"action":"', b'"action":"\\"'),
        _edit(raw, b'"action":"', b'"action":"\\u00e9'),
        _edit(raw, b'"action":"', b'"action":"\\ud800'),
        _edit(raw, b'"action":"', b'"action":"\xc3\xa9'),
        _edit(raw, b'"action":"', b'"action":"\\t'),
        _edit(raw, b'"action":"', b'"action":"\\u0009'),
        _edit(raw, b'"action":"', b'"action":"\\u007f'),
        _edit(raw, b'"action":"', b'"action":"\\/'),
        _edit(raw, b'"time":"2026-11-23T12:00:03Z"', b'"time":"2026-02-30T12:00:03Z"'),
        _edit(raw, b'"time":"2026-11-23T12:00:03Z"', b'"time":"2026-11-23T12:00:03+00:00"'),
        _edit(raw, b'"time":"2026-11-23T12:00:03Z"', b'"time":"2026-11-23t12:00:03Z"'),
        _edit(raw, b'"time":"2026-11-23T12:00:03Z"', b'"time":"2026-11-23T12:00:03.1234567Z"'),
        _edit(raw, b'"time":"2026-11-23T12:00:03Z"', b'"time":"2026-11-23T12:00:60Z"'),
        _edit(raw, b'"time":"2026-11-23T12:00:03Z"', b'"time":"2026-11-23T24:00:00Z"'),
        _edit(raw, b'"time":"2026-11-23T12:00:03Z"', b'"time":"0000-11-23T12:00:03Z"'),
        _edit(raw, b'"time":"2026-11-23T12:00:03Z"', b'"time":"1700000000"'),
        _edit(raw, b'"time":"2026-11-23T12:00:03Z"', b'"time":"2026-11-23T12:00:03.5Z"'),
        _edit(raw, b'"prev":"', b'"prev":"A'),
        _edit(raw, b'"sha256":"', b'"sha256":"A'),
        _edit(raw, b'"sha256":"', b'"sha256":"g'),
        _edit(raw, b'"sha256":"', b'"sha256":"\\n'),
        _edit(raw, b'"sha256":"', b'"sha256":"0'),
        _edit(raw, b'"prev":"', b'"prev":"0'),
        canonical_json({**value, "data": {**value["data"], "prev": ""}}),
        _edit(raw, b'"ids":{', b'"ids":{"a":1,'),
        _edit(raw, b'"ids":{', b'"ids":{"a":["b"],'),
        _edit(raw, b'"ids":{', b'"ids":{"a":"b","a":"b",'),
        _edit(raw, b'"actor":{', b'"actor":{"x":"y",'),
        _edit(raw, b'"data":{', b'"data":{"zzz":1,'),
        _edit(raw, b'"data":{', b'"data":{"detail":{"a":[1]},'),
        _edit(raw, b'"data":{', b'"data":{"detail":{"a":["b",null]},'),
        _edit(raw, b'"data":{', b'"data":{"detail":{"a":["b"],"b":"c"},'),
        _edit(raw, b'"data":{', b'"data":{"detail":{"a":{"b":"c"}},'),
        _edit(raw, b'"data":{', b'"data":{"detail":{},'),
        _edit(raw, b'"data":{', b'"data":{"purpose":null,'),
        _edit(raw, b'"datacontenttype"', b'"dataschema":"x","datacontenttype"'),
        _edit(raw, b'"id":"', b'"correlationid":null,"id":"'),
        raw + b" ",
        b" " + raw,
        raw.replace(b",", b", ", 1),
        b"[" + raw + b"]",
        b"",
        b"{}",
        b"null",
        canonical_json({**value, "id": ""}),
        canonical_json({k: v for k, v in value.items() if k != "subject"}),
        canonical_json({k: v for k, v in value.items() if k != "specversion"}),
        canonical_json({k: v for k, v in value.items() if k != "datacontenttype"}),
        canonical_json({**value, "causationid": "c", "correlationid": "d", "dataschema": "e"}),
        canonical_json({**value, "data": {**value["data"], "actor": {}}}),
        canonical_json({**value, "data": {**value["data"], "ids": {}}}),
        canonical_json({**value, "data": {**value["data"], "prev": "0" * 63}}),
        canonical_json({**value, "data": {**value["data"], "source": {"stream": "S"}}}),
        json.dumps(value).encode(),  # spaces
        json.dumps(value, separators=(",", ":")).encode(),  # unsorted keys
    ]
    return cases


def test_edge_cases_agree_with_parse_leaf() -> None:
    accepted = [raw for raw in edge_cases() if agrees(raw) is not None]
    # The hub's own forms take the fast path; the optional members written as text too.
    assert len(accepted) >= 5


def test_a_prev_equal_to_the_expected_hash_is_the_only_one_not_rechecked() -> None:
    leaves, _ = generated(8)
    value = json.loads(leaves[3])
    empty = canonical_json({**value, "data": {**value["data"], "prev": ""}})
    assert quick_leaf(empty) is None and quick_leaf(empty, None) is None
    upper = value["data"]["prev"].upper()
    shouted = canonical_json({**value, "data": {**value["data"], "prev": upper}})
    assert quick_leaf(shouted) is None
    # A chunk starting with such a leaf, or holding it after a sound one: the slow path's
    # reason, never a fast acceptance.
    for lines in ([empty, leaves[4]], [leaves[2], empty], [leaves[2], shouted]):
        chunk = check_lines(b"".join(raw + b"\n" for raw in lines))
        bad = 0 if lines[0] in (empty, shouted) else 1
        assert set(chunk.errors) == {bad} and chunk.clean == bad
        assert "contract" in chunk.errors[bad]


def test_slow_leaf_gives_parse_leafs_reason() -> None:
    leaves, _ = generated(4)
    assert slow_leaf(leaves[2]) == quick_leaf(leaves[2])
    assert slow_leaf(b"{not json") == "the leaf is not JSON"


def test_a_chunk_records_each_leafs_facts_and_where_it_stops_being_clean() -> None:
    leaves, _ = generated(8)
    broken = [*leaves[:5], b"{not json", *leaves[6:]]
    chunk = check_lines(b"".join(raw + b"\n" for raw in broken) + b'{"cut')
    assert chunk.count == 8 and chunk.cut and chunk.clean == 5
    assert chunk.errors == {5: "the leaf is not JSON"}
    assert list(chunk.indices[:5]) == [0, 1, 2, 3, 4] and chunk.first_prev is None
    assert chunk.hashes[32 * 7 :] == hashlib.sha256(b"\x00" + leaves[7]).digest()
    assert chunk.links[1:5] == b"\x01" * 4
    later = check_lines(b"".join(raw + b"\n" for raw in [leaves[3], leaves[5]]))
    assert later.clean == 1 and later.links == b"\x00\x00" and not later.cut
    assert check_lines(b"") == check_lines(b"")


@pytest.mark.parametrize("raw", [b'"' + bytes([c]) + b'"' for c in (0x7F, 0x80, 0xFF)])
def test_bytes_outside_ascii_or_del_never_take_the_fast_path(raw: bytes) -> None:
    assert quick_leaf(raw) is None


def test_the_hubs_own_leaves_take_the_fast_path() -> None:
    """Leaves as the audit service writes them: an access grant, an unreadable message, a
    rejected command (the forms of test_audit_leaves.py)."""
    from contracts.events import AccessGranted
    from contracts.operations import CommandRejectionNoted
    from contracts.vocabulary import AgencyKind, DataPurpose, PersonalField
    from services.audit.domain import entry_for_event, entry_for_rejection
    from tests.unit.test_audit_leaves import CASE, NOW, REGISTRY, stored

    granted = stored(
        AccessGranted(
            case_id=CASE,
            request_id=uuid.uuid4(),
            agency_id="kg-ngo-osh-crisis-centre",
            agency_kind=AgencyKind.NGO,
            purpose=DataPurpose.ASSISTANCE,
            fields=(PersonalField.FULL_NAME, PersonalField.PHONE),
            basis="consent",
            key_id="0123456789abcdef",
        )
    )
    notice = CommandRejectionNoted(
        command="referral.accept",
        command_id=uuid.uuid4(),
        agency_id="kg-prosecutor-general",
        errors=({"field": "agency_id", "code": "not_authorised"},),  # type: ignore[arg-type]
    )
    from contracts.envelope import Envelope

    rejected = Envelope(
        id=str(uuid.uuid4()),
        source="urn:nrm-hub:kg:referral",
        type=CommandRejectionNoted.TYPE,
        time=NOW,
        data=notice.model_dump(mode="json"),
    ).to_bytes()
    entries = [
        entry_for_event(0, "NRM_EVENTS", 1, granted, REGISTRY),
        entry_for_event(1, "NRM_EVENTS", 2, b"{not json", REGISTRY),
        entry_for_rejection(2, "NRM_REJECTIONS", 1, rejected, REGISTRY),
    ]
    state = LogState()
    for entry in entries:
        raw = state.leaf_for(entry, "urn:nrm-hub:kg:audit", NOW)
        state.appended(raw)
        fast = agrees(raw)
        assert fast is not None and fast[0] == entry.index


# --- times: whatever form msgspec reads and writes back the same, pydantic reads too -------

_offsets = st.none() | st.integers(-23 * 60 - 59, 23 * 60 + 59).map(
    lambda minutes: dt.timezone(dt.timedelta(minutes=minutes))
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.datetimes(min_value=dt.datetime(1, 1, 1), timezones=_offsets), st.booleans())
def test_any_time_msgspec_writes_back_the_same_is_one_parse_leaf_reads(
    moment: dt.datetime, in_entry: bool
) -> None:
    """A leaf whose time is any RFC 3339 form msgspec writes (naive, offsets, years 1-9999,
    microseconds): the fast path accepts it only if parse_leaf does."""
    text = msgspec.json.encode(moment).decode()[1:-1]
    leaves, _ = generated(4)
    value = json.loads(leaves[2])
    if in_entry:
        value["data"]["time"] = text
    else:
        value["time"] = text
    agrees(canonical_json(value))


@pytest.mark.parametrize(
    "time",
    ["2026-11-23T12:00:03.120000Z", "2026-11-23T12:00:03+05:30", "2026-11-23T12:00:03"],
)
def test_times_written_back_alike_take_the_fast_path(time: str) -> None:
    leaves, _ = generated(4)
    value = json.loads(leaves[2])
    value["time"] = value["data"]["time"] = time
    assert agrees(canonical_json(value)) == (2, value["data"]["prev"])


# --- 3. a chunk checked whole = the same chunk checked leaf by leaf -------------------------


def leaf_hashes(body: bytes) -> bytes:
    """The chunk's leaf hashes joined, as `_check_whole` takes them."""
    return b"".join(hashlib.sha256(b"\x00" + raw).digest() for raw in body.split(b"\n")[:-1])


def leaf_by_leaf(data: bytes) -> Chunk:
    """What check_lines gives when its one-decode path is not taken."""
    lines = data.split(b"\n")
    tail = lines.pop()
    chunk = Chunk(count=len(lines), cut=tail != b"")
    digests = [hashlib.sha256(b"\x00" + raw).digest() for raw in lines]
    chunk.hashes = b"".join(digests)
    _check_each(chunk, lines, digests)
    add_levels(chunk)
    return chunk


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 40), st.integers(1, 24), st.data())
def test_a_chunk_checked_whole_equals_it_checked_leaf_by_leaf(
    start: int, count: int, data: st.DataObject
) -> None:
    leaves, _ = generated(64)
    lines = list(leaves[start : start + count])
    edit = data.draw(st.sampled_from(["none", "flip", "swap", "drop", "dup", "blank", "slow"]))
    at = data.draw(st.integers(0, len(lines) - 1))
    if edit == "flip":
        raw = bytearray(lines[at])
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
        lines[at] = bytes(raw).replace(b"\n", b" ")
    elif edit == "swap" and len(lines) > 1:
        other = data.draw(st.integers(0, len(lines) - 1))
        lines[at], lines[other] = lines[other], lines[at]
    elif edit == "drop" and len(lines) > 1:
        del lines[at]
    elif edit == "dup":
        lines.insert(at, lines[at])
    elif edit == "blank":
        lines.insert(at, b"")
    elif edit == "slow":  # accepted by parse_leaf only: a float-free but non-canonical escape
        lines[at] = lines[at].replace(b'"action":"', b'"action":"\\u00e9', 1)
    cut = data.draw(st.sampled_from([b"", b'{"data"']))
    body = b"".join(raw + b"\n" for raw in lines) + cut
    # Decoded a piece at a time: a byte (a line each), ~1 or ~3 leaves, the default.
    piece = data.draw(st.sampled_from([1, 700, 2500, leaf_chunks.PIECE_BYTES]))
    with piece_bytes(piece):
        assert check_lines(body) == leaf_by_leaf(body)


@contextmanager
def piece_bytes(size: int) -> Iterator[None]:
    kept = leaf_chunks.PIECE_BYTES
    leaf_chunks.PIECE_BYTES = size
    try:
        yield
    finally:
        leaf_chunks.PIECE_BYTES = kept


@pytest.mark.parametrize("piece", [1, 700, 2500, 1 << 18])
def test_the_whole_chunk_path_is_taken_for_clean_chunks(piece: int) -> None:
    leaves, _ = generated(32)
    body = b"".join(raw + b"\n" for raw in leaves[5:30])
    with piece_bytes(piece):
        assert _check_whole(Chunk(count=25), body, leaf_hashes(body))
        chunk = check_lines(body)
    assert chunk == leaf_by_leaf(body)
    assert chunk.clean == chunk.count == 25 and not chunk.errors
    assert list(chunk.indices) == list(range(5, 30)) and chunk.links == b"\x00" + b"\x01" * 24


@pytest.mark.parametrize("piece", [1, 700, 1 << 18])
@pytest.mark.parametrize(
    "edit",
    [
        "space after a comma",  # decodes to the same leaf, one byte longer
        "keys swapped",  # the same leaf, the same length, another order
        "trailing blank line",  # decode_lines skips it: the encoding is a prefix of the piece
        "leading blank line",
    ],
)
def test_the_whole_path_compares_every_byte_of_a_piece(piece: int, edit: str) -> None:
    leaves, _ = generated(8)
    lines = list(leaves)
    if edit == "space after a comma":
        lines[5] = lines[5].replace(b'","', b'", "', 1)
    elif edit == "keys swapped":
        lines[5] = lines[5].replace(
            b'"specversion":"1.0","subject":"5"', b'"subject":"5","specversion":"1.0"'
        )
        assert lines[5] != leaves[5] and len(lines[5]) == len(leaves[5])
    elif edit == "trailing blank line":
        lines.append(b"")
    else:
        lines.insert(0, b"")
    body = b"".join(raw + b"\n" for raw in lines)
    with piece_bytes(piece):
        assert not _check_whole(Chunk(count=len(lines)), body, leaf_hashes(body))
        assert check_lines(body) == leaf_by_leaf(body)


@pytest.mark.parametrize("enabled", [True, False])
def test_checking_a_chunk_leaves_the_collector_as_it_was(enabled: bool) -> None:
    leaves, _ = generated(4)
    before = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        check_lines(b"".join(raw + b"\n" for raw in leaves) + b"{not json\n")
        assert gc.isenabled() == enabled
    finally:
        (gc.enable if before else gc.disable)()


@pytest.mark.parametrize("bad", [b"A", b"g", b"\\n", b" "])
def test_a_hash_not_in_lower_case_hex_fails_the_chunk_as_it_fails_the_leaf(bad: bytes) -> None:
    leaves, _ = generated(8)
    value = json.loads(leaves[4])
    sha = value["data"]["source"]["sha256"]
    tampered = _edit(leaves[4], sha.encode(), bad + sha[1:].encode())
    assert quick_leaf(tampered) is None
    body = b"".join(raw + b"\n" for raw in [*leaves[:4], tampered, *leaves[5:]])
    chunk = check_lines(body)
    assert chunk == leaf_by_leaf(body) and chunk.clean == 4 and 4 in chunk.errors


def test_the_structs_declare_their_fields_in_sorted_order() -> None:
    """The encoder writes struct fields as declared ("deterministic"): declared sorted, that is
    the canonical order."""
    from services.audit.leaf_chunks import _ENCODER, _Actor, _Entry, _Leaf, _Source

    assert _ENCODER.order == "deterministic"
    for struct in (_Actor, _Source, _Entry, _Leaf):
        assert list(struct.__struct_fields__) == sorted(struct.__struct_fields__), struct
