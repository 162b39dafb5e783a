"""The CloudEvents 1.0 envelope, structured JSON mode (application/cloudevents+json).

Every message the hub emits (events, audit entries, command replies) is one JSON object
of this shape. Attributes carry only opaque ids and type names, never personal data.
Extensions: `correlationid` (the command that started the flow) and `causationid` (the
command or event that directly caused this one).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from contracts.events import Event, decode_event_data

CONTENT_TYPE = "application/cloudevents+json"
SCHEMA_URN = "urn:nrm-hub:schema"
_SCHEMA_RE = re.compile(rf"^{SCHEMA_URN}:(?P<name>[a-z_.]+):(?P<version>[0-9]+)$")


class Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(min_length=1, description="Unique per source; the event id")
    source: str = Field(min_length=1, description="URI reference of the emitting service")
    type: str = Field(min_length=1, description="Event type, e.g. victim.identified")
    time: dt.datetime
    subject: str | None = Field(default=None, description="Opaque aggregate id")
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: str | None = Field(default=None, description=f"{SCHEMA_URN}:<type>:<version>")
    correlationid: str | None = None
    causationid: str | None = None
    data: dict[str, Any]

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Envelope:
        return cls.model_validate_json(raw)


def schema_uri(name: str, version: int) -> str:
    return f"{SCHEMA_URN}:{name}:{version}"


def source_uri(country: str, service: str) -> str:
    return f"urn:nrm-hub:{country}:{service}"


def wrap_event(
    event: Event,
    *,
    event_id: UUID,
    source: str,
    time: dt.datetime,
    correlation_id: str | None,
    causation_id: str | None,
) -> Envelope:
    return Envelope(
        id=str(event_id),
        source=source,
        type=event.NAME,
        time=time,
        subject=event.aggregate_id(),
        dataschema=schema_uri(event.NAME, event.VERSION),
        correlationid=correlation_id,
        causationid=causation_id,
        data=event.model_dump(mode="json"),
    )


def unwrap_event(envelope: Envelope) -> Event:
    """The typed event in an envelope, upcast to the current version."""
    version = 1
    if envelope.dataschema is not None:
        match = _SCHEMA_RE.match(envelope.dataschema)
        if match is None or match["name"] != envelope.type:
            raise ValueError(f"dataschema {envelope.dataschema!r} does not match {envelope.type}")
        version = int(match["version"])
    return decode_event_data(envelope.type, version, envelope.data)
