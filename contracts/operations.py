"""Messages the hub emits about itself rather than about cases: audit entries and dead
letters. Like events they travel in the CloudEvents envelope; these models are its `data`."""

from __future__ import annotations

import datetime as dt
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field


class AuditEntry(BaseModel):
    """One audited event (stream NRM_AUDIT, subject nrm.audit.<event type>): ids, type and the
    SHA-256 of the exact stored event bytes, never its content."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    TYPE: ClassVar[str] = "audit.recorded"

    source_stream: str
    source_sequence: int = Field(ge=1)
    event_id: str
    event_type: str
    event_time: dt.datetime
    actor: str = Field(description="The CloudEvents source of the service that recorded it")
    aggregate_id: str | None
    correlation_id: str | None
    causation_id: str | None
    event_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


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
