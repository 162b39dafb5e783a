"""Victim-status attestations as pure rules (docs/ATTESTATION.md): the status list a history
folds to, who may issue and revoke one, and what gets recorded. Nothing here knows NATS or
holds a key; the custody service signs.

Issuing needs, in this order: a known case, a registered agency that owns the case or is the
coordinating body, a case not erased, an identified victim, and a consent in force covering
the purpose `attestation`. The attestation is bound to the person's document number when the
case has one and the person did not withhold it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from uuid import UUID

from contracts.attestation import StatusList
from contracts.commands import CheckAttestation, IssueAttestation, RevokeAttestation
from contracts.events import (
    AttestationChecked,
    AttestationIssued,
    AttestationRevoked,
    CaseErased,
    Event,
    VictimIdentified,
    VictimNotIdentified,
    VictimPresumed,
)
from contracts.replies import ErrorCode, reject
from contracts.vocabulary import (
    AttestationCheckResult,
    AttestationRevocationReason,
    DataPurpose,
    PersonalField,
    VictimStatus,
)
from services.agencies.registry import Agency
from services.case.case import Case, may_manage
from services.case.consent import ConsentGap, consent_in_force, covers_purpose
from services.case.ids import attestation_id_for

# The one status list so far. When it fills (contracts.attestation: a list is as long as it
# needs), a second id starts a new aggregate; verifiers follow the credential's `uri`.
STATUS_LIST_ID = "list-1"


@dataclass(frozen=True)
class Listed:
    issued: AttestationIssued
    revoked: AttestationRevoked | None = None


@dataclass(frozen=True)
class AttestationList:
    """One status list as its events tell it: every attestation issued on it, by id."""

    list_id: str
    entries: dict[UUID, Listed] = field(default_factory=dict)

    @property
    def next_index(self) -> int:
        return len(self.entries)

    def of_case(self, case_id: UUID) -> list[Listed]:
        return [e for e in self.entries.values() if e.issued.case_id == case_id]

    def status(self) -> StatusList:
        revoked = frozenset(e.issued.status_index for e in self.entries.values() if e.revoked)
        return StatusList.of(len(self.entries), revoked)


def fold_attestations(list_id: str, events: Sequence[Event]) -> AttestationList:
    entries: dict[UUID, Listed] = {}
    for event in events:
        if isinstance(event, AttestationIssued):
            entries[event.attestation_id] = Listed(event)
        elif isinstance(event, AttestationRevoked) and event.attestation_id in entries:
            entries[event.attestation_id] = Listed(entries[event.attestation_id].issued, event)
    return AttestationList(list_id, entries)


def victim_status(case: Case) -> VictimStatus | None:
    """What the hub may attest of this case's person: an identified victim, or a presumed one
    while the decision is pending (valid until `decision_due` at most, and revoked when the
    decision is "not identified": `decide_revoke_on_decision`)."""
    if isinstance(case.record, VictimIdentified):
        return VictimStatus.IDENTIFIED
    if isinstance(case.record, VictimPresumed):
        return VictimStatus.PRESUMED
    return None


def valid_until(case: Case, now: dt.datetime, valid_days: int) -> dt.datetime:
    """The asked validity; a presumed victim's ends with the decision's due date."""
    asked = now + dt.timedelta(days=valid_days)
    if isinstance(case.record, VictimPresumed):
        return min(asked, case.record.decision_due)
    return asked


def binds_document(case: Case, now: dt.datetime) -> bool:
    """Bind to the document number when the case has one the person did not withhold."""
    if PersonalField.DOCUMENT_NUMBER not in case.present_fields:
        return False
    consent = consent_in_force(case, now)
    return not isinstance(consent, ConsentGap) and (
        PersonalField.DOCUMENT_NUMBER not in consent.withheld_fields
    )


def decide_issue(
    case: Case | None,
    agency: Agency | None,
    command: IssueAttestation,
    attestations: AttestationList,
    now: dt.datetime,
    key_id: str,
) -> AttestationIssued:
    if case is None:
        raise reject("case_id", ErrorCode.UNKNOWN_ID, "no such case")
    if agency is None:
        raise reject("agency_id", ErrorCode.UNKNOWN_AGENCY, "not an agency of the registry")
    if not may_manage(case, agency):
        raise reject(
            "agency_id",
            ErrorCode.NOT_AUTHORISED,
            "only the case owner or the coordinating body asks for an attestation",
        )
    if case.erased:
        raise reject("case_id", ErrorCode.INVALID_STATE, "the case was erased")
    status = victim_status(case)
    if status is None:
        raise reject(
            "case_id", ErrorCode.INVALID_STATE, "the case is not an identified or presumed victim"
        )
    consent = consent_in_force(case, now)
    if isinstance(consent, ConsentGap):
        raise reject(
            "case_id", ErrorCode.INVALID_STATE, f"no consent in force for an attestation: {consent}"
        )
    if not covers_purpose(consent, DataPurpose.ATTESTATION):
        raise reject(
            "case_id",
            ErrorCode.INVALID_STATE,
            "the consent in force does not cover the purpose attestation",
        )
    return AttestationIssued(
        status_list=attestations.list_id,
        attestation_id=attestation_id_for(command.command_id),
        case_id=command.case_id,
        status_index=attestations.next_index,
        victim_status=status,
        issued_by=agency.id,
        issued_at=now,
        expires_at=valid_until(case, now, command.valid_days),
        bound=binds_document(case, now),
        key_id=key_id,
    )


def decide_revoke(
    attestations: AttestationList,
    case: Case | None,
    agency: Agency | None,
    command: RevokeAttestation,
) -> AttestationRevoked:
    listed = attestations.entries.get(command.attestation_id)
    if listed is None:
        raise reject("attestation_id", ErrorCode.UNKNOWN_ID, "no such attestation")
    if agency is None:
        raise reject("agency_id", ErrorCode.UNKNOWN_AGENCY, "not an agency of the registry")
    if case is None or not may_manage(case, agency):
        raise reject(
            "agency_id",
            ErrorCode.NOT_AUTHORISED,
            "only the case owner or the coordinating body revokes an attestation",
        )
    if listed.revoked is not None:
        raise reject("attestation_id", ErrorCode.INVALID_STATE, "already revoked")
    return _revocation(listed.issued, agency.id, command.reason)


def decide_revoke_on_erasure(
    attestations: AttestationList, erased: CaseErased
) -> list[AttestationRevoked]:
    """An erased case's attestations, every one still in force, revoked."""
    return [
        _revocation(e.issued, erased.erased_by, AttestationRevocationReason.CASE_ERASED)
        for e in attestations.of_case(erased.case_id)
        if e.revoked is None
    ]


def decide_revoke_on_decision(
    attestations: AttestationList, decided: VictimNotIdentified
) -> list[AttestationRevoked]:
    """A presumed victim decided not identified (or any case recorded so): every attestation
    of the case still in force is revoked as not a trafficking case."""
    return [
        _revocation(e.issued, decided.agency_id, AttestationRevocationReason.NOT_A_TRAFFICKING_CASE)
        for e in attestations.of_case(decided.case_id)
        if e.revoked is None
    ]


def decide_check(
    attestations: AttestationList,
    agency: Agency | None,
    command: CheckAttestation,
    now: dt.datetime,
) -> AttestationChecked:
    """Any registered agency may ask; the answer is what the hub knows now."""
    if agency is None:
        raise reject("agency_id", ErrorCode.UNKNOWN_AGENCY, "not an agency of the registry")
    listed = attestations.entries.get(command.attestation_id)
    if listed is None:
        raise reject("attestation_id", ErrorCode.UNKNOWN_ID, "no such attestation")
    if listed.revoked is not None:
        result = AttestationCheckResult.REVOKED
    elif now >= listed.issued.expires_at:
        result = AttestationCheckResult.EXPIRED
    else:
        result = AttestationCheckResult.VALID
    return AttestationChecked(
        attestation_id=listed.issued.attestation_id,
        case_id=listed.issued.case_id,
        checked_by=agency.id,
        result=result,
    )


def _revocation(
    issued: AttestationIssued, by: str, reason: AttestationRevocationReason
) -> AttestationRevoked:
    return AttestationRevoked(
        status_list=issued.status_list,
        attestation_id=issued.attestation_id,
        case_id=issued.case_id,
        status_index=issued.status_index,
        revoked_by=by,
        reason=reason,
    )
