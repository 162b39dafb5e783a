"""Audit entries, pure: what one audited event becomes in the audit log.

An entry names the event by ids, type and the SHA-256 of its exact stored bytes, never by its
content, so the audit log holds no personal data even in sealed form. (The Merkle tree and
signed checkpoints over these entries come with the audit-log issue.)
"""

from __future__ import annotations

import hashlib

from contracts.envelope import Envelope
from contracts.operations import AuditEntry


def audit_entry(stream: str, sequence: int, raw: bytes, envelope: Envelope) -> AuditEntry:
    return AuditEntry(
        source_stream=stream,
        source_sequence=sequence,
        event_id=envelope.id,
        event_type=envelope.type,
        event_time=envelope.time,
        actor=envelope.source,
        aggregate_id=envelope.subject,
        correlation_id=envelope.correlationid,
        causation_id=envelope.causationid,
        event_sha256=hashlib.sha256(raw).hexdigest(),
    )
