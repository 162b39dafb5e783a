"""custody service: registers agency keys, decides every request for personal data (and
records the decision), releases field keys sealed to the agency, shreds erased cases, and
signs and revokes victim-status attestations (attestation_handlers.py)."""

from __future__ import annotations

import json

import services.custody.domain as domain
from contracts.commands import RegisterAgencyKey, RequestAccess
from contracts.events import AccessEvent, AccessGranted, AccessRefused, AgencyKeyRegistered, Event
from contracts.public_key_sealing import (
    key_id,
    public_key_b64,
    public_key_from_b64,
    release_info,
    seal_to,
)
from contracts.replies import AccessDenied, AccessReleased, ErrorCode, reject
from contracts.sealed import b64encode, field_key
from contracts.subjects import aggregate_filter
from contracts.vocabulary import AccessRefusal, AgencyKind, PersonalField
from services.case.plan_reader import read_case_plan
from services.custody.attestation_handlers import register_attestations
from services.identifier.blind_index import BlindIndex
from services.runtime.case_keys import CaseKeys, read_key_ring
from services.runtime.eventstore import EventStore, History
from services.runtime.messaging import Delivery, ServiceHost
from services.runtime.service_table import consumer
from services.runtime.topology import BLIND_INDEX_BUCKET, CASE_KEYS_BUCKET
from services.runtime.writer import Outcome

SERVICE = "custody"


def register(host: ServiceHost) -> None:
    runtime = host.runtime
    ring_file = runtime.settings.key_encryption_key_file
    read_key_ring(ring_file)  # fail at start, naming the file
    keys: list[CaseKeys] = []

    async def case_keys() -> CaseKeys:
        if not keys:
            keys.append(CaseKeys(await runtime.bucket(CASE_KEYS_BUCKET), ring_file))
        return keys[0]

    def store() -> EventStore:
        assert runtime.store is not None, "not connected"
        return runtime.store

    async def register_key(command: RegisterAgencyKey) -> tuple[str, Outcome]:
        registrar = runtime.registry.get(command.agency_id)
        if registrar is None or registrar.kind is not AgencyKind.COORDINATING_BODY:
            raise reject(
                "agency_id",
                ErrorCode.NOT_AUTHORISED,
                "only the coordinating body registers agency keys",
            )
        if runtime.registry.get(command.for_agency) is None:
            raise reject(
                "for_agency",
                ErrorCode.UNKNOWN_AGENCY,
                "the agency is not in the registry",
            )
        try:
            public_key = public_key_from_b64(command.public_key)
        except ValueError as exc:
            raise reject("public_key", ErrorCode.INVALID_FIELD, str(exc)) from None
        event = AgencyKeyRegistered(
            agency_id=command.for_agency,
            key_id=key_id(public_key),
            public_key=public_key_b64(public_key),
            registered_by=command.agency_id,
        )
        outcome = await runtime.writer(SERVICE).execute(
            "agency",
            command.for_agency,
            cause=str(command.command_id),
            correlation=str(command.command_id),
            decide=lambda _history: [event],
        )
        return command.for_agency, outcome

    async def request_access(command: RequestAccess) -> AccessReleased | AccessDenied:
        if runtime.registry.get(command.agency_id) is None:
            # Rejected, not recorded as access.refused: the record cannot be purged, and an
            # id nobody registered is text the sender chose (its notice is rate-limited).
            raise reject("agency_id", ErrorCode.UNKNOWN_AGENCY, "not an agency of the registry")
        case_id = str(command.case_id)
        # The case's referrals, every attempt of every need (found through its need events).
        case_plan = await read_case_plan(store(), case_id)
        case_events = await store().read(aggregate_filter("case", case_id))
        key_events = await store().read(aggregate_filter("agency", command.agency_id))
        access = domain.fold_case_access(
            [*(e.event for e in case_events), *case_plan.referral_events]
        )
        agency_key = domain.current_key([e.event for e in key_events])
        agency = runtime.registry.get(command.agency_id)
        decision = domain.decide_access(access, agency, agency_key, command, runtime.clock())

        def decide(_history: History) -> list[Event]:
            return [decision]

        outcome = await runtime.writer(SERVICE).execute(
            "access",
            case_id,
            cause=str(command.command_id),
            correlation=str(command.command_id),
            decide=decide,
        )
        recorded = decision
        if outcome.duplicate:  # a retried request is answered as it was decided the first time
            history = await store().load("access", case_id)
            recorded = next(
                e.event
                for e in history.events
                if isinstance(e.event, AccessEvent) and e.event.request_id == command.command_id
            )
        # A retried request is answered as first decided, unless things changed since: a
        # grant is never repeated after withdrawal, erasure or the end of the referral.
        refused = next((d for d in (recorded, decision) if isinstance(d, AccessRefused)), None)
        case_key = await (await case_keys()).existing_key(case_id)
        if refused or case_key is None or agency_key is None:
            return AccessDenied(
                command_id=command.command_id,
                case_id=command.case_id,
                reason=refused.reason if refused else AccessRefusal.CASE_ERASED,
                event_ids=outcome.event_ids,
            )
        assert isinstance(recorded, AccessGranted) and access.case is not None  # granted
        version, key = case_key
        payload = {
            "key_version": version,
            "field_keys": {
                f.value: b64encode(field_key(key, case_id, f.value, version))
                for f in recorded.fields
            },
        }
        sealed = seal_to(
            public_key_from_b64(agency_key.public_key),
            release_info(case_id, str(command.command_id), command.agency_id),
            json.dumps(payload).encode(),
        )
        return AccessReleased(
            command_id=command.command_id,
            case_id=command.case_id,
            fields=tuple(PersonalField(f).value for f in recorded.fields),
            key_version=version,
            sealed_field_keys=sealed,
            sealed_fields={f.value: access.case.record.personal_data[f] for f in recorded.fields},
        )

    revoke_attestations = register_attestations(host, SERVICE, case_keys)

    async def on_erasure(delivery: Delivery) -> None:
        case_id = delivery.envelope.subject
        assert case_id is not None
        await revoke_attestations(delivery)  # before the shredding: a retry redoes both
        await (await case_keys()).shred(case_id)
        await BlindIndex(await runtime.bucket(BLIND_INDEX_BUCKET)).remove_case(case_id)

    host.command(RegisterAgencyKey, register_key)
    host.command(RequestAccess, request_access)
    host.consume(consumer("custody-on-erasure"), on_erasure)
    host.needs_bucket(CASE_KEYS_BUCKET)
    host.needs_bucket(BLIND_INDEX_BUCKET)
