"""Every NATS subject the hub uses, in one place.

Subjects carry only opaque ids and type names, never personal data.

    nrm.cmd.<command>                                 command requests (request/reply)
    nrm.evt.<aggregate>.<aggregate id>.<event type>   events (stream NRM_EVENTS)
    nrm.audit.<event type>                            audit entries (stream NRM_AUDIT)
    nrm.dlq.<consumer>                                dead letters (stream NRM_DLQ)
    nrm.dlq.<consumer>.resolved                       a dead letter re-driven successfully
    nrm.ctl.dlq.redrive.<consumer>                    request: re-drive one dead letter
    nrm.ctl.intake.key                                request: the hub's intake public key
"""

from __future__ import annotations

from contracts.commands import (
    AcceptReferral,
    Command,
    CompleteReferral,
    DeclineReferral,
    DischargeFromShelter,
    EraseCase,
    RecordConsent,
    RegisterAgencyKey,
    RegisterShelter,
    RequestAccess,
    RequestCrossBorderReferral,
    RevokeReferral,
    SubmitScreening,
    WithdrawConsent,
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
    RecordConsent: "identifier",
    WithdrawConsent: "identifier",
    EraseCase: "identifier",
    RegisterAgencyKey: "custody",
    RequestAccess: "custody",
    RequestCrossBorderReferral: "referral",
}

INTAKE_KEY_SUBJECT = "nrm.ctl.intake.key"


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


def audit_subject(event_type: str) -> str:
    return f"{AUDIT_PREFIX}.{event_type}"


def dlq_subject(consumer: str) -> str:
    return f"{DLQ_PREFIX}.{consumer}"


def dlq_resolved_subject(consumer: str) -> str:
    return f"{DLQ_PREFIX}.{consumer}.resolved"


def redrive_subject(consumer: str) -> str:
    return f"nrm.ctl.dlq.redrive.{consumer}"
