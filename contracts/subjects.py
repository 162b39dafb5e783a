"""Every NATS subject the hub uses, in one place.

Subjects carry only opaque ids and type names, never personal data.

    nrm.cmd.<command>                                 command requests (request/reply)
    nrm.evt.<aggregate>.<aggregate id>.<event type>   events (stream NRM_EVENTS)
    nrm.audit.<stream>.<sequence>                     audit leaves (stream NRM_AUDIT)
    nrm.rejected.<command>                            rejected commands (stream NRM_REJECTIONS)
    nrm.checkpoint                                    signed audit checkpoints (NRM_CHECKPOINTS)
    nrm.ctl.audit.checkpoint                          request: sign a checkpoint now
    nrm.dlq.<consumer>                                dead letters (stream NRM_DLQ)
    nrm.dlq.<consumer>.resolved                       a dead letter re-driven successfully
    nrm.ctl.dlq.redrive.<consumer>                    request: re-drive one dead letter
"""

from __future__ import annotations

from contracts.commands import (
    AcceptReferral,
    Command,
    CompleteReferral,
    DeclineReferral,
    DischargeFromShelter,
    RegisterShelter,
    RevokeReferral,
    SubmitScreening,
)
from contracts.events import Event

COMMAND_PREFIX = "nrm.cmd"
EVENT_PREFIX = "nrm.evt"
AUDIT_PREFIX = "nrm.audit"
DLQ_PREFIX = "nrm.dlq"

EVENTS_STREAM = "NRM_EVENTS"
AUDIT_STREAM = "NRM_AUDIT"
DLQ_STREAM = "NRM_DLQ"

# Which service answers which command.
COMMAND_OWNERS: dict[type[Command], str] = {
    SubmitScreening: "identifier",
    AcceptReferral: "referral",
    DeclineReferral: "referral",
    CompleteReferral: "referral",
    RevokeReferral: "referral",
    RegisterShelter: "shelter",
    DischargeFromShelter: "shelter",
}


def command_subject(command: type[Command]) -> str:
    """e.g. nrm.cmd.screening.submit"""
    return f"{COMMAND_PREFIX}.{command.NAME}"


def event_subject(event: Event) -> str:
    return f"{EVENT_PREFIX}.{event.AGGREGATE}.{event.aggregate_id()}.{event.NAME}"


def aggregate_filter(aggregate: str, aggregate_id: str) -> str:
    """All events of one aggregate: the subject filter for loading it and for the
    optimistic-concurrency check (Nats-Expected-Last-Subject-Sequence-Subject)."""
    return f"{EVENT_PREFIX}.{aggregate}.{aggregate_id}.>"


def event_type_filter(event_type: type[Event]) -> str:
    """Every event of one type, whatever its aggregate: what a consumer subscribes to."""
    return f"{EVENT_PREFIX}.{event_type.AGGREGATE}.*.{event_type.NAME}"


def event_type_from_subject(subject: str) -> str:
    """nrm.evt.case.<id>.victim.identified -> victim.identified"""
    parts = subject.split(".")
    if len(parts) < 5 or ".".join(parts[:2]) != EVENT_PREFIX:
        raise ValueError(f"not an event subject: {subject!r}")
    return ".".join(parts[4:])


def audit_subject(stream: str, sequence: int) -> str:
    """The one leaf for one stored message: nrm.audit.NRM_EVENTS.42"""
    return f"{AUDIT_PREFIX}.{stream}.{sequence}"


REJECTIONS_PREFIX = "nrm.rejected"
REJECTIONS_STREAM = "NRM_REJECTIONS"
CHECKPOINT_SUBJECT = "nrm.checkpoint"
CHECKPOINTS_STREAM = "NRM_CHECKPOINTS"
CHECKPOINT_REQUEST = "nrm.ctl.audit.checkpoint"


def rejection_subject(command_name: str) -> str:
    return f"{REJECTIONS_PREFIX}.{command_name}"


def dlq_subject(consumer: str) -> str:
    return f"{DLQ_PREFIX}.{consumer}"


def dlq_resolved_subject(consumer: str) -> str:
    return f"{DLQ_PREFIX}.{consumer}.resolved"


def redrive_subject(consumer: str) -> str:
    return f"nrm.ctl.dlq.redrive.{consumer}"
