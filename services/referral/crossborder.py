"""Cross-border referral rules as pure functions (no NATS, no keys).

Origin side: `decide_transfer` says whether a case may be referred to a partner country's hub
and which fields may go (the minimal dataset), or why not; `requested_events` /
`refused_event` are what gets recorded; `decide_answer` moves the referral along as the
destination's answers arrive.

Destination side: `plan_reception` turns a received package into a local case (profile as
sent, personal data re-sealed locally), the consent that came with it, and a local referral
to a provider from this hub's registry; `answer_for` turns the local referral's progress (and
the case's closure) into the answer package sent back.

After a transfer (both sides): `decide_notice` turns a withdrawal, a narrowing or expiry of
consent, or an erasure at the origin into a notice for each destination; `apply_notice` is
what the destination records on the case it received (it stops releasing, or erases its
copy); `notice_applied_answer` / `decide_notice_applied` carry the acknowledgement back.

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
from contracts.crossborder import (
    AnswerPackage,
    AnswerStatus,
    NoticeAppliedPackage,
    NoticeKind,
    NoticePackage,
    Profile,
    ReferralPackage,
)
from contracts.events import (
    CaseClosed,
    CaseErased,
    CaseNoticeFromAbroadApplied,
    CaseReceivedFromAbroad,
    ConsentRecorded,
    ConsentWithdrawn,
    CrossBorderAnswer,
    Event,
    ReferralAccepted,
    ReferralCompleted,
    ReferralCrossBorderAccepted,
    ReferralCrossBorderClosed,
    ReferralCrossBorderCompleted,
    ReferralCrossBorderDeclined,
    ReferralCrossBorderNoticeApplied,
    ReferralCrossBorderNoticeSent,
    ReferralCrossBorderReceived,
    ReferralCrossBorderRefused,
    ReferralCrossBorderRequested,
    ReferralDeclined,
    ReferralRequested,
    VictimIdentified,
)
from contracts.public_key_sealing import SealedToKey
from contracts.sealed import SealedValue
from contracts.vocabulary import (
    AgencyId,
    DataPurpose,
    ErasureReason,
    LegalBasis,
    PersonalField,
    TransferRefusal,
)
from services.agencies.registry import Agency, AgencyRegistry, Peer
from services.case.case import Case, may_act_on
from services.case.consent import (
    ConsentGap,
    consent_in_force,
    covers_purpose,
    names_country,
    not_withheld,
    unexpired,
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
    """The origin's referral: the request, the latest answer, and what the person's consent
    covers at the destination now (as sent, then as the notices since narrowed it)."""

    request: ReferralCrossBorderRequested
    status: AnswerStatus | None  # None: sent, no answer yet
    consent_purposes: tuple[DataPurpose, ...] = ()
    consent_expires_at: dt.datetime | None = None
    # A withdrawal, expiry or erasure was sent: nothing further to tell the destination.
    consent_ended: bool = False
    notices_sent: frozenset[UUID] = frozenset()  # notice package ids
    notices_applied: frozenset[UUID] = frozenset()


def fold(events: Sequence[Event]) -> CrossBorderReferral | None:
    state: CrossBorderReferral | None = None
    for event in events:
        if isinstance(event, ReferralCrossBorderRequested):
            package = event.package
            state = CrossBorderReferral(
                event, None, package.consent_purposes, package.consent_expires_at
            )
        elif state is None:
            continue
        elif isinstance(event, CrossBorderAnswer):
            state = replace(state, status=_STATUS_OF[type(event)])
        elif isinstance(event, ReferralCrossBorderNoticeSent):
            state = replace(
                state,
                consent_purposes=event.consent_purposes,
                consent_expires_at=event.consent_expires_at,
                consent_ended=event.notice is not NoticeKind.NARROWED,
                notices_sent=state.notices_sent | {event.package_id},
            )
        elif isinstance(event, ReferralCrossBorderNoticeApplied):
            state = replace(state, notices_applied=state.notices_applied | {event.notice_id})
    return state


_STATUS_OF: dict[type[CrossBorderAnswer], AnswerStatus] = {
    ReferralCrossBorderReceived: AnswerStatus.RECEIVED,
    ReferralCrossBorderAccepted: AnswerStatus.ACCEPTED,
    ReferralCrossBorderDeclined: AnswerStatus.DECLINED,
    ReferralCrossBorderCompleted: AnswerStatus.COMPLETED,
    ReferralCrossBorderClosed: AnswerStatus.CLOSED,
}
# Which answer may follow which state (None: nothing heard yet). The destination may close
# the case it received whatever became of its referrals; nothing follows a closure.
_MAY_FOLLOW: dict[AnswerStatus, frozenset[AnswerStatus | None]] = {
    AnswerStatus.RECEIVED: frozenset({None}),
    AnswerStatus.ACCEPTED: frozenset({None, AnswerStatus.RECEIVED}),
    AnswerStatus.DECLINED: frozenset({None, AnswerStatus.RECEIVED}),
    AnswerStatus.COMPLETED: frozenset({AnswerStatus.ACCEPTED}),
    AnswerStatus.CLOSED: frozenset(
        {
            None,
            AnswerStatus.RECEIVED,
            AnswerStatus.ACCEPTED,
            AnswerStatus.DECLINED,
            AnswerStatus.COMPLETED,
        }
    ),
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
        AnswerStatus.CLOSED: ReferralCrossBorderClosed,
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
) -> AnswerPackage | NoticeAppliedPackage | None:
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
        case CaseClosed():
            return AnswerPackage(**common, status=AnswerStatus.CLOSED)
        case CaseNoticeFromAbroadApplied():
            return NoticeAppliedPackage(**common, notice_id=event.notice_id, notice=event.notice)
    return None


# --- after a transfer: consent changes and erasure cross the border ------------------------

ConsentChange = ConsentWithdrawn | ConsentRecorded | CaseErased


def _earlier(a: dt.datetime | None, b: dt.datetime | None) -> dt.datetime | None:
    """The earlier of two expiries, None being never."""
    if a is None or b is None:
        return a or b
    return min(a, b)


def notice_of(
    referral: CrossBorderReferral, change: ConsentChange, at: dt.datetime
) -> tuple[NoticeKind, tuple[DataPurpose, ...], dt.datetime | None] | None:
    """What a change at the origin means for the destination: withdrawn, erased, expired, or
    narrowed (the purposes it had, less those the new consent drops; nothing if the new
    consent no longer names the destination country; the earlier expiry). A consent that
    covers as much or more is not a notice: a widening never crosses (that takes a new
    referral). Once a withdrawal, expiry or erasure was sent, only an erasure follows."""
    if isinstance(change, CaseErased):
        return NoticeKind.ERASED, (), None
    if referral.consent_ended:
        return None
    if isinstance(change, ConsentWithdrawn):
        return NoticeKind.WITHDRAWN, (), None
    if not unexpired(change.expires_at, at):
        return NoticeKind.EXPIRED, (), None
    if not names_country(change, referral.request.destination):
        purposes: tuple[DataPurpose, ...] = ()
    else:
        purposes = tuple(p for p in referral.consent_purposes if covers_purpose(change, p))
    expires_at = _earlier(referral.consent_expires_at, change.expires_at)
    if purposes == referral.consent_purposes and expires_at == referral.consent_expires_at:
        return None
    return NoticeKind.NARROWED, purposes, expires_at


def decide_notice(
    referral: CrossBorderReferral | None,
    change: ConsentChange,
    package_id: UUID,
    here: str,
    now: dt.datetime,
) -> list[Event]:
    """The notice recorded (and queued) on the origin's referral, if the change is one.
    A refused referral (no request) sent nothing, so it has nothing to tell."""
    if referral is None or package_id in referral.notices_sent:
        return []
    found = notice_of(referral, change, now)
    if found is None:
        return []
    kind, purposes, expires_at = found
    request = referral.request
    package = NoticePackage(
        package_id=package_id,
        origin=here.upper(),
        destination=request.destination,
        referral_id=request.referral_id,
        sent_at=now,
        notice=kind,
        consent_purposes=purposes,
        consent_expires_at=expires_at,
    )
    return [
        ReferralCrossBorderNoticeSent(
            referral_id=request.referral_id,
            case_id=request.case_id,
            destination=request.destination,
            notice=kind,
            consent_purposes=purposes,
            consent_expires_at=expires_at,
            package_id=package_id,
            package=package,
        )
    ]


def apply_notice(
    case: Case | None,
    received: CaseReceivedFromAbroad,
    notice: NoticePackage,
    by: AgencyId,
    consent_id: UUID,
) -> list[Event]:
    """What the destination records on the case it received: an erasure erases it (custody
    shreds its key on `case.erased`); a withdrawal, an expiry or a consent that no longer
    covers anything here withdraws the local consent (custody refuses every release); a
    narrowing records the narrower consent, never wider than the local one. Always the
    `case.cross_border_notice_applied` the answer is sent from; nothing else if the case is
    already erased (or the consent already withdrawn and this is no erasure)."""
    if case is None or notice.origin != received.origin:
        return []
    applied = CaseNoticeFromAbroadApplied(
        case_id=received.case_id,
        origin=received.origin,
        origin_referral_id=received.origin_referral_id,
        notice_id=notice.package_id,
        notice=notice.notice,
    )
    if case.erased:
        return [applied]
    if notice.notice is NoticeKind.ERASED:
        erased = CaseErased(
            case_id=received.case_id, erased_by=by, reason=ErasureReason.ERASED_AT_ORIGIN
        )
        return [erased, applied]
    if case.consent_withdrawn:
        return [applied]
    local = case.consent
    purposes = tuple(
        p for p in notice.consent_purposes if local is not None and covers_purpose(local, p)
    )
    if notice.notice is not NoticeKind.NARROWED or not purposes or local is None:
        return [ConsentWithdrawn(case_id=received.case_id, withdrawn_by=by), applied]
    narrowed = replace_consent(local, consent_id, by, purposes, notice)
    return [narrowed, applied]


def replace_consent(
    local: ConsentRecorded,
    consent_id: UUID,
    by: AgencyId,
    purposes: tuple[DataPurpose, ...],
    notice: NoticePackage,
) -> ConsentRecorded:
    """The local consent narrowed to `purposes` and to the earlier of the two expiries."""
    return local.model_copy(
        update={
            "consent_id": consent_id,
            "recorded_by": by,
            "purposes": purposes,
            "given_on": notice.sent_at.date(),
            "expires_at": _earlier(local.expires_at, notice.consent_expires_at),
        }
    )


def decide_notice_applied(
    referral: CrossBorderReferral | None, answer: NoticeAppliedPackage
) -> list[Event]:
    """The destination's acknowledgement of a notice this referral sent, recorded once."""
    if referral is None or referral.request.destination != answer.origin:
        return []
    if answer.notice_id not in referral.notices_sent:
        return []
    if answer.notice_id in referral.notices_applied:
        return []
    return [
        ReferralCrossBorderNoticeApplied(
            referral_id=referral.request.referral_id,
            case_id=referral.request.case_id,
            destination=referral.request.destination,
            package_id=answer.package_id,
            notice_id=answer.notice_id,
            notice=answer.notice,
        )
    ]
