"""Reading an untrusted JSON body (a command, or the sealed personal data once opened) within
documented limits, so that no body, however deep, long or odd, escapes as anything but a
`BodyError` with a fixed reason.

The limits (README, "Integrating an agency system"):

- at most `MAX_BODY_BYTES` bytes, UTF-8 without a byte-order mark;
- arrays and objects nested at most `MAX_DEPTH` deep;
- a number has at most `MAX_NUMBER_DIGITS` digits, and must be finite;
- no NaN / Infinity, no duplicate key in an object (two parsers could pick different values),
  no lone UTF-16 surrogate in a string (it cannot be stored as UTF-8).

The standard library's parser recurses once per nesting level and converts an integer of any
length (RecursionError, ValueError past 4,300 digits): the depth is checked first by a
non-recursive scan, and numbers are checked as text before conversion.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_BODY_BYTES = 256 * 1024
MAX_DEPTH = 32
MAX_NUMBER_DIGITS = 20

# A complete string token, a bracket, or a quote that opens no complete string (the body is
# then not JSON). Matching left to right, brackets inside strings are never counted, and the
# scan is linear: possessive repeats never backtrack.
_TOKEN = re.compile(r'"(?:[^"\\]++|\\.)*+"|[\[\]{}"]', re.DOTALL)
_SURROGATE = re.compile("[\ud800-\udfff]")


class BodyError(ValueError):
    """The body is not JSON within the limits. The reason is a fixed text, never the input."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def read_json(body: bytes) -> Any:
    """The JSON value of `body`, or BodyError."""
    if len(body) > MAX_BODY_BYTES:
        raise BodyError(f"body is larger than {MAX_BODY_BYTES} bytes")
    if body.startswith(b"\xef\xbb\xbf"):
        raise BodyError("body must be UTF-8 without a byte-order mark")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyError("body must be UTF-8") from None
    _check_depth(text)
    try:
        value = json.loads(
            text,
            parse_int=_integer,
            parse_float=_float,
            parse_constant=_constant,
            object_pairs_hook=_object,
        )
    except BodyError:
        raise
    except ValueError:  # JSONDecodeError, and nothing else can reach here within the limits
        raise BodyError("body is not valid JSON") from None
    _check_strings(value)
    return value


def read_json_object(body: bytes) -> dict[str, Any]:
    value = read_json(body)
    if not isinstance(value, dict):
        raise BodyError("body must be a JSON object")
    return value


def _check_depth(text: str) -> None:
    depth = 0
    for token in _TOKEN.finditer(text):
        match token.group():
            case "[" | "{":
                depth += 1
                if depth > MAX_DEPTH:
                    raise BodyError(f"JSON nested deeper than {MAX_DEPTH} levels")
            case "]" | "}":
                depth -= 1
            case '"':
                return  # an unterminated string: the parser rejects it without recursing on


def _digits(text: str) -> str:
    # Besides digits a JSON number has at most a sign, a point, an "e" and its sign.
    if len(text) > MAX_NUMBER_DIGITS + 4 or sum(c.isdigit() for c in text) > MAX_NUMBER_DIGITS:
        raise BodyError(f"a number has more than {MAX_NUMBER_DIGITS} digits")
    return text


def _integer(text: str) -> int:
    return int(_digits(text))


def _float(text: str) -> float:
    value = float(_digits(text))
    if not math.isfinite(value):
        raise BodyError("a number is out of range")
    return value


def _constant(name: str) -> float:
    raise BodyError("NaN and Infinity are not JSON")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        raise BodyError("an object has a duplicate key")
    return value


def _check_strings(value: Any) -> None:
    # Iterative: the depth is already bounded, but a stack costs nothing here.
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                raise BodyError("a string holds a lone UTF-16 surrogate")
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
