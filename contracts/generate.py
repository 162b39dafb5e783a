"""JSON Schema for every contract model, an AsyncAPI 3.0 document for the hub and an OpenAPI
3.1 document for its HTTPS gateway (contracts/openapi.py), generated from the models. The files
in `contracts/schema/` are committed so integrators can read them without Python; a test fails
when they drift from the code (`make contracts` regenerates)."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from contracts.commands import (
    ALL_COMMANDS,
    CheckAttestation,
    IssueAttestation,
    RequestAccess,
    RequestCrossBorderReferral,
    ScreeningInterview,
)
from contracts.envelope import CONTENT_TYPE, Envelope, schema_uri
from contracts.events import ALL_EVENTS
from contracts.openapi import OPENAPI_FILE, openapi
from contracts.operations import (
    AuditEntry,
    CommandRejectionNoted,
    DeadLetterRecorded,
    DeadLetterResolved,
    RedriveRequest,
)
from contracts.public_key_sealing import SealedToKey
from contracts.replies import (
    AccessDenied,
    AccessReleased,
    AttestationCredential,
    AttestationStatus,
    CommandAccepted,
    CommandRejected,
    TransferRefused,
)
from contracts.sealed import SealedValue
from contracts.subjects import EVENT_PREFIX, command_subject

SCHEMA_DIR = Path(__file__).parent / "schema"
ASYNCAPI_FILE = "asyncapi.json"
DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _schema(model: type[BaseModel], schema_id: str) -> dict[str, Any]:
    return {"$schema": DIALECT, "$id": schema_id, **model.model_json_schema()}


INTERVIEW_SCHEMA = "screening-interview.v1.json"


def json_schemas() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema, for every command, event, reply, the envelope and the
    sealed-value format."""
    files: dict[str, dict[str, Any]] = {}
    for command in ALL_COMMANDS:
        name = f"command.{command.NAME}.v{command.VERSION}.json"
        files[name] = _schema(command, schema_uri(command.NAME, command.VERSION))
    # The agency-side form of a screening (personal data in clear, sealed by the client).
    files[INTERVIEW_SCHEMA] = _schema(ScreeningInterview, schema_uri("screening.interview", 1))
    for event in ALL_EVENTS:
        name = f"event.{event.NAME}.v{event.VERSION}.json"
        files[name] = _schema(event, schema_uri(event.NAME, event.VERSION))
    files["envelope.cloudevents.json"] = _schema(Envelope, schema_uri("envelope", 1))
    files["reply.accepted.json"] = _schema(CommandAccepted, schema_uri(CommandAccepted.TYPE, 1))
    files["reply.rejected.json"] = _schema(CommandRejected, schema_uri(CommandRejected.TYPE, 1))
    files["reply.access-released.json"] = _schema(
        AccessReleased, schema_uri(AccessReleased.TYPE, 1)
    )
    files["reply.access-denied.json"] = _schema(AccessDenied, schema_uri(AccessDenied.TYPE, 1))
    files["reply.cross-border-refused.json"] = _schema(
        TransferRefused, schema_uri(TransferRefused.TYPE, 1)
    )
    files["reply.attestation-credential.json"] = _schema(
        AttestationCredential, schema_uri(AttestationCredential.TYPE, 1)
    )
    files["reply.attestation-status.json"] = _schema(
        AttestationStatus, schema_uri(AttestationStatus.TYPE, 1)
    )
    files["sealed-to-key.v1.json"] = _schema(SealedToKey, schema_uri("sealed-to-key", 1))
    files["sealed-value.v2.json"] = _schema(SealedValue, schema_uri("sealed-value", 2))
    for model in (AuditEntry, CommandRejectionNoted, DeadLetterRecorded, DeadLetterResolved):
        files[f"{model.TYPE}.v1.json"] = _schema(model, schema_uri(model.TYPE, 1))
    files["dead_letter.redrive-request.v1.json"] = _schema(
        RedriveRequest, schema_uri("dead_letter.redrive-request", 1)
    )
    return files


def _version() -> str:
    try:
        return metadata.version("nrm-hub")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def _summary(model: type[BaseModel], default: str) -> str:
    """The docstring's first paragraph, on one line: the same words integrators read in the
    schema's `description`, without repeating the whole text in every channel."""
    doc = model.__doc__
    if not doc:
        return default
    return " ".join(doc.strip().split("\n\n")[0].split())


def _type(reply: type[BaseModel]) -> str:
    name: str = getattr(reply, "TYPE")  # noqa: B009  (a ClassVar of every reply model)
    return name


def asyncapi() -> dict[str, Any]:
    """The hub as an AsyncAPI 3.0 document: command channels the hub receives on (with a
    reply), event channels it sends on. Payload schemas are shared in components.schemas."""
    replies: tuple[type[BaseModel], ...] = (
        CommandAccepted,
        CommandRejected,
        AccessReleased,
        AccessDenied,
        TransferRefused,
        AttestationCredential,
        AttestationStatus,
    )
    models: list[type[BaseModel]] = [*ALL_COMMANDS, *ALL_EVENTS, *replies]
    refs, defs = models_json_schema(
        [(m, "validation") for m in models], ref_template="#/components/schemas/{model}"
    )
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}

    def message(key: str, model: type[BaseModel], content_type: str, text: str) -> dict[str, str]:
        messages[key] = {
            "name": model.__name__,
            "title": key,
            "contentType": content_type,
            "summary": _summary(model, key),
            "description": text,
            "payload": refs[(model, "validation")],
        }
        return {"$ref": f"#/components/messages/{key}"}

    channels["reply"] = {
        "address": None,
        "description": "The request's reply inbox (chosen by the requester). The reply is a "
        "CloudEvent (type command.accepted or command.rejected; access.released or "
        "access.denied for access.request; attestation.credential for attestation.issue, "
        "attestation.status for attestation.check) whose data is one of these.",
        "messages": {
            _type(reply): message(
                _type(reply),
                reply,
                CONTENT_TYPE,
                "A CloudEvent (structured JSON); this model is its `data`.",
            )
            for reply in replies
        },
    }

    def reply_messages(command: type[BaseModel]) -> list[dict[str, str]]:
        answers: list[type[BaseModel]] = (
            [AccessReleased, AccessDenied] if command is RequestAccess else [CommandAccepted]
        )
        if command is RequestCrossBorderReferral:
            answers.append(TransferRefused)
        if command is IssueAttestation:  # the credential instead of a plain acceptance
            answers = [AttestationCredential]
        if command is CheckAttestation:
            answers = [AttestationStatus]
        answers.append(CommandRejected)
        return [{"$ref": f"#/channels/reply/messages/{_type(r)}"} for r in answers]

    for command in ALL_COMMANDS:
        key = f"command.{command.NAME}"
        channels[key] = {
            "address": command_subject(command),
            "description": _summary(command, f"The {command.NAME} command."),
            "messages": {
                command.NAME: message(
                    key,
                    command,
                    "application/json",
                    "The request body is this JSON object itself (not a CloudEvent). "
                    "The hub answers on the request's reply inbox.",
                )
            },
        }
        operations[key] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{key}"},
            "messages": [{"$ref": f"#/channels/{key}/messages/{command.NAME}"}],
            "reply": {
                "channel": {"$ref": "#/channels/reply"},
                "messages": reply_messages(command),
            },
        }
    for event in ALL_EVENTS:
        key = f"event.{event.NAME}"
        channels[key] = {
            "address": f"{EVENT_PREFIX}.{event.AGGREGATE}.{{aggregateId}}.{event.NAME}",
            "description": _summary(event, f"The {event.NAME} event."),
            "parameters": {"aggregateId": {"description": f"Opaque id of the {event.AGGREGATE}"}},
            "messages": {
                event.NAME: message(
                    key,
                    event,
                    CONTENT_TYPE,
                    "A CloudEvent (structured JSON) of type "
                    f"{event.NAME}; this model is the CloudEvent's `data`. Stored in the "
                    "NRM_EVENTS stream.",
                )
            },
        }
        operations[key] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{key}"},
            "messages": [{"$ref": f"#/channels/{key}/messages/{event.NAME}"}],
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "NRM Hub",
            "version": _version(),
            "description": "Event backbone of the National Referral Mechanism for victims of "
            "trafficking. Commands are NATS requests; events are CloudEvents in JetStream.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "nats": {
                "host": "localhost:4222",
                "protocol": "nats",
                "description": "A country hub's NATS (the address is deployment specific)",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def expected_files() -> dict[str, str]:
    files = {name: render(schema) for name, schema in json_schemas().items()}
    files[ASYNCAPI_FILE] = render(asyncapi())
    files[OPENAPI_FILE] = render(openapi())  # the HTTPS gateway's (contracts/openapi.py)
    return files


def check_all(directory: Path = SCHEMA_DIR) -> list[str]:
    """Names of files that are missing, stale or no longer generated."""
    expected = expected_files()
    present = {p.name for p in directory.glob("*.json")}
    drift = sorted(name for name in present - set(expected))
    for name, text in expected.items():
        path = directory / name
        if not path.exists() or path.read_text("utf-8") != text:
            drift.append(name)
    return drift


def write_all(directory: Path = SCHEMA_DIR) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    expected = expected_files()
    for stale in directory.glob("*.json"):
        if stale.name not in expected:
            stale.unlink()
    for name, text in expected.items():
        (directory / name).write_text(text, "utf-8")
    return sorted(expected)


def main(action: str) -> int:
    if action == "generate":
        for name in write_all():
            print(f"wrote contracts/schema/{name}")
        return 0
    drift = check_all()
    for name in drift:
        print(f"out of date: contracts/schema/{name}")
    return 1 if drift else 0
