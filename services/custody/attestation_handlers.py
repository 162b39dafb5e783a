"""custody: victim-status attestations on the wire (docs/ATTESTATION.md). Issues, revokes and
checks them online (`attestation.issue`, `attestation.revoke`, `attestation.check`), revokes
an erased case's, and answers the hub's attestation public key and its freshly signed status
list.

Custody signs because it already holds what signing needs: the case keys, to open the
document number the binding is computed from (in memory, for the one command), and now the
attestation signing key (NRM_ATTESTATION_SIGNING_KEY_FILE), which no other service reads.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from contracts.attestation import (
    BINDING_ITERATIONS,
    Attestation,
    Binding,
    HubSigningKey,
    issuer_for,
    read_signing_key,
    status_list_uri,
)
from contracts.commands import CheckAttestation, IssueAttestation, RevokeAttestation
from contracts.events import (
    AttestationChecked,
    AttestationIssued,
    CaseErased,
    Event,
    VictimNotIdentified,
)
from contracts.replies import AttestationCredential, AttestationStatus, ErrorCode, reject
from contracts.sealed import open_sealed
from contracts.subjects import (
    ATTESTATION_KEY_SUBJECT,
    ATTESTATION_STATUS_SUBJECT,
    aggregate_filter,
)
from contracts.vocabulary import PersonalField
from services.case.case import Case, fold_case
from services.case.ids import attestation_id_for
from services.custody.attestations import (
    STATUS_LIST_ID,
    AttestationList,
    decide_check,
    decide_issue,
    decide_revoke,
    decide_revoke_on_decision,
    decide_revoke_on_erasure,
    fold_attestations,
)
from services.runtime.case_keys import CaseKeys, KeyCustodyError
from services.runtime.eventstore import EventStore, History
from services.runtime.messaging import Delivery, ServiceHost
from services.runtime.service_table import consumer
from services.runtime.writer import Outcome

AGGREGATE = "attestation"
CHECK_AGGREGATE = "attestation_check"

RevokeOnErasure = Callable[[Delivery], Awaitable[None]]


def signing_key(host: ServiceHost) -> HubSigningKey:
    settings = host.runtime.settings
    try:
        return read_signing_key(settings.attestation_signing_key, issuer_for(settings.country))
    except ValueError as exc:
        raise KeyCustodyError(f"NRM_ATTESTATION_SIGNING_KEY_FILE: {exc}") from None


def register_attestations(
    host: ServiceHost, service: str, case_keys: Callable[[], Awaitable[CaseKeys]]
) -> RevokeOnErasure:
    """Serve the attestation commands and answers; return what custody's erasure consumer
    calls to revoke an erased case's attestations."""
    runtime = host.runtime
    signing = signing_key(host)  # fail at start, naming the setting
    public = signing.public
    country = runtime.settings.country
    list_uri = status_list_uri(country, STATUS_LIST_ID)

    def store() -> EventStore:
        assert runtime.store is not None, "not connected"
        return runtime.store

    def fold(history: History) -> AttestationList:
        return fold_attestations(STATUS_LIST_ID, [e.event for e in history.events])

    async def load_case(case_id: str) -> Case | None:
        stored = await store().read(aggregate_filter("case", case_id))
        return fold_case([e.event for e in stored])

    async def document_number(case: Case, case_id: str) -> str | None:
        """The case's document number in clear, for this command only; None once shredded."""
        sealed = case.record.personal_data.get(PersonalField.DOCUMENT_NUMBER)
        case_key = await (await case_keys()).existing_key(case_id)
        if sealed is None or case_key is None:
            return None
        return open_sealed(case_key[1], case_id, PersonalField.DOCUMENT_NUMBER.value, sealed)

    def credential(issued: AttestationIssued, number: str | None) -> str:
        binding = None
        if number is not None:
            salt = signing.salt_for(issued.attestation_id)
            binding = Binding.of(salt, number, BINDING_ITERATIONS)
        return Attestation(
            attestation_id=issued.attestation_id,
            issuer=signing.issuer,
            country=country.upper(),
            victim_status=issued.victim_status.value,
            issued_at=issued.issued_at,
            expires_at=issued.expires_at,
            status_index=issued.status_index,
            status_uri=list_uri,
            binding=binding,
        ).sign(signing)

    async def issue(command: IssueAttestation) -> AttestationCredential:
        case_id = str(command.case_id)
        case = await load_case(case_id)
        agency = runtime.registry.get(command.agency_id)
        now = runtime.clock()

        def decide(history: History) -> list[Event]:
            return [decide_issue(case, agency, command, fold(history), now, public.kid)]

        outcome = await runtime.writer(service).execute(
            AGGREGATE,
            STATUS_LIST_ID,
            cause=str(command.command_id),
            correlation=str(command.command_id),
            decide=decide,
        )
        listed = fold(await store().load(AGGREGATE, STATUS_LIST_ID)).entries.get(
            attestation_id_for(command.command_id)
        )
        # A retry is answered with the same credential, unless the case is gone since.
        if listed is None or case is None or listed.revoked is not None or case.erased:
            raise reject("case_id", ErrorCode.INVALID_STATE, "the attestation was revoked")
        issued = listed.issued
        number = await document_number(case, case_id) if issued.bound else None
        if issued.bound and number is None:
            raise reject("case_id", ErrorCode.INVALID_STATE, "the case was erased")
        return AttestationCredential(
            command_id=command.command_id,
            aggregate_id=STATUS_LIST_ID,
            attestation_id=issued.attestation_id,
            case_id=issued.case_id,
            status_index=issued.status_index,
            expires_at=issued.expires_at,
            bound=issued.bound,
            # ~0.3 s of PBKDF2 off the event loop: custody keeps answering meanwhile.
            credential=await asyncio.to_thread(credential, issued, number),
            event_ids=outcome.event_ids,
            duplicate=outcome.duplicate,
        )

    async def revoke(command: RevokeAttestation) -> tuple[str, Outcome]:
        listed = fold(await store().load(AGGREGATE, STATUS_LIST_ID)).entries.get(
            command.attestation_id
        )
        case = await load_case(str(listed.issued.case_id)) if listed else None
        agency = runtime.registry.get(command.agency_id)
        outcome = await runtime.writer(service).execute(
            AGGREGATE,
            STATUS_LIST_ID,
            cause=str(command.command_id),
            correlation=str(command.command_id),
            decide=lambda history: [decide_revoke(fold(history), case, agency, command)],
        )
        return STATUS_LIST_ID, outcome

    async def check(command: CheckAttestation) -> AttestationStatus:
        attestations = fold(await store().load(AGGREGATE, STATUS_LIST_ID))
        agency = runtime.registry.get(command.agency_id)
        checked = decide_check(attestations, agency, command, runtime.clock())
        attestation_id = str(command.attestation_id)
        outcome = await runtime.writer(service).execute(
            CHECK_AGGREGATE,
            attestation_id,
            cause=str(command.command_id),
            correlation=str(command.command_id),
            decide=lambda _history: [checked],
        )
        if outcome.duplicate:  # a retry is answered as first recorded
            history = await store().load(CHECK_AGGREGATE, attestation_id)
            recorded = history.caused_by(str(command.command_id))[0].event
            assert isinstance(recorded, AttestationChecked)
            checked = recorded
        issued = attestations.entries[command.attestation_id].issued
        return AttestationStatus(
            command_id=command.command_id,
            attestation_id=command.attestation_id,
            result=checked.result,
            expires_at=issued.expires_at,
            event_ids=outcome.event_ids,
            duplicate=outcome.duplicate,
        )

    async def revoke_on_erasure(delivery: Delivery) -> None:
        erased = delivery.event
        assert isinstance(erased, CaseErased)
        await runtime.writer(service).execute(
            AGGREGATE,
            STATUS_LIST_ID,
            cause=delivery.envelope.id,
            correlation=delivery.envelope.correlationid,
            decide=lambda history: decide_revoke_on_erasure(fold(history), erased),
        )

    async def revoke_on_decision(delivery: Delivery) -> None:
        decided = delivery.event
        if not isinstance(decided, VictimNotIdentified):
            return
        await runtime.writer(service).execute(
            AGGREGATE,
            STATUS_LIST_ID,
            cause=delivery.envelope.id,
            correlation=delivery.envelope.correlationid,
            decide=lambda history: decide_revoke_on_decision(fold(history), decided),
        )

    async def status_list() -> dict[str, Any]:
        attestations = fold(await store().load(AGGREGATE, STATUS_LIST_ID))
        token = attestations.status().sign(signing, list_uri, runtime.clock())
        return {"uri": list_uri, "status_list": token}

    host.command(IssueAttestation, issue)
    host.command(RevokeAttestation, revoke)
    host.command(CheckAttestation, check)
    host.answer(ATTESTATION_KEY_SUBJECT, lambda: json.loads(public.to_json()))
    host.answer(ATTESTATION_STATUS_SUBJECT, status_list)
    host.consume(consumer("custody-on-decision"), revoke_on_decision)
    return revoke_on_erasure
