"""The header parser the hub installs in nats-py gives exactly what nats-py's own gives."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from nats.aio.client import Client

from services.runtime import nats_headers

# Names and values from the bytes that matter: letters, separators, every ASCII whitespace
# (str.isspace: \t \n \x0b \x0c \r \x1c-\x1f and space), colons, non-ASCII and invalid UTF-8.
_pieces = st.sampled_from(
    [b"Nats-Msg-Id", b"Nats-Sequence", b"a", b"-", b":", b": ", b" ", b"\t", b"\x0b", b"\x0c",
     b"\x1c", b"\x1f", b"\r", b"\n", b"\r\n", b"\xc3\xa9", b"\xff", b"7", b"x y", b"\x00"]
)  # fmt: skip
_lines = st.lists(_pieces, max_size=8).map(b"".join)
_blocks = st.lists(_lines, max_size=8).map(b"\r\n".join)


def test_the_hub_replaced_nats_pys_parser_and_kept_the_original() -> None:
    assert nats_headers.ORIGINAL is not None  # nats-py still has the method replaced
    assert Client._parse_header_lines is nats_headers.parse_header_lines


@given(_blocks)
@settings(max_examples=2000, deadline=None)
def test_both_parsers_read_every_header_block_alike(block: bytes) -> None:
    assert nats_headers.ORIGINAL is not None
    assert nats_headers.parse_header_lines(block) == nats_headers.ORIGINAL(block)


def test_a_direct_get_reply_reads_as_nats_py_reads_it() -> None:
    block = (
        b"Nats-Stream: NRM_EVENTS\r\nNats-Subject: nrm.event.case.1.victim.identified\r\n"
        b"Nats-Sequence: 42\r\nNats-Time-Stamp: 2026-12-01T19:00:00.1Z\r\n"
        b"Nats-Msg-Id: 5f0c\r\nBad Name: dropped\r\n\r\n"
    )
    parsed = nats_headers.parse_header_lines(block)
    assert parsed["Nats-Sequence"] == "42" and "Bad Name" not in parsed
    assert nats_headers.ORIGINAL is not None and parsed == nats_headers.ORIGINAL(block)
