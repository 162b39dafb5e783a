"""Cross-border referral rules as pure functions (no NATS, no keys).

Origin side: `decide_transfer` says whether a case may be referred to a partner country's hub
and which fields may go (the minimal dataset), or why not; `requested_events` /
`refused_event` are what gets recorded; `decide_answer` moves the referral along as the
destination's answers arrive.

Destination side: `plan_reception` turns a received package into a local case (profile as
sent, personal data re-sealed locally), the consent that came with it, and a local referral
to a provider from this hub's registry; `answer_for` turns the local referral's progress into
the answer package sent back.

The rules for a transfer, in the order they are checked (the first failing is recorded):
1. the case exists, is an identified victim (not a screening that did not identify, nor a
   case received from abroad) and is not erased;
2. the requester is the identifying agency or the coordinating body;
3. the destination is on the allow-list (a peer with an exchanged key) for this purpose;
4. a consent is in force (recorded, not withdrawn, not expired) covering the purpose and
   naming the destination country;
5. the fields sent are the peer's minimal dataset for the purpose, less withheld fields, of
   those the case has.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace
from uuid import UUID

from contracts.commands import RequestCrossBorderReferral
from contracts.crossborder import AnswerPackage, AnswerStatus, Profile, ReferralPackage
from contracts.events import (
    CaseReceivedFromAbroad,
    ConsentRecorded,
    CrossBorderAnswer,
    Event,
    ReferralAccepted,
    ReferralCompleted,
    ReferralCrossBorderAccepted,
    ReferralCrossBorderCompleted,
    ReferralCrossBorderDeclined,
    ReferralCrossBorderReceived,
    ReferralCrossBorderRefused,
    ReferralCrossBorderRequested,
    ReferralDeclined,
    ReferralRequested,
    VictimIdentified,
)
from contracts.public_key_sealing import SealedToKey
from contracts.sealed import SealedValue
from contracts.vocabulary import DataPurpose, LegalBasis, PersonalField, TransferRefusal
from services.agencies.registry import Agency, AgencyRegistry, Peer
from services.case.case import Case, may_act_on
from services.case.consent import (
    ConsentGap,
    consent_in_force,
    covers_purpose,
    names_country,
    not_withheld,
)
from services.case.referrals import referral_request


@dataclass(frozen=True)
class Transfer:
    """A transfer the rules allow: to whom, which fields, from which identification."""

    peer: Peer
    record: VictimIdentified
    consent: ConsentRecorded
    fields: tuple[PersonalField, ...]


def decide_transfer(
    case: Case | None,
    requester: Agency,
    registry: AgencyRegistry,
    command: RequestCrossBorderReferral,
    now: dt.datetime,
) -> Transfer | TransferRefusal:
    if case is None:
        return TransferRefusal.UNKNOWN_CASE
    if case.erased:
        return TransferRefusal.CASE_ERASED
    record = case.record
    if not isinstance(record, VictimIdentified):
        return TransferRefusal.NOT_IDENTIFIED
    if not may_act_on(case, requester):
        return TransferRefusal.NOT_AUTHORISED
    peer = registry.peer(command.destination)
    if peer is None or peer.public_key is None:
        return TransferRefusal.NOT_ALLOW_LISTED
    if command.purpose not in peer.purposes:
        return TransferRefusal.PURPOSE_NOT_ALLOWED
    consent = consent_in_force(case, now)
    if isinstance(consent, ConsentGap):
        return TransferRefusal(consent.value)
    if not covers_purpose(consent, command.purpose):
        return TransferRefusal.PURPOSE_NOT_COVERED
    if not names_country(consent, peer.code):
        return TransferRefusal.COUNTRY_NOT_COVERED
    allowed = peer.purposes[command.purpose] & case.present_fields
    fields = tuple(sorted(not_withheld(allowed, consent.withheld_fields)))
    return Transfer(peer, record, consent, fields)


def refused_event(
    referral_id: UUID, command: RequestCrossBorderReferral, reason: TransferRefusal
) -> ReferralCrossBorderRefused:
    return ReferralCrossBorderRefused(
        referral_id=referral_id,
        case_id=command.case_id,
        destination=command.destination,
        purpose=command.purpose,
        service=command.service,
        requested_by=command.agency_id,
        reason=reason,
    )


def profile_of(record: VictimIdentified) -> Profile:
    return Profile(
        sex=record.sex,
        age_band=record.age_band,
        is_child=record.is_child,
        citizenship=record.citizenship,
        forms_of_exploitation=record.forms_of_exploitation,
        vulnerabilities=record.vulnerabilities,
    )


def referral_package(
    transfer: Transfer,
    command: RequestCrossBorderReferral,
    origin: str,
    referral_id: UUID,
    package_id: UUID,
    sealed: SealedToKey,
    now: dt.datetime,
) -> ReferralPackage:
    # The destination may use the data for the transfer's purpose and, if consented, for
    # assistance there; nothing else the consent may allow at home travels with it.
    wanted = {command.purpose, DataPurpose.ASSISTANCE}
    return ReferralPackage(
        package_id=package_id,
        origin=origin.upper(),
        destination=transfer.peer.code,
        referral_id=referral_id,
        sent_at=now,
        purpose=command.purpose,
        service=command.service,
        authority_id=transfer.peer.authority_id,
        profile=profile_of(transfer.record),
        fields=transfer.fields,
        personal_data=sealed,
        consent_purposes=tuple(sorted(wanted & set(transfer.consent.purposes))),
        consent_expires_at=transfer.consent.expires_at,
    )


def requested_event(
    command: RequestCrossBorderReferral, package: ReferralPackage
) -> ReferralCrossBorderRequested:
    return ReferralCrossBorderRequested(
        referral_id=package.referral_id,
        case_id=command.case_id,
        destination=package.destination,
        purpose=command.purpose,
        service=command.service,
        referrer_id=command.agency_id,
        authority_id=package.authority_id,
        fields_sent=package.fields,
        package_id=package.package_id,
        package=package,
    )


# --- the origin's referral as answers arrive ----------------------------------------------


@dataclass(frozen=True)
class CrossBorderReferral:
    request: ReferralCrossBorderRequested
    status: AnswerStatus | None  # None: sent, no answer yet


def fold(events: Sequence[Event]) -> CrossBorderReferral | None:
    state: CrossBorderReferral | None = None
    for event in events:
        if isinstance(event, ReferralCrossBorderRequested):
            state = CrossBorderReferral(event, None)
        elif state is not None and isinstance(event, CrossBorderAnswer):
            state = replace(state, status=_STATUS_OF[type(event)])
    return state


_STATUS_OF: dict[type[CrossBorderAnswer], AnswerStatus] = {
    ReferralCrossBorderReceived: AnswerStatus.RECEIVED,
    ReferralCrossBorderAccepted: AnswerStatus.ACCEPTED,
    ReferralCrossBorderDeclined: AnswerStatus.DECLINED,
    ReferralCrossBorderCompleted: AnswerStatus.COMPLETED,
}
# Which answer may follow which state (None: nothing heard yet).
_MAY_FOLLOW: dict[AnswerStatus, frozenset[AnswerStatus | None]] = {
    AnswerStatus.RECEIVED: frozenset({None}),
    AnswerStatus.ACCEPTED: frozenset({None, AnswerStatus.RECEIVED}),
    AnswerStatus.DECLINED: frozenset({None, AnswerStatus.RECEIVED}),
    AnswerStatus.COMPLETED: frozenset({AnswerStatus.ACCEPTED}),
}


def decide_answer(referral: CrossBorderReferral | None, answer: AnswerPackage) -> list[Event]:
    """The answer recorded on the origin's referral; an answer from another country than the
    referral went to, or one that does not follow the current state, changes nothing."""
    if referral is None or referral.request.destination != answer.origin:
        return []
    if referral.status not in _MAY_FOLLOW[answer.status]:
        return []
    ids = {
        "referral_id": referral.request.referral_id,
        "case_id": referral.request.case_id,
        "destination": referral.request.destination,
        "package_id": answer.package_id,
    }
    if answer.status is AnswerStatus.DECLINED:
        assert answer.reason is not None  # checked when the package was parsed
        return [ReferralCrossBorderDeclined(**ids, reason=answer.reason)]
    cls = {
        AnswerStatus.RECEIVED: ReferralCrossBorderReceived,
        AnswerStatus.ACCEPTED: ReferralCrossBorderAccepted,
        AnswerStatus.COMPLETED: ReferralCrossBorderCompleted,
    }[answer.status]
    return [cls(**ids)]


# --- the destination -----------------------------------------------------------------------


def reception_problem(package: ReferralPackage, registry: AgencyRegistry) -> str | None:
    """Why this hub will not apply a referral package, by its own allow-list: the origin
    must be a peer, the purpose allowed from it, and the fields within the minimal dataset
    this hub agreed for that purpose (a partner sending more is not rewarded with a case)."""
    peer = registry.peer(package.origin)
    if peer is None:
        return "origin_not_a_peer"
    allowed = peer.purposes.get(package.purpose)
    if allowed is None:
        return "purpose_not_allowed"
    if not set(package.fields) <= allowed:
        return "fields_beyond_minimal_dataset"
    return None


def receiving_authority(registry: AgencyRegistry, package: ReferralPackage) -> Agency:
    """The authority the package names, or the coordinating body if it names no agency here."""
    authority = registry.get(package.authority_id) or registry.get(registry.coordinating_body)
    assert authority is not None  # the registry validates its coordinating body
    return authority


def plan_reception(
    package: ReferralPackage,
    registry: AgencyRegistry,
    case_id: UUID,
    consent_id: UUID,
    referral_id: UUID,
    sealed: dict[PersonalField, SealedValue],
    now: dt.datetime,
    response_window: dt.timedelta,
) -> tuple[list[Event], ReferralRequested]:
    """The local case's events and the local referral for a received package. The provider
    is chosen like any referral's, near the authority; with none, the authority itself."""
    authority = receiving_authority(registry, package)
    profile = package.profile
    received = CaseReceivedFromAbroad(
        case_id=case_id,
        agency_id=authority.id,
        agency_kind=authority.kind,
        sector=authority.sector,
        region=authority.region,
        interviewed_on=package.sent_at.date(),
        sex=profile.sex,
        age_band=profile.age_band,
        is_child=profile.is_child,
        citizenship=profile.citizenship,
        country_of_exploitation=None,
        forms_of_exploitation=profile.forms_of_exploitation,
        vulnerabilities=profile.vulnerabilities,
        personal_data=sealed,
        origin=package.origin,
        origin_referral_id=package.referral_id,
        package_id=package.package_id,
        purpose=package.purpose,
        service=package.service,
    )
    consent = ConsentRecorded(
        case_id=case_id,
        consent_id=consent_id,
        recorded_by=authority.id,
        legal_basis=LegalBasis.INFORMED_CONSENT,
        purposes=package.consent_purposes,
        recipients=(),
        recipient_kinds=(),
        recipient_countries=(),
        withheld_fields=(),
        given_on=package.sent_at.date(),
        expires_at=package.consent_expires_at,
    )
    requested = referral_request(
        registry,
        referral_id=referral_id,
        case_id=case_id,
        service=package.service,
        referrer_id=authority.id,
        region=authority.region,
        person=profile,
        shared_fields=package.fields,
        now=now,
        response_window=response_window,
        fallback=authority,
    )
    assert requested is not None  # the authority takes it when no provider can
    return [received, consent], requested


def answer_for(
    event: Event, case: CaseReceivedFromAbroad, package_id: UUID, here: str, now: dt.datetime
) -> AnswerPackage | None:
    """The answer a local fact about a case received from abroad sends back, if any."""
    common = {
        "package_id": package_id,
        "origin": here.upper(),
        "destination": case.origin,
        "referral_id": case.origin_referral_id,
        "sent_at": now,
    }
    match event:
        case CaseReceivedFromAbroad():
            return AnswerPackage(**common, status=AnswerStatus.RECEIVED)
        case ReferralAccepted():
            return AnswerPackage(**common, status=AnswerStatus.ACCEPTED)
        case ReferralDeclined():
            return AnswerPackage(**common, status=AnswerStatus.DECLINED, reason=event.reason)
        case ReferralCompleted():
            return AnswerPackage(**common, status=AnswerStatus.COMPLETED)
    return None
