"""Audit leaves, pure: what one stored message (an event or a rejection notice) becomes in the
audit log, and the canonical bytes that are hashed into the Merkle tree.

A leaf names the message by ids, type and the SHA-256 of its exact stored bytes, never by its
content, so the audit log holds no personal data, sealed or not. A leaf is a CloudEvent
(type `audit.recorded`) serialised as canonical JSON: keys sorted, no insignificant
whitespace, ASCII only, no null members (docs/AUDIT-BUNDLE.md).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import uuid
from collections.abc import Callable
from typing import Any

import msgspec
from pydantic import ValidationError

from contracts.envelope import Envelope, EnvelopeAttributes, read_stored_event
from contracts.events import Event, ReferralEscalated
from contracts.operations import (
    AuditActor,
    AuditEntry,
    AuditSource,
    CommandRejectionNoted,
)
from services.agencies.registry import AgencyRegistry
from services.audit.leaf_chunks import ascii_without_del

LEAF_ID_NAMESPACE = uuid.UUID("b7d0c4f6-5a0e-4d55-9a43-3f2f0e8a9c11")
UNREADABLE = "unreadable"
_SORTED_JSON = msgspec.json.Encoder(order="sorted")
COMMAND_REJECTED = "command.rejected"
# Decodes a stored event: `read_stored_event`, or the audit writer's remembered decodings.
EventReader = Callable[[bytes], tuple[EnvelopeAttributes, Event]]

# Event fields naming the agency that acted, most specific first (referral.requested names
# both the referrer, who acted, and the provider, who did not yet).
_ACTOR_FIELDS = (
    "agency_id",
    "recorded_by",
    "issued_by",  # attestation.issued
    "checked_by",  # attestation.checked
    "revoked_by",
    "erased_by",
    "withdrawn_by",
    "registered_by",
    "referrer_id",
    "provider_id",
    "shelter_id",
)
# Event fields copied into `detail`: codes and field names, never values.
_DETAIL_FIELDS = ("fields", "basis", "reason", "legal_basis", "purposes", "withheld_fields")


class LeafError(ValueError):
    """A leaf that is not what the format says (an integrity failure)."""


def canonical_json(value: Any) -> bytes:
    """Sorted keys, `,` and `:` separators, ASCII with \\u escapes, nulls dropped from objects."""
    return json.dumps(
        _drop_nulls(value), sort_keys=True, separators=(",", ":"), ensure_ascii=True
    ).encode("ascii")


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    if isinstance(value, float):
        raise ValueError("canonical JSON has no floating-point numbers")
    return value


@functools.lru_cache(maxsize=1024)  # asked twice per leaf: its bytes and its message id
def leaf_id(stream: str, sequence: int) -> str:
    """One stored message, one leaf id: a redelivery yields the same id."""
    return str(uuid.uuid5(LEAF_ID_NAMESPACE, f"{stream}:{sequence}"))


def _actor_of(
    event: Event, data: dict[str, Any], registry: AgencyRegistry, service: str | None
) -> AuditActor:
    if isinstance(event, ReferralEscalated):  # the hub escalates, no agency acts
        return AuditActor(service=service)
    agency = next((data[f] for f in _ACTOR_FIELDS if isinstance(data.get(f), str)), None)
    role = data.get("agency_kind") if isinstance(data.get("agency_kind"), str) else None
    if agency is not None and role is None:
        known = registry.get(agency)
        role = known.kind.value if known is not None else None
    return AuditActor(agency=agency, role=role, service=service)


def _ids_of(data: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in data.items() if k.endswith("_id") and isinstance(v, str)}


def _detail_of(data: dict[str, Any]) -> dict[str, str | list[str]]:
    detail: dict[str, str | list[str]] = {}
    for name in _DETAIL_FIELDS:
        value = data.get(name)
        if isinstance(value, str):
            detail[name] = value
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            detail[name] = list(value)
    return detail


def entry_for_event(
    index: int,
    stream: str,
    sequence: int,
    raw: bytes,
    registry: AgencyRegistry,
    read: EventReader = read_stored_event,
) -> AuditEntry:
    """The entry for one stored event; an unreadable message still gets a leaf (its hash).
    `read` decodes it (the audit writer passes the process's remembered decodings)."""
    source = AuditSource(stream=stream, sequence=sequence, sha256=hashlib.sha256(raw).hexdigest())
    try:
        envelope, event = read(raw)
    except ValueError:  # pydantic's ValidationError is one
        return AuditEntry(
            index=index, time=None, action=UNREADABLE, actor=AuditActor(), ids={}, source=source
        )
    purpose = getattr(event, "purpose", None)
    data = event.model_dump(mode="json")  # once: the actor, the ids and the detail read it
    return AuditEntry(
        index=index,
        time=envelope.time,
        action=envelope.type,
        actor=_actor_of(event, data, registry, envelope.source),
        ids=_ids_of(data),
        purpose=str(purpose) if purpose is not None else None,
        detail=_detail_of(data),
        source=source.model_copy(update={"id": envelope.id}),
    )


def entry_for_rejection(
    index: int, stream: str, sequence: int, raw: bytes, registry: AgencyRegistry
) -> AuditEntry:
    source = AuditSource(stream=stream, sequence=sequence, sha256=hashlib.sha256(raw).hexdigest())
    try:
        envelope = Envelope.from_bytes(raw)
        notice = CommandRejectionNoted.model_validate(envelope.data)
    except ValidationError:
        return AuditEntry(
            index=index, time=None, action=UNREADABLE, actor=AuditActor(), ids={}, source=source
        )
    known = registry.get(notice.agency_id) if notice.agency_id else None
    ids = {"command_id": str(notice.command_id)} if notice.command_id else {}
    return AuditEntry(
        index=index,
        time=envelope.time,
        action=COMMAND_REJECTED,
        actor=AuditActor(
            agency=notice.agency_id,
            role=known.kind.value if known is not None else None,
            service=envelope.source,
        ),
        ids=ids,
        detail={
            "command": notice.command,
            "errors": [f"{e.field or '<body>'}:{e.code.value}" for e in notice.errors],
            **({"authenticated": "yes"} if notice.authenticated else {}),
            **({"impersonated": notice.claimed_agency_id} if notice.claimed_agency_id else {}),
            **({"held_back": str(notice.held_back)} if notice.held_back else {}),
        },
        source=source.model_copy(update={"id": envelope.id}),
    )


def leaf_bytes(
    entry: AuditEntry, previous: bytes | None, service_source: str, recorded_at: dt.datetime
) -> bytes:
    """The exact bytes stored and hashed for one leaf; `previous` is the previous leaf's hash.

    The canonical form is `canonical_json` of the envelope. Nulls are left out as the models
    are dumped (no member is a float), and msgspec writes the sorted form: where its bytes are
    ASCII without DEL they are `canonical_json`'s (tests/unit/test_audit_leaf_chunks.py);
    anything else, a non-ASCII detail, is written by `canonical_json` itself. Each event gets
    a leaf, so this runs once per event."""
    if (previous is None) != (entry.index == 0):
        raise ValueError("every leaf but the first names the previous leaf's hash")
    data = entry.model_dump(mode="json", exclude_none=True)
    if previous is not None:
        data["prev"] = previous.hex()
    envelope = Envelope(
        id=leaf_id(entry.source.stream, entry.source.sequence),
        source=service_source,
        type=AuditEntry.TYPE,
        time=recorded_at,
        subject=str(entry.index),
        data=data,
    )
    value = envelope.model_dump(mode="json", exclude_none=True)
    raw = _SORTED_JSON.encode(value)
    return raw if ascii_without_del(raw) else canonical_json(value)


def parse_leaf(raw: bytes) -> AuditEntry:
    """The entry in a leaf, checking the leaf is a canonical `audit.recorded` CloudEvent."""
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise LeafError("the leaf is not JSON") from None
    try:
        if canonical_json(value) != raw:
            raise LeafError("the leaf is not canonical JSON")
    except ValueError as exc:
        raise LeafError(f"the leaf is not canonical JSON: {exc}") from None
    if not isinstance(value, dict) or value.get("type") != AuditEntry.TYPE:
        raise LeafError("the leaf is not an audit.recorded CloudEvent")
    try:
        envelope = Envelope.model_validate(value)
        entry = AuditEntry.model_validate(envelope.data)
    except ValidationError as exc:
        where = ".".join(str(p) for p in exc.errors()[0]["loc"])
        raise LeafError(f"the leaf does not follow the audit entry contract ({where})") from None
    if envelope.subject != str(entry.index):
        raise LeafError("the leaf's subject is not its index")
    return entry
