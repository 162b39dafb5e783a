"""Whatever bytes arrive on a command subject, parsing ends in the typed command or a typed
rejection that names fields and never repeats what was sent."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.commands import (
    ALL_COMMANDS,
    AcceptReferral,
    Command,
    RegisterShelter,
    SubmitScreening,
)
from contracts.replies import CommandRejection, ErrorCode
from contracts.subjects import command_subject
from services.agencies.registry import load_registry
from services.runtime.command_body import MAX_BODY_BYTES, MAX_DEPTH, read_json
from services.runtime.messaging import describe_failure, parse_command, rejection_notice
from tests.hostile_corpus import MARKER, domain_rejected, examples, parse_rejected

REGISTRY = load_registry()

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


SUBJECTS = sorted(examples())


def _leaks(text: str) -> bool:
    return MARKER in text.lower()


@pytest.mark.parametrize("subject", SUBJECTS)
def test_the_hostile_corpus_is_rejected_by_every_command_without_an_echo(subject: str) -> None:
    """Every body of the corpus, sent as every command: a typed rejection whose fields and
    reasons hold no submitted value, and a notice that keeps no agency id the registry lacks."""
    bodies = parse_rejected(subject)
    assert len(bodies) > 70  # the corpus was built, not silently empty
    for command_type in ALL_COMMANDS:
        for case in bodies:
            with pytest.raises(CommandRejection) as caught:
                parse_command(command_type, case.body)
            errors = caught.value.errors
            assert errors, case.label
            for error in errors:
                assert error.reason, case.label
                assert not _leaks(error.field) and not _leaks(error.reason), (case.label, error)
                assert error.code in (ErrorCode.INVALID_JSON, ErrorCode.INVALID_FIELD)
            notice = rejection_notice(command_type, case.body, caught.value, REGISTRY)
            assert not _leaks(notice.model_dump_json()), case.label


def test_the_corpus_own_examples_parse() -> None:
    """The corpus mutates valid payloads: were they invalid, every mutation would be rejected
    for the wrong reason."""
    by_subject = {command_subject(c): c for c in ALL_COMMANDS}
    for subject, payload in examples().items():
        parse_command(by_subject[subject], json.dumps(payload).encode())
        for case in domain_rejected(subject):
            parse_command(by_subject[subject], case.body)


@pytest.mark.parametrize(
    ("label", "body", "field", "reason"),
    [
        ("deep", b"[" * 2000 + b"]" * 2000, "", f"nested deeper than {MAX_DEPTH}"),
        ("depth at the limit", b"[" * MAX_DEPTH + b"]" * MAX_DEPTH, "", "must be a JSON object"),
        ("huge integer", b'{"age": 1' + b"0" * 5000 + b"}", "", "more than 20 digits"),
        ("21 digits", b'{"age": 100000000000000000000}', "", "more than 20 digits"),
        ("NaN", b'{"age": NaN}', "", "NaN"),
        ("duplicate key", b'{"age": 1, "age": 2}', "", "duplicate key"),
        ("lone surrogate", b'{"sex": "\\ud800"}', "", "surrogate"),
        ("byte-order mark", b"\xef\xbb\xbf{}", "", "byte-order mark"),
        ("UTF-16", "{}".encode("utf-16"), "", "UTF-8"),
        ("too large", b" " * (MAX_BODY_BYTES + 1), "", "larger than"),
        ("empty", b"", "", "not valid JSON"),
    ],
)
def test_limits_are_named(label: str, body: bytes, field: str, reason: str) -> None:
    with pytest.raises(CommandRejection) as caught:
        parse_command(RegisterShelter, body)
    (error,) = caught.value.errors
    assert (error.field, error.code) == (field, ErrorCode.INVALID_JSON), label
    assert reason in error.reason, label


def test_a_valid_surrogate_pair_and_20_digits_are_json() -> None:
    assert read_json(b'["\\ud83d\\ude00", 12345678901234567890, -1.5e-10]') == [
        "\U0001f600",
        12345678901234567890,
        -1.5e-10,
    ]


def _shelter(**changes: Any) -> bytes:
    payload = {"command_id": str(uuid.uuid4()), "agency_id": "kg-ngo-osh-crisis-centre"}
    return json.dumps({**payload, "capacity": {"women": 5}, **changes}).encode()


@pytest.mark.parametrize(
    ("label", "changes", "field"),
    [
        ("bed count as text", {"capacity": {"women": "5"}}, "capacity.women"),
        ("bed count as bool", {"capacity": {"women": True}}, "capacity.women"),
        ("bed count as float", {"capacity": {"women": 5.0}}, "capacity.women"),
        ("unknown category", {"capacity": {"qx7mark_sofa": 5}}, "capacity.(other)"),
        ("upper-case UUID", {"command_id": str(uuid.uuid4()).upper()}, "command_id"),
        ("braced UUID", {"command_id": "{" + str(uuid.uuid4()) + "}"}, "command_id"),
        ("urn UUID", {"command_id": uuid.uuid4().urn}, "command_id"),
        ("unhyphenated UUID", {"command_id": uuid.uuid4().hex}, "command_id"),
        ("nil UUID", {"command_id": str(uuid.UUID(int=0))}, "command_id"),
        ("UUID as a number", {"command_id": uuid.uuid4().int % 10**20}, "command_id"),
        ("unknown field", {"qx7mark_surname": 1}, "(other)"),
    ],
)
def test_only_canonical_forms_are_accepted(label: str, changes: dict[str, Any], field: str) -> None:
    parse_command(RegisterShelter, _shelter())  # the unchanged body is valid
    with pytest.raises(CommandRejection) as caught:
        parse_command(RegisterShelter, _shelter(**changes))
    assert [e.field for e in caught.value.errors] == [field], label
    assert not any(_leaks(e.reason) for e in caught.value.errors)


def test_a_reason_never_quotes_the_uuid_parser_detail() -> None:
    with pytest.raises(CommandRejection) as caught:
        parse_command(AcceptReferral, _shelter(referral_id="Xqx7mark"))
    reasons = " ".join(e.reason for e in caught.value.errors)
    assert "X" not in reasons.replace("UUID", "") and not _leaks(reasons)


def test_nested_unknown_keys_are_other() -> None:
    example = examples()["nrm.cmd.screening.submit"]
    consent = {**example["consent"], "qx7mark_key": 1}
    sealed = {**example["personal_data"], "qx7mark_key": 1}
    body = json.dumps({**example, "consent": consent, "personal_data": sealed}).encode()
    with pytest.raises(CommandRejection) as caught:
        parse_command(SubmitScreening, body)
    assert {e.field for e in caught.value.errors} == {"consent.(other)", "personal_data.(other)"}


def test_the_hub_can_still_build_commands_from_uuid_objects() -> None:
    command = AcceptReferral(
        command_id=uuid.uuid4(), agency_id="kg-ngo-osh-crisis-centre", referral_id=uuid.uuid4()
    )
    assert parse_command(AcceptReferral, command.model_dump_json().encode()) == command


def test_a_failure_among_writes_side_by_side_is_described_by_what_failed() -> None:
    """A TaskGroup's failure reaches the consumer loop as an ExceptionGroup: the dead letter
    and the log say which writes failed and why, not 'unhandled errors in a TaskGroup'."""
    group = ExceptionGroup("writes", [TimeoutError("append"), KeyError("need")])
    assert describe_failure(group) == "TimeoutError: append; KeyError: 'need'"
