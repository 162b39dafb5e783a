"""Who may read which personal data of a case, and why (confidentiality SOP), as pure rules.

`decide_access` gets what the events say about a case (identification, consent, referrals,
erasure), the requesting agency's registry entry and registered key, and the request, and
returns the `access.granted` or `access.refused` event to record. Nothing here knows NATS.

The rules, in the order they are checked:
1. the case exists and is not erased;
2. the agency is registered and has registered a public key;
3. a consent is in force (recorded, not withdrawn, not expired) and covers the purpose;
4. law enforcement (prosecution, internal affairs, national security) is given data only for
   `investigation`, whatever else the consent says;
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
from dataclasses import dataclass, field, replace
from uuid import UUID

from contracts.commands import RequestAccess
from contracts.events import (
    AccessEvent,
    AccessGranted,
    AccessRefused,
    AgencyKeyRegistered,
    CaseErased,
    ConsentRecorded,
    ConsentWithdrawn,
    Event,
    ReferralEvent,
    ScreeningRecord,
)
from contracts.vocabulary import AccessRefusal, AgencyKind, DataPurpose, PersonalField
from services.agencies.registry import Agency
from services.referral.domain import ACTIVE, Referral
from services.referral.domain import fold as fold_referral

LAW_ENFORCEMENT = frozenset(
    {AgencyKind.PROSECUTION, AgencyKind.INTERNAL_AFFAIRS, AgencyKind.NATIONAL_SECURITY}
)


@dataclass(frozen=True)
class CaseAccess:
    """What the events say about who may read a case."""

    record: ScreeningRecord | None = None
    consent: ConsentRecorded | None = None
    consent_withdrawn: bool = False
    erased: bool = False
    referrals: tuple[Referral, ...] = field(default=())

    @property
    def present_fields(self) -> frozenset[PersonalField]:
        return frozenset(self.record.personal_data) if self.record else frozenset()


def fold_case_access(events: Sequence[Event]) -> CaseAccess:
    """The case's events and its referrals' events (any order between aggregates)."""
    access = CaseAccess()
    by_referral: dict[UUID, list[Event]] = {}
    for event in events:
        if isinstance(event, ScreeningRecord):
            access = replace(access, record=event)
        elif isinstance(event, ConsentRecorded):
            access = replace(access, consent=event, consent_withdrawn=False)
        elif isinstance(event, ConsentWithdrawn):
            access = replace(access, consent_withdrawn=True)
        elif isinstance(event, CaseErased):
            access = replace(access, erased=True)
        elif isinstance(event, ReferralEvent):
            by_referral.setdefault(event.referral_id, []).append(event)
    referrals = tuple(r for r in map(fold_referral, by_referral.values()) if r is not None)
    return replace(access, referrals=referrals)


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
    case: CaseAccess,
    agency: Agency | None,
    key: AgencyKeyRegistered | None,
    purpose: DataPurpose,
    now: dt.datetime,
) -> Entitlement:
    """What `agency` may be given for `purpose`, or `Refused` with the first reason."""
    if case.record is None:
        raise Refused(AccessRefusal.UNKNOWN_CASE)
    if case.erased:
        raise Refused(AccessRefusal.CASE_ERASED)
    if agency is None:
        raise Refused(AccessRefusal.NOT_A_RECIPIENT)
    if key is None:
        raise Refused(AccessRefusal.NO_REGISTERED_KEY)
    consent = case.consent
    if consent is None:
        raise Refused(AccessRefusal.NO_CONSENT)
    if case.consent_withdrawn:
        raise Refused(AccessRefusal.CONSENT_WITHDRAWN)
    if consent.expires_at is not None and consent.expires_at <= now:
        raise Refused(AccessRefusal.CONSENT_EXPIRED)
    if purpose not in consent.purposes:
        raise Refused(AccessRefusal.PURPOSE_NOT_COVERED)
    if agency.kind in LAW_ENFORCEMENT and purpose is not DataPurpose.INVESTIGATION:
        raise Refused(AccessRefusal.PURPOSE_NOT_COVERED)
    allowed = case.present_fields - set(consent.withheld_fields)
    if purpose is not DataPurpose.ASSISTANCE:
        if agency.id in consent.recipients or agency.kind in consent.recipient_kinds:
            return Entitlement("consent", allowed)
        raise Refused(AccessRefusal.RECIPIENT_NOT_COVERED)
    if agency.id == case.record.agency_id and agency.kind not in LAW_ENFORCEMENT:
        return Entitlement("identifying_agency", allowed)
    mine = [r for r in case.referrals if r.request.provider_id == agency.id]
    active = [r for r in mine if r.status in ACTIVE]
    if active:
        referral = active[0]
        fields = allowed & set(referral.request.shared_fields)
        return Entitlement(f"referral:{referral.request.referral_id}", fields)
    raise Refused(AccessRefusal.REFERRAL_NOT_ACTIVE if mine else AccessRefusal.NOT_A_RECIPIENT)


def decide_access(
    case: CaseAccess,
    agency: Agency | None,
    key: AgencyKeyRegistered | None,
    request: RequestAccess,
    now: dt.datetime,
) -> AccessEvent:
    asked = frozenset(request.fields)
    kind = agency.kind if agency else None
    try:
        granted = entitlement(case, agency, key, request.purpose, now)
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
