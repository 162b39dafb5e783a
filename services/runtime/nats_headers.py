"""A faster parser of NATS message headers for nats-py, with the same results.

Every JetStream message the hub takes carries headers (a direct-get reply seven of them), and
nats-py 2.16 parses each header block in Python, testing every character of every header
name with a generator (`any(c.isspace() for c in key)`). Profiled on a whole-stream read that
test alone was ~30 % of the reader's CPU (docs/PERFORMANCE.md, "Header parsing"). This
parser keeps nats-py's rules line for line (split on CRLF, the name is the ASCII text before
the first colon, stripped; a name holding whitespace is dropped; the value is stripped and
decoded as UTF-8 with replacement) but tests the name with one `str.split()`, which splits
on exactly the characters `str.isspace` accepts. `install` replaces nats-py's
`Client._parse_header_lines` with it, once; tests/unit/test_nats_headers.py checks that both
give the same dict on random header blocks, and that nats-py still has the method we
replace (a nats-py that renames it keeps its own parser: nothing breaks, it is only slower).
"""

from __future__ import annotations

from nats.aio.client import Client

_CRLF = b"\r\n"


def parse_header_lines(raw: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in raw.split(_CRLF):
        if not line:
            continue
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        try:
            key = name.strip().decode("ascii")
        except UnicodeDecodeError:
            continue
        if key and key.split() != [key]:  # whitespace inside the name: not a header
            continue
        out[key] = value.strip().decode("utf-8", "replace")
    return out


ORIGINAL = getattr(Client, "_parse_header_lines", None)


def install() -> bool:
    """Use `parse_header_lines` in nats-py; False if nats-py has no such method to replace."""
    if ORIGINAL is None:
        return False
    Client._parse_header_lines = staticmethod(parse_header_lines)  # type: ignore[method-assign]
    return True
