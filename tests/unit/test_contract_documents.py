"""The committed JSON Schemas and AsyncAPI document match the code, and are well formed: an
integrator reads these files, not the Python models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from contracts.commands import (
    ALL_COMMANDS,
    CheckAttestation,
    IssueAttestation,
    RequestAccess,
    RequestCrossBorderReferral,
)
from contracts.envelope import schema_uri
from contracts.events import ALL_EVENTS
from contracts.generate import asyncapi, check_all, json_schemas, write_all
from contracts.subjects import command_subject

SCHEMAS = json_schemas()


def test_committed_documents_are_what_the_code_generates() -> None:
    drift = check_all()
    assert drift == [], f"contracts/schema is out of date ({drift}): run `make contracts`"


def test_check_notices_stale_missing_and_extra_files(tmp_path: Path) -> None:
    write_all(tmp_path)
    assert check_all(tmp_path) == []
    (tmp_path / "event.victim.identified.v1.json").write_text("{}")
    (tmp_path / "command.referral.accept.v1.json").unlink()
    (tmp_path / "event.gone.v1.json").write_text("{}")
    assert sorted(check_all(tmp_path)) == [
        "command.referral.accept.v1.json",
        "event.gone.v1.json",
        "event.victim.identified.v1.json",
    ]
    write_all(tmp_path)
    assert check_all(tmp_path) == []
    assert not (tmp_path / "event.gone.v1.json").exists()


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_every_schema_is_valid_draft_2020_12(name: str) -> None:
    schema = SCHEMAS[name]
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].startswith("urn:nrm-hub:schema:")
    assert schema["title"]
    for ref in _refs(schema):
        _resolve(schema, ref)


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def _resolve(document: dict[str, Any], ref: str) -> None:
    assert ref.startswith("#/"), f"{ref} points outside the document"
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"unresolved {ref}"
        node = node[part]


def test_every_asyncapi_reference_resolves() -> None:
    document = asyncapi()
    refs = _refs(document)
    assert len(refs) > len(ALL_COMMANDS) + len(ALL_EVENTS)
    for ref in refs:
        _resolve(document, ref)


def test_each_model_has_exactly_one_schema_file_and_one_channel() -> None:
    channels: dict[str, Any] = asyncapi()["channels"]
    addresses = [channel["address"] for channel in channels.values()]
    for command in ALL_COMMANDS:
        uri = schema_uri(command.NAME, command.VERSION)
        files = [name for name, schema in SCHEMAS.items() if schema["$id"] == uri]
        assert files == [f"command.{command.NAME}.v{command.VERSION}.json"]
        assert addresses.count(command_subject(command)) == 1
    for event in ALL_EVENTS:
        uri = schema_uri(event.NAME, event.VERSION)
        files = [name for name, schema in SCHEMAS.items() if schema["$id"] == uri]
        assert files == [f"event.{event.NAME}.v{event.VERSION}.json"]
        address = f"nrm.evt.{event.AGGREGATE}.{{aggregateId}}.{event.NAME}"
        assert addresses.count(address) == 1
        assert set(channels[f"event.{event.NAME}"]["parameters"]) == {"aggregateId"}
    commands = [n for n in SCHEMAS if n.startswith("command.")]
    events = [n for n in SCHEMAS if n.startswith("event.")]
    assert (len(commands), len(events)) == (len(ALL_COMMANDS), len(ALL_EVENTS))


def test_commands_are_received_with_a_reply_and_events_sent() -> None:
    operations: dict[str, Any] = asyncapi()["operations"]
    for command in ALL_COMMANDS:
        operation = operations[f"command.{command.NAME}"]
        assert operation["action"] == "receive"
        answers = (
            {"access.released", "access.denied"}
            if command is RequestAccess
            else {"command.accepted"}
        )
        if command is RequestCrossBorderReferral:
            answers = {"command.accepted", "cross_border.refused"}
        if command is IssueAttestation:
            answers = {"attestation.credential"}
        if command is CheckAttestation:
            answers = {"attestation.status"}
        assert {m["$ref"] for m in operation["reply"]["messages"]} == {
            f"#/channels/reply/messages/{t}" for t in (*answers, "command.rejected")
        }
    for event in ALL_EVENTS:
        assert operations[f"event.{event.NAME}"]["action"] == "send"
