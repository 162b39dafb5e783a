"""The committed JSON Schemas and AsyncAPI documents match the code, and are well formed: an
integrator reads these files, not the Python models. asyncapi.json is what agencies use (their
own command subjects, replies, the intake key, their feed); asyncapi-internal.json the rest."""

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
from contracts.generate import (
    asyncapi,
    asyncapi_internal,
    check_all,
    feed_events,
    json_schemas,
    reply_models,
    vectors_drift,
    write_all,
)
from contracts.subjects import (
    CASE_EVENTS_FOR_FEED,
    FEEDS_STREAM,
    INTAKE_KEY_SUBJECT,
    command_subject,
)

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


@pytest.mark.parametrize("document", [asyncapi(), asyncapi_internal()], ids=["agency", "internal"])
def test_every_asyncapi_reference_resolves(document: dict[str, Any]) -> None:
    refs = _refs(document)
    assert len(refs) > len(ALL_COMMANDS) + len(feed_events())
    for ref in refs:
        _resolve(document, ref)


def test_each_model_has_exactly_one_schema_file_and_one_internal_channel() -> None:
    channels: dict[str, Any] = asyncapi_internal()["channels"]
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


@pytest.mark.parametrize("document", [asyncapi(), asyncapi_internal()], ids=["agency", "internal"])
def test_commands_are_received_with_a_reply(document: dict[str, Any]) -> None:
    operations: dict[str, Any] = document["operations"]
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


def test_the_internal_document_sends_every_event() -> None:
    operations: dict[str, Any] = asyncapi_internal()["operations"]
    for event in ALL_EVENTS:
        assert operations[f"event.{event.NAME}"]["action"] == "send"


AGENCY = asyncapi()


def test_agencies_see_their_own_subjects_and_no_internal_channel() -> None:
    addresses = [c["address"] for c in AGENCY["channels"].values() if c["address"] is not None]
    assert not [a for a in addresses if a.startswith("nrm.evt.")]
    for command in ALL_COMMANDS:
        channel = AGENCY["channels"][f"command.{command.NAME}"]
        assert channel["address"] == command_subject(command) + ".{agencyId}"
        assert set(channel["parameters"]) == {"agencyId"}
    assert sorted(addresses) == sorted(
        [command_subject(c) + ".{agencyId}" for c in ALL_COMMANDS]
        + [INTAKE_KEY_SUBJECT, "nrm.feed.{agencyId}.{aggregateId}.{eventType}"]
    )


def test_every_agency_command_has_its_example_valid_against_its_schema() -> None:
    for command in ALL_COMMANDS:
        message = AGENCY["components"]["messages"][f"command.{command.NAME}"]
        [example] = message["examples"]
        schema = SCHEMAS[f"command.{command.NAME}.v{command.VERSION}.json"]
        Draft202012Validator(schema).validate(example["payload"])
        command.model_validate(example["payload"])
    sealed = AGENCY["components"]["messages"]["command.screening.submit"]["examples"][0]
    assert set(sealed["payload"]["personal_data"]) == {"v", "suite", "kid", "blob"}


def test_the_intake_key_is_a_request_answered_with_the_key() -> None:
    operation = AGENCY["operations"]["intake.key"]
    assert operation["action"] == "receive"
    assert AGENCY["channels"]["intake.key"]["address"] == INTAKE_KEY_SUBJECT
    [answer] = operation["reply"]["messages"]
    key = AGENCY["components"]["messages"]["intake.key"]
    assert answer["$ref"] == "#/channels/intake.key.reply/messages/key"
    assert set(key["examples"][0]["payload"]) == {"kid", "public_key"}


def test_the_feed_carries_referral_need_and_acting_case_events_from_jetstream() -> None:
    channel = AGENCY["channels"]["feed"]
    assert channel["x-nrm-jetstream"]["stream"] == FEEDS_STREAM
    assert channel["x-nrm-jetstream"]["filterSubject"] == "nrm.feed.{agencyId}.>"
    names = {e.NAME for e in feed_events()}
    assert set(channel["parameters"]["eventType"]["enum"]) == names == set(channel["messages"])
    assert {e.NAME for e in CASE_EVENTS_FOR_FEED} <= names
    assert {e.NAME for e in ALL_EVENTS if e.AGGREGATE in ("referral", "need")} <= names
    assert "victim.identified" not in names  # stays in the internal stream
    operation = AGENCY["operations"]["feed"]
    assert operation["action"] == "send" and len(operation["messages"]) == len(names)


def test_replies_and_feed_messages_are_cloudevents_around_their_model() -> None:
    for key, message in AGENCY["components"]["messages"].items():
        if message["contentType"] != "application/cloudevents+json":
            continue
        envelope, typed = message["payload"]["allOf"]
        assert envelope == {"$ref": "#/components/schemas/Envelope"}, key
        assert typed["properties"]["type"]["const"] in (key, key.removeprefix("feed."))


def test_servers_say_how_an_agency_signs_in() -> None:
    schemes = AGENCY["components"]["securitySchemes"]
    assert schemes["clientCertificate"]["type"] == "X509"
    assert {s["protocol"] for s in AGENCY["servers"].values()} == {"nats"}
    for server in AGENCY["servers"].values():
        [scheme] = server["security"]
        assert scheme["$ref"].removeprefix("#/components/securitySchemes/") in schemes


def test_every_command_has_one_reply_list_ending_in_a_rejection() -> None:
    for command in ALL_COMMANDS:
        assert reply_models(command)[-1].__name__ == "CommandRejected"


def test_the_committed_sealing_vectors_are_what_the_code_computes() -> None:
    assert not vectors_drift(), "contracts/test_vectors/sealing.json is stale: make contracts"
