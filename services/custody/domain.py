"""Who may read which personal data of a case, and why (confidentiality SOP), as pure rules.

`decide_access` gets what the events say about a case (identification, consent, referrals,
erasure), the requesting agency's registry entry and registered key, and the request, and
returns the `access.granted` or `access.refused` event to record. Nothing here knows NATS.

The rules, in the order they are checked:
1. the case exists and is not erased;
2. the agency is registered and has registered a public key;
3. a consent is in force (recorded, not withdrawn, not expired) and covers the purpose;
4. law enforcement (prosecution, internal affairs, national security) is given data only for
   `investigation`, whatever else the consent says; nobody is given data for `attestation`
   (that purpose lets the hub sign a victim-status attestation, docs/ATTESTATION.md);
5. the agency is entitled for the purpose: for `assistance` the identifying agency or the
   provider of an active referral of the case; for any other purpose an agency the consent
   names, by id or by kind;
6. the fields: an active referral gives the fields its service needs (`shared_fields`), any
   other basis every field present; never a field the person withheld. Asking for a field
   outside that refuses the whole request.
Assistance never depends on any of this: referrals go on whether or not data is released.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from uuid import UUID

from contracts.commands import RequestAccess
from contracts.events import (
    AccessEvent,
    AccessGranted,
    AccessRefused,
    AgencyKeyRegistered,
    Event,
    ReferralEvent,
)
from contracts.vocabulary import AccessRefusal, AgencyKind, DataPurpose, PersonalField
from services.agencies.registry import Agency
from services.case.case import Case, fold_case, is_identifying_agency
from services.case.consent import (
    ConsentGap,
    consent_in_force,
    covers_purpose,
    names_agency,
    not_withheld,
)
from services.case.referrals import ACTIVE, Referral, fold_referral

LAW_ENFORCEMENT = frozenset(
    {AgencyKind.PROSECUTION, AgencyKind.INTERNAL_AFFAIRS, AgencyKind.NATIONAL_SECURITY}
)


@dataclass(frozen=True)
class CaseAccess:
    """What the events say about who may read a case: the case and its referrals."""

    case: Case | None = None
    referrals: tuple[Referral, ...] = field(default=())


def fold_case_access(events: Sequence[Event]) -> CaseAccess:
    """The case's events and its referrals' events (any order between aggregates)."""
    by_referral: dict[UUID, list[Event]] = {}
    for event in events:
        if isinstance(event, ReferralEvent):
            by_referral.setdefault(event.referral_id, []).append(event)
    referrals = tuple(r for r in map(fold_referral, by_referral.values()) if r is not None)
    return CaseAccess(fold_case(events), referrals)


def current_key(events: Sequence[Event]) -> AgencyKeyRegistered | None:
    keys = [e for e in events if isinstance(e, AgencyKeyRegistered)]
    return keys[-1] if keys else None


@dataclass(frozen=True)
class Entitlement:
    basis: str
    fields: frozenset[PersonalField]


class Refused(Exception):
    def __init__(self, reason: AccessRefusal) -> None:
        super().__init__(reason.value)
        self.reason = reason


def entitlement(
    access: CaseAccess,
    agency: Agency | None,
    key: AgencyKeyRegistered | None,
    purpose: DataPurpose,
    now: dt.datetime,
) -> Entitlement:
    """What `agency` may be given for `purpose`, or `Refused` with the first reason."""
    if access.case is None:
        raise Refused(AccessRefusal.UNKNOWN_CASE)
    case = access.case
    if case.erased:
        raise Refused(AccessRefusal.CASE_ERASED)
    if agency is None:
        raise Refused(AccessRefusal.NOT_A_RECIPIENT)
    if key is None:
        raise Refused(AccessRefusal.NO_REGISTERED_KEY)
    consent = consent_in_force(case, now)
    if isinstance(consent, ConsentGap):
        raise Refused(AccessRefusal(consent.value))
    if not covers_purpose(consent, purpose):
        raise Refused(AccessRefusal.PURPOSE_NOT_COVERED)
    if purpose is DataPurpose.ATTESTATION:  # consent to the hub's signed statement, never to
        raise Refused(AccessRefusal.PURPOSE_NOT_COVERED)  # a release of the data itself
    if agency.kind in LAW_ENFORCEMENT and purpose is not DataPurpose.INVESTIGATION:
        raise Refused(AccessRefusal.PURPOSE_NOT_COVERED)
    allowed = frozenset(not_withheld(case.present_fields, consent.withheld_fields))
    if purpose is not DataPurpose.ASSISTANCE:
        if names_agency(consent, agency):
            return Entitlement("consent", allowed)
        raise Refused(AccessRefusal.RECIPIENT_NOT_COVERED)
    if is_identifying_agency(case, agency) and agency.kind not in LAW_ENFORCEMENT:
        return Entitlement("identifying_agency", allowed)
    mine = [r for r in access.referrals if r.request.provider_id == agency.id]
    active = [r for r in mine if r.status in ACTIVE]
    if active:
        referral = active[0]
        fields = allowed & set(referral.request.shared_fields)
        return Entitlement(f"referral:{referral.request.referral_id}", fields)
    raise Refused(AccessRefusal.REFERRAL_NOT_ACTIVE if mine else AccessRefusal.NOT_A_RECIPIENT)


def decide_access(
    access: CaseAccess,
    agency: Agency | None,
    key: AgencyKeyRegistered | None,
    request: RequestAccess,
    now: dt.datetime,
) -> AccessEvent:
    asked = frozenset(request.fields)
    kind = agency.kind if agency else None
    try:
        granted = entitlement(access, agency, key, request.purpose, now)
        fields = asked or granted.fields
        if not fields or not fields <= granted.fields:
            raise Refused(AccessRefusal.FIELDS_NOT_COVERED)
    except Refused as refused:
        return AccessRefused(
            case_id=request.case_id,
            request_id=request.command_id,
            agency_id=request.agency_id,
            agency_kind=kind,
            purpose=request.purpose,
            fields=tuple(sorted(asked)),
            reason=refused.reason,
        )
    assert key is not None  # entitlement() refuses without one
    return AccessGranted(
        case_id=request.case_id,
        request_id=request.command_id,
        agency_id=request.agency_id,
        agency_kind=kind,
        purpose=request.purpose,
        fields=tuple(sorted(fields)),
        basis=granted.basis,
        key_id=key.key_id,
    )
