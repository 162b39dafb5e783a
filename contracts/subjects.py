"""Every NATS subject the hub uses, in one place.

Subjects carry only opaque ids and type names, never personal data.

    nrm.cmd.<command>.<agency id>                     command requests (request/reply) from
                                                      that agency: NATS permissions let each
                                                      agency's user publish only its own
    nrm.cmd.<command>                                 the same on an open (--insecure) hub,
                                                      the sender taken from the body
    nrm.evt.<aggregate>.<aggregate id>.<event type>   events (stream NRM_EVENTS)
    nrm.audit.<stream>.<sequence>                     audit leaves (stream NRM_AUDIT)
    nrm.rejected.<command>                            rejected commands (stream NRM_REJECTIONS)
    nrm.checkpoint                                    signed audit checkpoints (NRM_CHECKPOINTS)
    nrm.ctl.audit.checkpoint                          request: sign a checkpoint now
    nrm.dlq.<consumer>                                dead letters (stream NRM_DLQ)
    nrm.dlq.<consumer>.resolved                       a dead letter re-driven successfully
    nrm.ctl.dlq.redrive.<consumer>                    request: re-drive one dead letter
    nrm.ctl.intake.key                                request: the hub's intake public key
    nrm.ctl.attestation.key                           request: the hub's attestation public key
    nrm.ctl.attestation.status_list                   request: the signed attestation status
                                                      list, fresh (docs/ATTESTATION.md)
    nrm.ctl.ping                                      request: every service instance answers
    nrm.feed.<agency id>.<referral id>.<event type>   referral events addressed to one
                                                      agency (stream NRM_FEEDS)
"""

from __future__ import annotations

from contracts.commands import Command
from contracts.events import (
    CaseReviewAssigned,
    CaseReviewDecided,
    CaseReviewRequested,
    CaseTransferDeclined,
    CaseTransferred,
    CaseTransferRequested,
    Event,
    FollowUpOverdue,
)

COMMAND_PREFIX = "nrm.cmd"
EVENT_PREFIX = "nrm.evt"
AUDIT_PREFIX = "nrm.audit"
DLQ_PREFIX = "nrm.dlq"
FEED_PREFIX = "nrm.feed"
PING_SUBJECT = "nrm.ctl.ping"

EVENTS_STREAM = "NRM_EVENTS"
AUDIT_STREAM = "NRM_AUDIT"
DLQ_STREAM = "NRM_DLQ"
FEEDS_STREAM = "NRM_FEEDS"

INTAKE_KEY_SUBJECT = "nrm.ctl.intake.key"
ATTESTATION_KEY_SUBJECT = "nrm.ctl.attestation.key"
ATTESTATION_STATUS_SUBJECT = "nrm.ctl.attestation.status_list"


def command_subject(command: type[Command]) -> str:
    """e.g. nrm.cmd.screening.submit (no sender in it: open hubs only)"""
    return f"{COMMAND_PREFIX}.{command.NAME}"


def agency_command_subject(command: type[Command], agency_id: str) -> str:
    """e.g. nrm.cmd.screening.submit.kg-mia-osh: the last token names the sender, and on a
    secured hub only that agency's NATS user may publish here, so the server vouches for it."""
    return f"{command_subject(command)}.{agency_id}"


def sender_of(command: type[Command], subject: str) -> str | None:
    """The agency token of a command subject; None for the open (untagged) subject."""
    base = command_subject(command)
    return subject[len(base) + 1 :] if subject.startswith(base + ".") else None


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


def feed_subject(agency_id: str, referral_id: str, event_type: str) -> str:
    """A referral event copied to the agency it is addressed to: agency permissions can then
    say "its own referrals", which the event subject (no provider in it) cannot."""
    return f"{FEED_PREFIX}.{agency_id}.{referral_id}.{event_type}"


def feed_filter(agency_id: str) -> str:
    """Everything in one agency's feed: the only filter its consumer may be created with."""
    return f"{FEED_PREFIX}.{agency_id}.>"


# Case events that ask an agency to act, copied to its feed by the referral service (a
# transfer to answer, an overdue follow-up, a review to assign or decide or learn the
# outcome of). Other case events stay in the stream. (Every referral and need event is
# copied too.) Here, not in the service table, because the agency contract names them.
CASE_EVENTS_FOR_FEED: tuple[type[Event], ...] = (
    CaseTransferRequested,
    CaseTransferred,
    CaseTransferDeclined,
    FollowUpOverdue,
    CaseReviewRequested,
    CaseReviewAssigned,
    CaseReviewDecided,
)
