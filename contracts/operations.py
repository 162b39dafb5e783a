"""Messages the hub emits about itself rather than about cases: audit entries and dead
letters. Like events they travel in the CloudEvents envelope; these models are its `data`."""

from __future__ import annotations

import datetime as dt
from typing import ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from contracts.replies import ErrorCode
from contracts.vocabulary import AgencyId


class AuditActor(BaseModel):
    """Who did the audited action: the agency (when the event or notice names one), its kind
    in the agency registry, and the hub service that recorded it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    agency: str | None = Field(default=None, description="Agency id; None for the hub itself")
    role: str | None = Field(default=None, description="The agency's kind in the registry")
    service: str | None = Field(default=None, description="CloudEvents source that recorded it")


class AuditSource(BaseModel):
    """Where the audited message is stored, and the SHA-256 of its exact stored bytes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stream: str
    sequence: int = Field(ge=1)
    id: str | None = Field(default=None, description="Event id or notice id, when readable")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class AuditEntry(BaseModel):
    """One audit leaf's `data` (stream NRM_AUDIT, subject nrm.audit.<stream>.<sequence>):
    what was done, by whom, on which pseudonymous ids, for what purpose, and the hash of the
    exact stored message. Never personal data, sealed or not. The leaf itself is the whole
    CloudEvent in canonical JSON (docs/AUDIT-BUNDLE.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    TYPE: ClassVar[str] = "audit.recorded"

    index: int = Field(ge=0, description="Leaf index in the Merkle tree = stream sequence - 1")
    time: dt.datetime | None = Field(default=None, description="When the audited action happened")
    action: str = Field(description="Event type, `command.rejected`, or `unreadable`")
    actor: AuditActor
    ids: dict[str, str] = Field(description="Pseudonymous ids: case_id, referral_id, ...")
    purpose: str | None = Field(default=None, description="Purpose of a personal-data access")
    detail: dict[str, str | list[str]] = Field(
        default_factory=dict, description="Codes only: fields asked for, basis, reason, errors"
    )
    source: AuditSource
    prev: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="Leaf hash of the previous leaf (absent on leaf 0): localises tampering",
    )


class RejectedField(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    field: str = Field(description="The command's top-level field, '' for the whole body")
    code: ErrorCode


class CommandRejectionNoted(BaseModel):
    """A command the hub rejected (stream NRM_REJECTIONS, subject nrm.rejected.<command>),
    for the audit log. Names fields and codes only, never the submitted values."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    TYPE: ClassVar[str] = "audit.command_rejected"

    command: str
    command_id: UUID | None
    agency_id: AgencyId | None = Field(
        description="The sending agency the body claims, if the registry lists it"
    )
    errors: tuple[RejectedField, ...] = Field(min_length=1)


class DeadLetterRecorded(BaseModel):
    """An event a consumer could not apply after its last allowed delivery (nrm.dlq.<consumer>)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    TYPE: ClassVar[str] = "dead_letter.recorded"

    consumer: str
    stream: str
    stream_sequence: int = Field(ge=1)
    subject: str
    attempts: int = Field(ge=1)
    reason: str = Field(description="Exception type and message; never the event's values")


class RedriveRequest(BaseModel):
    """Body of a request on nrm.ctl.dlq.redrive.<consumer> (what `nrm dlq retry` sends)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dead_letter_id: int = Field(ge=1, description="The dead letter's NRM_DLQ sequence")


class DeadLetterResolved(BaseModel):
    """A dead letter re-driven successfully (nrm.dlq.<consumer>.resolved, and the reply)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    TYPE: ClassVar[str] = "dead_letter.resolved"

    dead_letter_id: int = Field(ge=1)
    consumer: str
    stream_sequence: int = Field(ge=1)
