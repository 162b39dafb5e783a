"""Whatever bytes arrive on a command subject, parsing ends in the typed command or a typed
rejection that names fields and never repeats what was sent."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.commands import ALL_COMMANDS, Command
from contracts.replies import CommandRejection
from services.runtime.messaging import parse_command

CANARY = "Canary\u202eName\u0000\U0001f600"
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=5)
    ),
    max_leaves=20,
)
field_names = st.sampled_from(
    [
        "command_id",
        "agency_id",
        "region",
        "sex",
        "age",
        "personal_data",
        "referral_id",
        "capacity",
        "criteria",
        "reason",
        "delivered",
        "needs",
        "x" * 300,
    ]
)


def _check(command_type: type[Command], body: bytes) -> None:
    try:
        parse_command(command_type, body)
    except CommandRejection as rejection:
        assert rejection.errors
        for error in rejection.errors:
            assert error.reason
            assert CANARY not in error.reason and CANARY not in error.field


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(ALL_COMMANDS), st.binary(max_size=300))
def test_arbitrary_bytes(command_type: type[Command], body: bytes) -> None:
    _check(command_type, body)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(ALL_COMMANDS),
    st.dictionaries(field_names, json_values | st.just(CANARY), max_size=8),
)
def test_hostile_json_objects(command_type: type[Command], payload: dict[str, Any]) -> None:
    _check(command_type, json.dumps(payload).encode())
