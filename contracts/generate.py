"""JSON Schema for every contract model, two AsyncAPI 3.0 documents (asyncapi.json: what
agencies use; asyncapi-internal.json: the hub's own channels), an OpenAPI 3.1 document for its
HTTPS gateway (contracts/openapi.py) and the sealing test vectors, generated from the models.
The files in `contracts/schema/` and `contracts/test_vectors/` are committed so integrators can
read them without Python; a test fails when they drift from the code (`make contracts`
regenerates)."""

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
    Command,
    IssueAttestation,
    RequestAccess,
    RequestCrossBorderReferral,
    ScreeningInterview,
    SubmitScreening,
)
from contracts.envelope import CONTENT_TYPE, Envelope, schema_uri
from contracts.events import ALL_EVENTS, Event
from contracts.openapi import OPENAPI_FILE, IntakeKey, openapi
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
from contracts.sealing_vectors import VECTORS_FILE, intake_vector, sealed_screening
from contracts.sealing_vectors import render as render_vectors
from contracts.subjects import (
    CASE_EVENTS_FOR_FEED,
    COMMAND_PREFIX,
    EVENT_PREFIX,
    EVENTS_STREAM,
    FEED_PREFIX,
    FEEDS_STREAM,
    INTAKE_KEY_SUBJECT,
    command_subject,
)

SCHEMA_DIR = Path(__file__).parent / "schema"
ASYNCAPI_FILE = "asyncapi.json"  # what agencies use
ASYNCAPI_INTERNAL_FILE = "asyncapi-internal.json"  # the hub's own channels
EXAMPLES_DIR = Path(__file__).parent / "examples"
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


REPLIES: tuple[type[BaseModel], ...] = (
    CommandAccepted,
    CommandRejected,
    AccessReleased,
    AccessDenied,
    TransferRefused,
    AttestationCredential,
    AttestationStatus,
)


def reply_models(command: type[Command]) -> list[type[BaseModel]]:
    """What the hub may answer to `command`: its success reply(ies), then a rejection."""
    answers: list[type[BaseModel]] = (
        [AccessReleased, AccessDenied] if command is RequestAccess else [CommandAccepted]
    )
    if command is RequestCrossBorderReferral:
        answers.append(TransferRefused)
    if command is IssueAttestation:  # the credential instead of a plain acceptance
        answers = [AttestationCredential]
    if command is CheckAttestation:
        answers = [AttestationStatus]
    return [*answers, CommandRejected]


def feed_events() -> tuple[type[Event], ...]:
    """The event types an agency's feed may carry: every referral and need event, and the
    case events that ask an agency to act (what the referral service copies to feeds)."""
    return tuple(
        e for e in ALL_EVENTS if e.AGGREGATE in ("referral", "need") or e in CASE_EVENTS_FOR_FEED
    )


def _examples() -> dict[str, dict[str, Any]]:
    """Command name -> its example body from contracts/examples/ (the screening sealed as it
    travels: the first sealing test vector)."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(EXAMPLES_DIR.glob("*.json")):
        example = json.loads(path.read_text("utf-8"))
        name = example["subject"].removeprefix(COMMAND_PREFIX + ".")
        found[name] = example["payload"]
    found[SubmitScreening.NAME] = sealed_screening()
    return found


class _Components:
    """The messages and schemas of one AsyncAPI document, shared by its channels."""

    def __init__(self, models: list[type[BaseModel]]) -> None:
        self.refs, defs = models_json_schema(
            [(m, "validation") for m in models], ref_template="#/components/schemas/{model}"
        )
        self.schemas: dict[str, Any] = dict(defs.get("$defs", {}))
        self.messages: dict[str, Any] = {}

    def schema(self, model: type[BaseModel]) -> dict[str, Any]:
        ref: dict[str, Any] = self.refs[(model, "validation")]
        return ref

    def cloudevent(self, model: type[BaseModel], type_name: str) -> dict[str, Any]:
        """A CloudEvent (structured JSON) of `type_name` whose `data` is `model`."""
        return {
            "allOf": [
                self.schema(Envelope),
                {
                    "type": "object",
                    "properties": {"type": {"const": type_name}, "data": self.schema(model)},
                },
            ]
        }

    def message(
        self,
        key: str,
        model: type[BaseModel],
        *,
        payload: dict[str, Any],
        content_type: str,
        text: str,
        examples: list[dict[str, Any]] | None = None,
        name: str | None = None,
        summary: str | None = None,
    ) -> dict[str, str]:
        self.messages[key] = {
            "name": name or model.__name__,
            "title": key,
            "contentType": content_type,
            "summary": summary or _summary(model, key),
            "description": text,
            "payload": payload,
            **({"examples": examples} if examples else {}),
        }
        return {"$ref": f"#/components/messages/{key}"}


def _info(title: str, text: str) -> dict[str, Any]:
    return {"title": title, "version": _version(), "description": text}


AGENCY_ID = {
    "description": "The sending agency's id in the registry (e.g. kg-ngo-osh-crisis-centre). "
    "On a secured hub only that agency's NATS user may publish here, so the server vouches "
    "for the sender; the body's `agency_id` must be the same.",
    "examples": ["kg-ngo-osh-crisis-centre"],
}
REPLY_INBOX = (
    "The request's reply inbox, chosen by the requester's NATS client. On a secured hub an "
    "agency must connect with the inbox prefix `_INBOX.<agency id>` (nats.js `inboxPrefix`, "
    "nats-py `inbox_prefix`): replies are delivered only below it."
)


def asyncapi() -> dict[str, Any]:
    """What an agency system uses, as an AsyncAPI 3.0 document of the hub: every command on
    the agency's own subject with its replies, the intake key, and the agency's feed. Internal
    channels (the event stream, the open command subjects) are in `asyncapi_internal()`."""
    events = feed_events()
    parts = _Components([*ALL_COMMANDS, *events, *REPLIES, Envelope, IntakeKey])
    examples = _examples()
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    channels["reply"] = {
        "address": None,
        "description": REPLY_INBOX + " The reply to a command is a CloudEvent whose `type` "
        "names the reply and whose `data` is the reply's body.",
        "messages": {
            _type(reply): parts.message(
                _type(reply),
                reply,
                payload=parts.cloudevent(reply, _type(reply)),
                content_type=CONTENT_TYPE,
                text=f"A CloudEvent (structured JSON) of type `{_type(reply)}`.",
            )
            for reply in REPLIES
        },
    }
    for command in ALL_COMMANDS:
        key = f"command.{command.NAME}"
        example = examples.get(command.NAME)
        channels[key] = {
            "address": f"{COMMAND_PREFIX}.{command.NAME}.{{agencyId}}",
            "description": _summary(command, f"The {command.NAME} command."),
            "parameters": {"agencyId": AGENCY_ID},
            "messages": {
                command.NAME: parts.message(
                    key,
                    command,
                    payload=parts.schema(command),
                    content_type="application/json",
                    text="The request body is this JSON object itself (not a CloudEvent). "
                    "The hub answers on the request's reply inbox.",
                    examples=[_example(command, example)] if example else None,
                )
            },
        }
        operations[key] = {
            "action": "receive",
            "title": f"Send {command.NAME}",
            "summary": f"An agency sends {command.NAME}; the hub answers once",
            "channel": {"$ref": f"#/channels/{key}"},
            "messages": [{"$ref": f"#/channels/{key}/messages/{command.NAME}"}],
            "reply": {
                "channel": {"$ref": "#/channels/reply"},
                "messages": [
                    {"$ref": f"#/channels/reply/messages/{_type(r)}"} for r in reply_models(command)
                ],
            },
        }
    channels["intake.key"] = {
        "address": INTAKE_KEY_SUBJECT,
        "description": "Ask for the hub's intake public key (agencies that identify): a "
        "screening's personal data is sealed to it (docs/SEALING.md). The request body is "
        "empty; ask again when a screening is rejected for a key that does not open it.",
        "messages": {
            "request": parts.message(
                "intake.key.request",
                IntakeKey,
                payload={"type": "string", "maxLength": 0, "description": "An empty body"},
                content_type="application/octet-stream",
                text="An empty request.",
                name="IntakeKeyRequest",
                summary="Asks for the hub's intake public key",
            ),
            "key": parts.message(
                "intake.key",
                IntakeKey,
                payload=parts.schema(IntakeKey),
                content_type="application/json",
                text="The answer: plain JSON (not a CloudEvent).",
                examples=[
                    {
                        "name": "the test-vector key (docs/SEALING.md)",
                        "payload": {
                            "kid": intake_vector()["kid"],
                            "public_key": intake_vector()["recipient_public_key_b64"],
                        },
                    }
                ],
            ),
        },
    }
    channels["intake.key.reply"] = {
        "address": None,
        "description": REPLY_INBOX,
        "messages": {"key": {"$ref": "#/components/messages/intake.key"}},
    }
    operations["intake.key"] = {
        "action": "receive",
        "title": "Ask for the intake key",
        "channel": {"$ref": "#/channels/intake.key"},
        "messages": [{"$ref": "#/channels/intake.key/messages/request"}],
        "reply": {
            "channel": {"$ref": "#/channels/intake.key.reply"},
            "messages": [{"$ref": "#/channels/intake.key.reply/messages/key"}],
        },
    }
    channels["feed"] = {
        "address": f"{FEED_PREFIX}.{{agencyId}}.{{aggregateId}}.{{eventType}}",
        "description": "The agency's own feed: each referral and need event addressed to "
        "it, and the case events that ask it to act, copied to this subject in the JetStream "
        f"stream `{FEEDS_STREAM}`. Read it with one durable pull consumer named after the "
        f"agency, filtered on `{FEED_PREFIX}.<agency id>.>`, explicit acknowledgement (the only "
        "consumer an agency may create); deduplicate by the CloudEvent `id`.",
        "parameters": {
            "agencyId": {
                "description": "The reading agency's id",
                "examples": AGENCY_ID["examples"],
            },
            "aggregateId": {"description": "Opaque id of the referral, need or case"},
            "eventType": {
                "description": "The event type (two subject tokens, e.g. referral.requested)",
                "enum": [e.NAME for e in events],
            },
        },
        "messages": {
            e.NAME: parts.message(
                f"feed.{e.NAME}",
                e,
                payload=parts.cloudevent(e, e.NAME),
                content_type=CONTENT_TYPE,
                text=f"A CloudEvent (structured JSON) of type `{e.NAME}`.",
            )
            for e in events
        },
        "x-nrm-jetstream": {
            "stream": FEEDS_STREAM,
            "durableName": "{agencyId}",
            "filterSubject": f"{FEED_PREFIX}.{{agencyId}}.>",
            "ackPolicy": "explicit",
            "deliver": "pull",
        },
    }
    operations["feed"] = {
        "action": "send",
        "title": "The agency feed",
        "summary": "The hub stores each event addressed to an agency in its feed",
        "channel": {"$ref": "#/channels/feed"},
        "messages": [{"$ref": f"#/channels/feed/messages/{e.NAME}"} for e in events],
    }
    return {
        "asyncapi": "3.0.0",
        "info": _info(
            "NRM Hub: the agency interface",
            "What an agency system uses on a country hub of the National Referral Mechanism "
            "for victims of trafficking: commands as NATS requests on the agency's own "
            "subject (one reply each), the hub's intake key, and the agency's feed in "
            "JetStream. `receive` operations are requests the hub receives from agencies, "
            "`send` what the hub delivers to them. Personal data is sealed to the intake key "
            "before it is sent (docs/SEALING.md, contracts/test_vectors/sealing.json). The "
            "hub's internal channels (the event stream `nrm.evt.>`, for its own services "
            "only) are described apart, in asyncapi-internal.json. Agencies without NATS use "
            "the HTTPS gateway (openapi.json).",
        ),
        "defaultContentType": "application/json",
        "servers": {
            "production": {
                "host": "nats.hub.example:4222",
                "protocol": "nats",
                "description": "A country hub as deployed (deploy/README.md): TLS, and the "
                "client certificate names the agency. The address is deployment specific.",
                "security": [{"$ref": "#/components/securitySchemes/clientCertificate"}],
            },
            "development": {
                "host": "127.0.0.1:4222",
                "protocol": "nats",
                "description": "`nrm up` on one machine: each agency signs in with its nkey "
                "seed, DATA_DIR/credentials/<agency id>.nk.",
                "security": [{"$ref": "#/components/securitySchemes/nkey"}],
            },
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": parts.messages,
            "schemas": parts.schemas,
            "securitySchemes": {
                "clientCertificate": {
                    "type": "X509",
                    "description": "Mutual TLS. The hub's CA issues each agency a client "
                    "certificate whose e-mail name is `<agency id>@<country>.nrm-hub`; the "
                    "server maps it to that agency's NATS user and its permissions (its own "
                    "command subjects, the intake key if it may identify, its own feed, "
                    "replies below `_INBOX.<agency id>`).",
                },
                "nkey": {
                    "type": "asymmetricEncryption",
                    "description": "A NATS nkey (Ed25519): the client signs the server's "
                    "nonce with the agency's seed; the same user and permissions as the "
                    "client certificate.",
                },
            },
        },
    }


def _example(command: type[Command], body: dict[str, Any]) -> dict[str, Any]:
    summary = f"contracts/examples/: {command.NAME} from {body['agency_id']}"
    if command is SubmitScreening:
        summary += (
            "; personal_data sealed to the test-vector intake key (docs/SEALING.md), so a "
            "real hub rejects it: seal to its own key"
        )
    return {"name": command.NAME, "summary": summary, "payload": body}


def asyncapi_internal() -> dict[str, Any]:
    """The hub's own channels, for its services and operators, not agencies: the event stream
    and the open command subjects of an `--insecure` hub (sender taken from the body)."""
    parts = _Components([*ALL_COMMANDS, *ALL_EVENTS, *REPLIES, Envelope])
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    channels["reply"] = {
        "address": None,
        "description": "The request's reply inbox (chosen by the requester).",
        "messages": {
            _type(reply): parts.message(
                _type(reply),
                reply,
                payload=parts.cloudevent(reply, _type(reply)),
                content_type=CONTENT_TYPE,
                text=f"A CloudEvent (structured JSON) of type `{_type(reply)}`.",
            )
            for reply in REPLIES
        },
    }
    for command in ALL_COMMANDS:
        key = f"command.{command.NAME}"
        channels[key] = {
            "address": command_subject(command),
            "description": _summary(command, f"The {command.NAME} command.")
            + " (Open subject: an --insecure hub only; agencies use asyncapi.json's.)",
            "messages": {
                command.NAME: parts.message(
                    key,
                    command,
                    payload=parts.schema(command),
                    content_type="application/json",
                    text="The request body is this JSON object itself (not a CloudEvent).",
                )
            },
        }
        operations[key] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{key}"},
            "messages": [{"$ref": f"#/channels/{key}/messages/{command.NAME}"}],
            "reply": {
                "channel": {"$ref": "#/channels/reply"},
                "messages": [
                    {"$ref": f"#/channels/reply/messages/{_type(r)}"} for r in reply_models(command)
                ],
            },
        }
    for event in ALL_EVENTS:
        key = f"event.{event.NAME}"
        channels[key] = {
            "address": f"{EVENT_PREFIX}.{event.AGGREGATE}.{{aggregateId}}.{event.NAME}",
            "description": _summary(event, f"The {event.NAME} event."),
            "parameters": {"aggregateId": {"description": f"Opaque id of the {event.AGGREGATE}"}},
            "messages": {
                event.NAME: parts.message(
                    key,
                    event,
                    payload=parts.cloudevent(event, event.NAME),
                    content_type=CONTENT_TYPE,
                    text=f"A CloudEvent (structured JSON) of type `{event.NAME}`, stored in "
                    f"the {EVENTS_STREAM} stream.",
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
        "info": _info(
            "NRM Hub: internal channels",
            "The hub's own event stream and the open command subjects, for its services "
            "and operators. Agencies do not use these (they may not, on a secured hub): "
            "their interface is asyncapi.json.",
        ),
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
        "components": {"messages": parts.messages, "schemas": parts.schemas},
    }


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def expected_files() -> dict[str, str]:
    files = {name: render(schema) for name, schema in json_schemas().items()}
    files[ASYNCAPI_FILE] = render(asyncapi())
    files[ASYNCAPI_INTERNAL_FILE] = render(asyncapi_internal())
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


def vectors_drift() -> bool:
    """Whether contracts/test_vectors/sealing.json differs from what the code computes."""
    return not VECTORS_FILE.exists() or VECTORS_FILE.read_text("utf-8") != render_vectors()


def main(action: str) -> int:
    if action == "generate":
        for name in write_all():
            print(f"wrote contracts/schema/{name}")
        VECTORS_FILE.parent.mkdir(parents=True, exist_ok=True)
        VECTORS_FILE.write_text(render_vectors(), "utf-8")
        print("wrote contracts/test_vectors/sealing.json")
        return 0
    drift = check_all()
    for name in drift:
        print(f"out of date: contracts/schema/{name}")
    if vectors_drift():
        print("out of date: contracts/test_vectors/sealing.json")
        return 1
    return 1 if drift else 0
