"""The CloudEvents 1.0 envelope, structured JSON mode (application/cloudevents+json).

Every message the hub emits (events, audit entries, command replies) is one JSON object
of this shape. Attributes carry only opaque ids and type names, never personal data.
Extensions: `correlationid` (the command that started the flow) and `causationid` (the
command or event that directly caused this one).
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal, Protocol, Union
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, create_model

from contracts.events import EVENTS_BY_NAME, Event, decode_event_data

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


class EnvelopeAttributes(Protocol):
    """The envelope's attributes a reader of events may need beside the event: `Envelope`
    has them, and so has what `read_current_event` returns (an envelope whose `data` is
    the typed event, not a dict: readers of stored events take the event beside it)."""

    @property
    def id(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def time(self) -> dt.datetime: ...
    @property
    def subject(self) -> str | None: ...
    @property
    def correlationid(self) -> str | None: ...
    @property
    def causationid(self) -> str | None: ...


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


@functools.cache
def current_event_reader() -> TypeAdapter[Any]:
    """One envelope model per event type, its `data` the event's current model, told apart
    by `type`: validating stored bytes against it parses envelope and event in one pass in
    pydantic-core, without the envelope's intermediate dict (built on first use: ~100
    models)."""
    models = [
        create_model(
            f"Stored{event.__name__}",
            __base__=Envelope,
            type=(Literal[name], ...),  # type: ignore[arg-type]
            data=(event, ...),
        )
        for name, event in EVENTS_BY_NAME.items()
    ]
    union: Any = Annotated[Union[tuple(models)], Field(discriminator="type")]  # noqa: UP007
    return TypeAdapter(union)


@functools.cache
def _one_pass() -> tuple[Callable[[bytes], Any], dict[type[Event], str]]:
    """`current_event_reader`'s validator itself (the adapter's wrapper costs ~1 us an
    event) and each event type's current dataschema (not formatted per event)."""
    schemas = {event: schema_uri(event.NAME, event.VERSION) for event in EVENTS_BY_NAME.values()}
    return current_event_reader().validator.validate_json, schemas


def read_current_event(raw: bytes) -> tuple[EnvelopeAttributes, Event] | None:
    """The envelope's attributes and the typed event in stored envelope bytes, read in one
    pass, if it is an event of its type's current version that the current model accepts;
    else None, and the general path (`unwrap_event(Envelope.from_bytes(raw))`) decides: it
    upcasts an older version, and refuses an unknown type, a dataschema naming another type
    or data the model refuses, as it always did."""
    validate, schemas = _one_pass()
    try:
        stored = validate(raw)
    except ValueError:  # pydantic's ValidationError is one
        return None
    event: Event = stored.data
    schema = stored.dataschema
    if schema == schemas[type(event)] or (schema is None and event.VERSION == 1):
        return stored, event
    return None


def read_stored_event(raw: bytes) -> tuple[EnvelopeAttributes, Event]:
    """The envelope's attributes and the typed event in stored envelope bytes, as
    `Envelope.from_bytes` and `unwrap_event` give them (and raising as they raise): in one
    pass when `read_current_event` can (~11 us an event against ~27 us, measured on a run's
    stored events; docs/PERFORMANCE.md item 31), else by the general path."""
    read = read_current_event(raw)
    if read is not None:
        return read
    envelope = Envelope.from_bytes(raw)
    return envelope, unwrap_event(envelope)


def event_from_bytes(raw: bytes) -> Event:
    """The typed event in stored envelope bytes, for readers that need the event only
    (replays); see `read_stored_event`."""
    return read_stored_event(raw)[1]
