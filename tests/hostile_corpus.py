"""Hostile command bodies, from the attacker trial's findings: deep nesting, huge numbers and
strings, wrong types, unknown keys, byte-order marks and UTF-16, non-canonical UUIDs,
duplicate keys, lone surrogates, NaN, empty and non-object bodies.

Every submitted value and invented key carries `MARKER` (any case), so a test can check that
no reply, rejection or notice repeats what was sent. `parse_rejected(subject)` must each be
rejected by `parse_command`; `domain_rejected(subject)` parse but are rejected by the service
(an agency id that looks right but is in no registry, text that is not a key)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MARKER = "qx7mark"
TEXT = "QX7MARK Anna Petrova \u202e\u0000 +996 555 000 111"
KEY = "qx7mark_surname"
# Shaped like sealed personal data, so that the other fields decide the outcome.
SEALED_SHAPE = {"v": 1, "suite": "X25519-SHA256-A256GCM", "kid": "0" * 16, "blob": "AAAA"}
UUID_FIELDS = ("command_id", "referral_id", "case_id")
CANONICAL = "5f2d9a40-8c1e-4b7a-9d3f-6a1e2c4b5d02"
NOT_CANONICAL = (
    CANONICAL.upper(),
    "{" + CANONICAL + "}",
    "urn:uuid:" + CANONICAL,
    CANONICAL.replace("-", ""),
    "00000000-0000-0000-0000-000000000000",
)


@dataclass(frozen=True)
class Body:
    label: str
    body: bytes


def examples() -> dict[str, dict[str, Any]]:
    """The ready-to-send example payload per command subject, in wire form."""
    found = {}
    for path in sorted((Path(__file__).parents[1] / "contracts" / "examples").glob("*.json")):
        example = json.loads(path.read_text())
        payload = example["payload"]
        if "personal_data" in payload:
            payload = {**payload, "personal_data": SEALED_SHAPE}
        found[example["subject"]] = payload
    return found


def _dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


HOLE = "<hole>"


def _raw(value: Any, fill: bytes) -> bytes:
    """The JSON of `value` with the string HOLE replaced by `fill`, which JSON cannot say."""
    return _dumps(value).replace(json.dumps(HOLE).encode(), fill)


def _nested(depth: int) -> bytes:
    return b'{"' + KEY.encode() + b'": ' * depth + b'"' + TEXT.encode() + b'"' + b"}" * depth


GENERIC: tuple[Body, ...] = (
    Body("empty", b""),
    Body("whitespace", b" \n\t "),
    Body("null", b"null"),
    Body("array", _dumps([TEXT, {KEY: TEXT}])),
    Body("string", _dumps(TEXT)),
    Body("number", b"42"),
    Body("true", b"true"),
    Body("truncated", b'{"' + KEY.encode() + b'": "' + TEXT.encode()),
    Body("no value", b'{"' + KEY.encode() + b'": }'),
    Body("single quotes", b"{'" + KEY.encode() + b"': 1}"),
    Body("trailing comma", b'{"' + KEY.encode() + b'": 1,}'),
    Body("raw control character", b'{"' + KEY.encode() + b'": "a\x01b"}'),
    Body("not UTF-8", b'{"' + KEY.encode() + b'": "\xff\xfe"}'),
    Body("latin-1", '{"qx7mark": "Anna Petrová QX7MARK"}'.encode("latin-1")),
    Body("deep arrays", b"[" * 2000 + b"]" * 2000),
    Body("deep objects with marker keys", _nested(2000)),
    Body("just over the depth limit", _nested(33)),
    Body("unclosed deep", b'{"' + KEY.encode() + b'": ' + b"[" * 50_000),
    Body("huge integer", b'{"' + KEY.encode() + b'": 1' + b"7" * 5000 + b"}"),
    Body("huge top-level integer", b"-" + b"7" * 5000),
    Body("21-digit integer", b'{"' + KEY.encode() + b'": 123456789012345678901}'),
    Body("huge exponent", b'{"' + KEY.encode() + b'": 1e99999}'),
    Body("NaN", b'{"' + KEY.encode() + b'": NaN}'),
    Body("Infinity", b'{"' + KEY.encode() + b'": -Infinity}'),
    Body("lone surrogate", b'{"' + KEY.encode() + b'": "\\ud800QX7MARK"}'),
    Body("lone surrogate in a key", b'{"\\udfffqx7mark": 1}'),
    Body("duplicate key", b'{"' + KEY.encode() + b'": 1, "' + KEY.encode() + b'": 2}'),
    Body("over the size limit", _dumps({KEY: TEXT * 8000})),
    Body("many keys", _dumps({f"{KEY}{i}": TEXT for i in range(2000)})),
)


def _variants(field: str, value: Any) -> list[Any]:
    """Values that are wrong for `field` whatever its type."""
    wrong: list[Any] = [True, "5", 5.5, {KEY: TEXT}, [TEXT], [{KEY: TEXT}]]
    if field != "public_key":  # any text of its length parses; custody then rejects it
        wrong.append(TEXT)
    if field in UUID_FIELDS:
        wrong += list(NOT_CANONICAL)
    if isinstance(value, dict):  # an unknown key beside the right ones
        wrong.append({**value, KEY: TEXT})
    if isinstance(value, list) and value and isinstance(value[0], dict):
        wrong.append([{**value[0], KEY: TEXT}])
    return wrong


def parse_rejected(subject: str) -> list[Body]:
    """Bodies for `subject` that parsing must reject."""
    example = examples()[subject]
    text = json.dumps(example)
    bodies = list(GENERIC)
    bodies += [
        Body("byte-order mark", b"\xef\xbb\xbf" + text.encode()),
        Body("UTF-16", text.encode("utf-16")),
        Body("UTF-16-LE", text.encode("utf-16-le")),
        Body("UTF-32", text.encode("utf-32")),
        Body("unknown key", _dumps({**example, KEY: TEXT})),
        Body("duplicate field", ('{"command_id": "' + TEXT + '", ' + text[1:]).encode()),
        Body("huge string", _dumps({**example, KEY: "QX7MARK" * 30_000})),
        Body("deep in a field", _raw({**example, KEY: HOLE}, _nested(40))),
    ]
    for field, value in example.items():
        for i, wrong in enumerate(_variants(field, value)):
            bodies.append(Body(f"{field} #{i}", _dumps({**example, field: wrong})))
        for label, number in (("huge integer", b"9" * 5000), ("NaN", b"NaN"), ("1e400", b"1e400")):
            bodies.append(Body(f"{field} {label}", _raw({**example, field: HOLE}, number)))
    for field in ("age", "quantity"):
        bodies += _int_variants(example, field)
    if "capacity" in example:
        for wrong in ("5", True, 5.0, None):
            bodies.append(
                Body(f"capacity {wrong!r}", _dumps({**example, "capacity": {"women": wrong}}))
            )
        bodies.append(Body("capacity unknown key", _dumps({**example, "capacity": {KEY: 1}})))
    return bodies


def _int_variants(example: dict[str, Any], field: str) -> list[Body]:
    if field in example:
        return [Body(f"{field} {w!r}", _dumps({**example, field: w})) for w in ("5", True, 5.0)]
    if field == "quantity" and "delivered" in example:
        item = example["delivered"][0]
        return [
            Body(
                f"delivered.0.quantity {w!r}",
                _dumps({**example, "delivered": [{**item, "quantity": w}]}),
            )
            for w in ("5", True, 5.0)
        ]
    return []


def domain_rejected(subject: str) -> list[Body]:
    """Bodies for `subject` that parse, then are rejected: agency ids no registry lists."""
    example = examples()[subject]
    unknown = "kg-qx7mark-anna-petrova"
    bodies = [Body("unknown agency_id", _dumps({**example, "agency_id": unknown}))]
    if "for_agency" in example:
        bodies.append(Body("unknown for_agency", _dumps({**example, "for_agency": unknown})))
    if "public_key" in example:
        bodies.append(Body("public_key not a key", _dumps({**example, "public_key": TEXT})))
    return bodies
