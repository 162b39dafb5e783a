"""The committed JSON Schemas, AsyncAPI document and examples match the code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from contracts.commands import ALL_COMMANDS
from contracts.events import ALL_EVENTS
from contracts.generate import SCHEMA_DIR, asyncapi, check_all, json_schemas
from contracts.subjects import command_subject

EXAMPLES = sorted((Path(__file__).parents[2] / "contracts" / "examples").glob("*.json"))
BY_SUBJECT = {command_subject(c): c for c in ALL_COMMANDS}


def test_committed_documents_are_what_the_code_generates() -> None:
    assert check_all() == [], "contracts/schema is out of date: run `make contracts`"


def test_check_notices_drift(tmp_path: Path) -> None:
    (tmp_path / "event.victim.identified.v1.json").write_text("{}")
    (tmp_path / "event.gone.v1.json").write_text("{}")
    drift = check_all(tmp_path)
    assert "event.victim.identified.v1.json" in drift and "event.gone.v1.json" in drift


@pytest.mark.parametrize("name", sorted(json_schemas()))
def test_every_schema_is_valid_draft_2020_12(name: str) -> None:
    Draft202012Validator.check_schema(json_schemas()[name])


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_every_asyncapi_reference_resolves() -> None:
    document = asyncapi()
    refs = _refs(document)
    assert refs
    for ref in refs:
        node: Any = document
        for part in ref.removeprefix("#/").split("/"):
            assert isinstance(node, dict) and part in node, f"unresolved {ref}"
            node = node[part]


def test_one_schema_file_and_one_channel_per_model() -> None:
    files = set(json_schemas())
    channels = asyncapi()["channels"]
    for model in ALL_COMMANDS:
        assert f"command.{model.NAME}.v{model.VERSION}.json" in files
        assert channels[f"command.{model.NAME}"]["address"] == command_subject(model)
    for event in ALL_EVENTS:
        assert f"event.{event.NAME}.v{event.VERSION}.json" in files
        assert f"event.{event.NAME}" in channels


def test_there_is_an_example_for_every_command() -> None:
    covered = {json.loads(p.read_text())["subject"] for p in EXAMPLES}
    assert covered == set(BY_SUBJECT)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_is_a_valid_command_for_its_subject(path: Path) -> None:
    example = json.loads(path.read_text())
    assert set(example) == {"subject", "payload"}
    command = BY_SUBJECT[example["subject"]]
    command.model_validate(example["payload"])
    schema = json.loads(
        (SCHEMA_DIR / f"command.{command.NAME}.v{command.VERSION}.json").read_text()
    )
    Draft202012Validator(schema).validate(example["payload"])
