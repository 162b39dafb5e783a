"""audit service: appends one audit entry per event to NRM_AUDIT (deny delete, deny purge)."""

from __future__ import annotations

import uuid

from contracts.envelope import Envelope, source_uri
from contracts.operations import AuditEntry
from contracts.subjects import AUDIT_STREAM, EVENTS_STREAM, audit_subject
from services.audit.domain import audit_entry
from services.runtime.messaging import Delivery, ServiceHost
from services.runtime.topology import consumer

SERVICE = "audit"
AUDIT_ID_NAMESPACE = uuid.UUID("b7d0c4f6-5a0e-4d55-9a43-3f2f0e8a9c11")


def register(host: ServiceHost) -> None:
    runtime = host.runtime
    source = source_uri(runtime.settings.country, SERVICE)

    async def record(delivery: Delivery) -> None:
        envelope = delivery.envelope
        entry = audit_entry(EVENTS_STREAM, delivery.stream_sequence, delivery.data, envelope)
        # The entry id is derived from the event id: a redelivered event is a duplicate
        # publish (Nats-Msg-Id), not a second entry.
        entry_id = str(uuid.uuid5(AUDIT_ID_NAMESPACE, envelope.id))
        wrapped = Envelope(
            id=entry_id,
            source=source,
            type=AuditEntry.TYPE,
            time=runtime.clock(),
            subject=envelope.subject,
            correlationid=envelope.correlationid,
            causationid=envelope.id,
            data=entry.model_dump(mode="json"),
        )
        await runtime.jetstream.publish(
            audit_subject(envelope.type),
            wrapped.to_bytes(),
            headers={"Nats-Msg-Id": entry_id},
            stream=AUDIT_STREAM,
        )

    host.consume(consumer("audit-all"), record)
