"""Events: facts the hub has recorded, version 1.

Each event belongs to one aggregate (a case, a referral, a shelter) and is appended only by
the service that owns that aggregate. Events carry no personal data in clear: the person's
identifying fields travel only as `SealedValue`s (see `contracts.sealed`).

Versioning: every event class has `VERSION`. A change that is not backward compatible adds
a new class version and an upcaster in `UPCASTERS`; stored events are never rewritten, they
are upcast on read by `decode_event_data`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from contracts.commands import Consent, DeliveredItem
from contracts.crossborder import NoticeKind, NoticePackage, ReferralPackage
from contracts.sealed import SealedValue
from contracts.vocabulary import (
    AccessRefusal,
    AgeBand,
    AgencyId,
    AgencyKind,
    AttestationCheckResult,
    AttestationRevocationReason,
    ClosureReason,
    ControlMethod,
    CountryCode,
    CourtOutcome,
    CriminalArticle,
    DataPurpose,
    DeclineReason,
    DischargeReason,
    ErasureReason,
    EscalationCause,
    FollowUpOutcome,
    FollowUpPurpose,
    FormOfExploitation,
    Gender,
    LabourIndustry,
    LegalBasis,
    Means,
    NeedRemovalReason,
    OnlinePlatform,
    PersonalField,
    Purpose,
    ReassignReason,
    RecruitmentMethod,
    Region,
    ReopenReason,
    ReviewGrounds,
    ReviewOutcome,
    RevokeReason,
    Sector,
    SentenceBand,
    Service,
    Sex,
    SexualExploitationType,
    ShelterCategory,
    TransferDeclineReason,
    TransferReason,
    TransferRefusal,
    UnmetReason,
    VictimParticipation,
    VictimStatus,
    Vulnerability,
)


class Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    NAME: ClassVar[str]
    VERSION: ClassVar[int] = 1
    AGGREGATE: ClassVar[str]

    def aggregate_id(self) -> str:
        raise NotImplementedError


# --- Case (identifier) --------------------------------------------------------------------


class CaseEvent(Event):
    AGGREGATE: ClassVar[str] = "case"

    case_id: UUID

    def aggregate_id(self) -> str:
        return str(self.case_id)


class ScreeningRecord(CaseEvent):
    """What both outcomes of a screening record: who identified, where, and the clear,
    non-identifying profile used for routing and statistics."""

    agency_id: AgencyId
    agency_kind: AgencyKind
    sector: Sector
    region: Region
    interviewed_on: dt.date
    sex: Sex
    age_band: AgeBand
    is_child: bool
    citizenship: CountryCode
    country_of_exploitation: CountryCode | None
    forms_of_exploitation: tuple[FormOfExploitation, ...]
    vulnerabilities: tuple[Vulnerability, ...]
    personal_data: dict[PersonalField, SealedValue] = Field(
        description="Personal data, each field sealed to this case (contracts.sealed)"
    )
    # The data standard (HTCDS). Optional with an empty default, so events stored before
    # they existed read as "not recorded", which is what they are: no upcaster needed.
    gender: Gender | None = Field(default=None, description="None: not recorded (see sex)")
    means: tuple[Means, ...] = Field(
        default=(), description="The criteria's means answers (HTCDS methods of control)"
    )
    recruitment_methods: tuple[RecruitmentMethod, ...] = ()
    online_platforms: tuple[OnlinePlatform, ...] = ()
    methods_of_control: tuple[ControlMethod, ...] = ()
    labour_industries: tuple[LabourIndustry, ...] = ()
    sexual_exploitation_types: tuple[SexualExploitationType, ...] = ()


class VictimIdentified(ScreeningRecord):
    NAME: ClassVar[str] = "victim.identified"

    purposes: tuple[Purpose, ...]
    needs: tuple[Service, ...]
    consent: Consent


class UnmetCriterion(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    criterion: str
    reason: str


class VictimNotIdentified(ScreeningRecord):
    NAME: ClassVar[str] = "victim.not_identified"

    unmet_criteria: tuple[UnmetCriterion, ...] = Field(min_length=1)


class VictimPresumed(ScreeningRecord):
    """A presumed victim: the identifying agency could not yet establish the criteria
    (interview incomplete, person in crisis). The urgent needs are referred at once; the
    decision (`screening.decide`) is due by `decision_due` and is recorded on the same case as
    `victim.identified` or `victim.not_identified`."""

    NAME: ClassVar[str] = "victim.presumed"

    needs: tuple[Service, ...]
    consent: Consent
    decision_due: dt.datetime = Field(description="When recorded + the decision days setting")


class ConsentRecorded(CaseEvent):
    """What the person agreed to about their personal data (confidentiality SOP). The latest
    `consent.recorded` of a case is the consent in force until a `consent.withdrawn`.

    For `assistance` the consent covers the providers the case is referred to; for any other
    purpose it covers only the agencies named in `recipients` or of a kind in
    `recipient_kinds`. Withheld fields are never released to anyone."""

    NAME: ClassVar[str] = "consent.recorded"

    consent_id: UUID
    recorded_by: AgencyId
    legal_basis: LegalBasis
    purposes: tuple[DataPurpose, ...]
    recipients: tuple[AgencyId, ...] = Field(description="Agencies named in the consent")
    recipient_kinds: tuple[AgencyKind, ...] = Field(description="Kinds of agency it covers")
    recipient_countries: tuple[CountryCode, ...] = Field(
        default=(), description="Countries personal data may be transmitted to (cross-border)"
    )
    withheld_fields: tuple[PersonalField, ...]
    given_on: dt.date
    expires_at: dt.datetime | None = Field(description="None: until withdrawn")


class ConsentWithdrawn(CaseEvent):
    """The person withdrew consent: no further release of their personal data to anyone.
    Assistance goes on; referrals are not revoked by this."""

    NAME: ClassVar[str] = "consent.withdrawn"

    withdrawn_by: AgencyId


class CaseErased(CaseEvent):
    """The case was crypto-shredded: its data key is destroyed, projections drop what they
    held. The events stay, verifiable, and unreadable."""

    NAME: ClassVar[str] = "case.erased"

    erased_by: AgencyId
    reason: ErasureReason


class LikelyDuplicateFound(CaseEvent):
    """The blind index matched this case's normalised name and date of birth to earlier
    cases (ids only). Told to the identifying agency; nothing about the person is revealed."""

    NAME: ClassVar[str] = "case.duplicate_suspected"

    earlier_case_ids: tuple[UUID, ...] = Field(min_length=1)


class CaseReceivedFromAbroad(ScreeningRecord):
    """A cross-border referral arrived from a partner country's hub: the local case. The
    profile is as the origin sent it; `agency_id` is this hub's receiving authority; the
    personal data (the minimal dataset only) is re-sealed under this case's key."""

    NAME: ClassVar[str] = "case.received_from_abroad"

    origin: CountryCode
    origin_referral_id: UUID
    package_id: UUID
    purpose: DataPurpose
    service: Service


class CaseNoticeFromAbroadApplied(CaseEvent):
    """The origin's notice about a case received from abroad (consent withdrawn, narrowed or
    expired, or the case erased there) was applied here; the same write records what it led
    to (`consent.withdrawn`, `consent.recorded`, `case.erased`), or nothing if that already
    held. Ids and codes only."""

    NAME: ClassVar[str] = "case.cross_border_notice_applied"

    origin: CountryCode
    origin_referral_id: UUID
    notice_id: UUID = Field(description="The notice package applied")
    notice: NoticeKind


# --- Case lifecycle: ownership, transfer, closure (identifier) -----------------------------
# The owner is not stored at identification: it is the screening's `agency_id`, then the
# `to_agency` of each `case.transferred` (services/case/case.py folds it). Ids and codes only.


class CaseTransferRequested(CaseEvent):
    """The owner (or the coordinating body) asked `to_agency` to take the case over. Until
    `case.transferred`, `from_agency` remains the owner."""

    NAME: ClassVar[str] = "case.transfer_requested"

    from_agency: AgencyId = Field(description="The owner when the transfer was asked")
    to_agency: AgencyId
    requested_by: AgencyId
    reason: TransferReason


class CaseTransferred(CaseEvent):
    """`to_agency` accepted the pending transfer: it owns the case from now on."""

    NAME: ClassVar[str] = "case.transferred"

    from_agency: AgencyId
    to_agency: AgencyId


class CaseTransferDeclined(CaseEvent):
    """`to_agency` declined the pending transfer: `from_agency` keeps the case."""

    NAME: ClassVar[str] = "case.transfer_declined"

    from_agency: AgencyId
    to_agency: AgencyId
    reason: TransferDeclineReason


class CaseClosed(CaseEvent):
    NAME: ClassVar[str] = "case.closed"

    owner: AgencyId = Field(description="The owner when the case was closed")
    closed_by: AgencyId
    reason: ClosureReason
    revoked_referrals: tuple[UUID, ...] = Field(
        default=(),
        description="Active referrals the closing agency named: the referral service revokes "
        "them (reason case_closed)",
    )


class CaseReopened(CaseEvent):
    NAME: ClassVar[str] = "case.reopened"

    owner: AgencyId
    reopened_by: AgencyId
    reason: ReopenReason


# --- Follow-ups (identifier, on the case) ---------------------------------------------------
# On the case aggregate, so the case fold knows its pending follow-ups (HTCDS `follow_up`).
# Closing the case cancels those still pending (services/case/case.py): no event for that.


class FollowUpScheduled(CaseEvent):
    NAME: ClassVar[str] = "case.followup_scheduled"

    followup_id: UUID = Field(description="Derived from the command id (services/case/ids.py)")
    due_on: dt.date
    purpose: FollowUpPurpose
    scheduled_by: AgencyId
    recorded_at: dt.datetime


class FollowUpRecorded(CaseEvent):
    """The follow-up took place (or was attempted): it is closed."""

    NAME: ClassVar[str] = "case.followup_recorded"

    followup_id: UUID
    outcome: FollowUpOutcome
    recorded_by: AgencyId
    recorded_at: dt.datetime


class FollowUpOverdue(CaseEvent):
    """Not recorded by its due date: escalated, once, to the coordinating body. It stays
    open and may still be recorded."""

    NAME: ClassVar[str] = "case.followup_overdue"

    followup_id: UUID
    due_on: dt.date
    escalated_to: AgencyId


# --- Review of a non-identification (identifier) -------------------------------------------
# Ids and codes only. An overturned review is followed, on the same case, by a
# `victim.identified` copying the screening's profile: the referrals follow from it.


class CaseReviewRequested(CaseEvent):
    """A representative of the person asked that the case's non-identification be reviewed."""

    NAME: ClassVar[str] = "case.review_requested"

    review_id: UUID = Field(description="Derived from the request's command id")
    requested_by: AgencyId
    grounds: ReviewGrounds
    recorded_at: dt.datetime


class CaseReviewAssigned(CaseEvent):
    """The coordinating body named the agency that decides the review."""

    NAME: ClassVar[str] = "case.review_assigned"

    review_id: UUID
    assigned_to: AgencyId
    assigned_by: AgencyId


class CaseReviewDecided(CaseEvent):
    NAME: ClassVar[str] = "case.review_decided"

    review_id: UUID
    outcome: ReviewOutcome
    decided_by: AgencyId


# --- Referral (referral) -------------------------------------------------------------------


class ReferralEvent(Event):
    AGGREGATE: ClassVar[str] = "referral"

    referral_id: UUID
    case_id: UUID

    def aggregate_id(self) -> str:
        return str(self.referral_id)


class ReferralRequested(ReferralEvent):
    NAME: ClassVar[str] = "referral.requested"

    service: Service
    provider_id: AgencyId
    referrer_id: AgencyId
    region: Region
    sex: Sex
    age_band: AgeBand
    is_child: bool
    placement_category: ShelterCategory | None = Field(
        description="For shelter referrals: the category of bed the person needs"
    )
    shared_fields: tuple[PersonalField, ...] = Field(
        description="Personal-data fields the provider may be given (consent permitting)"
    )
    requested_at: dt.datetime
    respond_by: dt.datetime
    attempt: int = Field(
        default=0, ge=0, description="Which referral of the case's need this is (0: the first)"
    )


class ReferralAccepted(ReferralEvent):
    NAME: ClassVar[str] = "referral.accepted"

    provider_id: AgencyId
    accepted_at: dt.datetime


class ReferralWaitlisted(ReferralEvent):
    NAME: ClassVar[str] = "referral.waitlisted"

    provider_id: AgencyId
    position: int = Field(ge=1)


class ReferralDeclined(ReferralEvent):
    NAME: ClassVar[str] = "referral.declined"

    provider_id: AgencyId
    reason: DeclineReason


class ReferralCompleted(ReferralEvent):
    NAME: ClassVar[str] = "referral.completed"

    provider_id: AgencyId
    delivered: tuple[DeliveredItem, ...]


class ReferralRevoked(ReferralEvent):
    NAME: ClassVar[str] = "referral.revoked"

    revoked_by: AgencyId
    reason: RevokeReason


class ReferralEscalated(ReferralEvent):
    NAME: ClassVar[str] = "referral.escalated"

    provider_id: AgencyId
    overdue_since: dt.datetime
    escalated_to: AgencyId
    cause: EscalationCause = EscalationCause.NO_ANSWER


class ReferralServiceDelivered(ReferralEvent):
    """The provider of an accepted referral records service delivered as it happens; the
    referral stays accepted until `referral.completed`."""

    NAME: ClassVar[str] = "referral.service_delivered"

    provider_id: AgencyId
    delivered: tuple[DeliveredItem, ...]


class CrossBorderReferralEvent(ReferralEvent):
    """A referral to a partner country's hub (the origin's side of a cross-border referral)."""

    destination: CountryCode


class ReferralCrossBorderRequested(CrossBorderReferralEvent):
    """Consent and allow-list checked: the package below is queued for the destination. Its
    personal data is sealed to the destination's key; this hub cannot open it."""

    NAME: ClassVar[str] = "referral.cross_border_requested"

    purpose: DataPurpose
    service: Service
    referrer_id: AgencyId
    authority_id: AgencyId = Field(description="The destination authority")
    fields_sent: tuple[PersonalField, ...]
    package_id: UUID
    package: ReferralPackage


class ReferralCrossBorderRefused(CrossBorderReferralEvent):
    """A cross-border referral was refused before anything left the hub."""

    NAME: ClassVar[str] = "referral.cross_border_refused"

    purpose: DataPurpose
    service: Service
    requested_by: AgencyId
    reason: TransferRefusal


class CrossBorderAnswer(CrossBorderReferralEvent):
    package_id: UUID = Field(description="The answer package this was recorded from")


class ReferralCrossBorderReceived(CrossBorderAnswer):
    NAME: ClassVar[str] = "referral.cross_border_received"


class ReferralCrossBorderAccepted(CrossBorderAnswer):
    NAME: ClassVar[str] = "referral.cross_border_accepted"


class ReferralCrossBorderDeclined(CrossBorderAnswer):
    NAME: ClassVar[str] = "referral.cross_border_declined"

    reason: DeclineReason


class ReferralCrossBorderCompleted(CrossBorderAnswer):
    NAME: ClassVar[str] = "referral.cross_border_completed"


class ReferralCrossBorderClosed(CrossBorderAnswer):
    """The destination closed the case it received (its outcome code; never its details)."""

    NAME: ClassVar[str] = "referral.cross_border_closed"


class ReferralCrossBorderNoticeSent(CrossBorderReferralEvent):
    """The case's consent changed or it was erased after the transfer: the notice below is
    queued for the destination. `consent_purposes`/`consent_expires_at` (when narrowed) are
    what the consent covers there from now on."""

    NAME: ClassVar[str] = "referral.cross_border_notice_sent"

    notice: NoticeKind
    consent_purposes: tuple[DataPurpose, ...]
    consent_expires_at: dt.datetime | None
    package_id: UUID
    package: NoticePackage


class ReferralCrossBorderNoticeApplied(CrossBorderReferralEvent):
    """The destination answered that it applied the notice `notice_id`."""

    NAME: ClassVar[str] = "referral.cross_border_notice_applied"

    package_id: UUID = Field(description="The answer package this was recorded from")
    notice_id: UUID
    notice: NoticeKind


# --- Need (referral): the case plan, one need per case and service --------------------------


class NeedEvent(Event):
    """One need of one case (aggregate `need`, id derived from case + service): an item of the
    case plan. Its events say when it was added, referred (each attempt names its referral),
    found unmet, or removed; the referrals' own events say how each attempt went
    (services/case/needs.py folds both). A need referred at identification has no need event:
    its first referral is `referral_id_for(case, service)`."""

    AGGREGATE: ClassVar[str] = "need"

    need_id: UUID
    case_id: UUID
    service: Service

    def aggregate_id(self) -> str:
        return str(self.need_id)


class NeedUnmet(NeedEvent):
    """No provider could be asked to meet this need. Ids and codes only: told to the
    coordinating body and the identifying agency (their feeds) and counted by statistics."""

    NAME: ClassVar[str] = "need.unmet"

    reason: UnmetReason
    region: Region
    category: ShelterCategory = Field(
        description="The person's category (women / men / children), as for a shelter bed"
    )
    identifying_agency: AgencyId
    coordinating_body: AgencyId
    recorded_at: dt.datetime


class NeedAdded(NeedEvent):
    """The case owner (or the coordinating body) put the need on the case plan."""

    NAME: ClassVar[str] = "need.added"

    added_by: AgencyId
    recorded_at: dt.datetime


class NeedRemoved(NeedEvent):
    """The need was taken off the case plan (no referral of it active)."""

    NAME: ClassVar[str] = "need.removed"

    reason: NeedRemovalReason
    removed_by: AgencyId
    recorded_at: dt.datetime


class NeedReferred(NeedEvent):
    """The order to refer the need to `provider_id`: the referral service turns it into
    `referral.requested` on `referral_id` (attempt 0: `referral_id_for(case, service)`,
    attempt k: derived from the need id and k)."""

    NAME: ClassVar[str] = "need.referred"

    referral_id: UUID
    provider_id: AgencyId
    attempt: int = Field(ge=0)
    referred_by: AgencyId = Field(description="The agency that referred it, or hub")
    reassign_reason: ReassignReason | None = Field(
        default=None, description="Set when the coordinating body reassigned a referral"
    )
    recorded_at: dt.datetime


# --- Shelter (shelter) ---------------------------------------------------------------------


class ShelterEvent(Event):
    AGGREGATE: ClassVar[str] = "shelter"

    shelter_id: AgencyId

    def aggregate_id(self) -> str:
        return self.shelter_id


class ShelterRegistered(ShelterEvent):
    NAME: ClassVar[str] = "shelter.registered"

    region: Region
    capacity: dict[ShelterCategory, int]


class PlacementEvent(ShelterEvent):
    referral_id: UUID
    case_id: UUID
    category: ShelterCategory


class ShelterAdmitted(PlacementEvent):
    NAME: ClassVar[str] = "shelter.admitted"

    from_waiting_list: bool


class ShelterWaitlisted(PlacementEvent):
    NAME: ClassVar[str] = "shelter.waitlisted"

    position: int = Field(ge=1)


class ShelterDischarged(PlacementEvent):
    NAME: ClassVar[str] = "shelter.discharged"

    reason: DischargeReason


class ShelterWaitlistLeft(PlacementEvent):
    """The person's referral was revoked or declined while waiting: the place in line is
    given up."""

    NAME: ClassVar[str] = "shelter.waitlist_left"


class ShelterPlacementRefused(PlacementEvent):
    NAME: ClassVar[str] = "shelter.placement_refused"

    reason: DeclineReason


# --- Access to personal data (key custody) ------------------------------------------------


class AccessEvent(Event):
    """A decision on a request for a case's field keys. Aggregate `access`, id = case id:
    the case's access log, written only by key custody."""

    AGGREGATE: ClassVar[str] = "access"

    case_id: UUID
    request_id: UUID
    agency_id: AgencyId
    agency_kind: AgencyKind | None = Field(description="None when the agency is not registered")
    purpose: DataPurpose
    fields: tuple[PersonalField, ...] = Field(description="Fields asked for (granted: released)")

    def aggregate_id(self) -> str:
        return str(self.case_id)


class AccessGranted(AccessEvent):
    NAME: ClassVar[str] = "access.granted"

    basis: str = Field(description="identifying_agency | referral:<referral id> | consent")
    key_id: str = Field(description="The agency public key the field keys were sealed to")


class AccessRefused(AccessEvent):
    NAME: ClassVar[str] = "access.refused"

    reason: AccessRefusal


# --- Agency keys (key custody) ------------------------------------------------------------


class AgencyKeyRegistered(Event):
    """An agency's public key for receiving field keys (HPKE, X25519). The latest one is in
    force; earlier ones are retired."""

    AGGREGATE: ClassVar[str] = "agency"
    NAME: ClassVar[str] = "agency.key_registered"

    agency_id: AgencyId
    key_id: str = Field(pattern=r"^[0-9a-f]{16}$", description="First 8 bytes of SHA-256(key)")
    public_key: str = Field(description="Base64 raw 32-byte X25519 public key")
    registered_by: AgencyId

    def aggregate_id(self) -> str:
        return self.agency_id


# --- Victim-status attestations (custody) --------------------------------------------------


class AttestationEvent(Event):
    """One attestation in one status list. Aggregate `attestation`, id = the status list's
    id: the list is the fold of its history, and the next status index is the number of
    attestations issued on it (optimistic concurrency keeps indexes unique). Ids, codes and
    dates only: the credential itself is never stored."""

    AGGREGATE: ClassVar[str] = "attestation"

    status_list: str = Field(pattern=r"^[a-z0-9-]{1,32}$", description="The status list id")
    attestation_id: UUID = Field(description="The credential's jti")
    case_id: UUID
    status_index: int = Field(ge=0, description="The attestation's bit in the status list")

    def aggregate_id(self) -> str:
        return self.status_list


class AttestationIssued(AttestationEvent):
    NAME: ClassVar[str] = "attestation.issued"

    victim_status: VictimStatus
    issued_by: AgencyId
    issued_at: dt.datetime
    expires_at: dt.datetime
    bound: bool = Field(description="Whether the credential carries a document binding")
    key_id: str = Field(description="RFC 7638 thumbprint of the hub key that signed it")


class AttestationRevoked(AttestationEvent):
    NAME: ClassVar[str] = "attestation.revoked"

    revoked_by: AgencyId
    reason: AttestationRevocationReason


class AttestationChecked(Event):
    """An agency asked the hub online whether an attestation is in force (`attestation.check`)
    and was answered `result`. Aggregate `attestation_check`, id = the attestation id: the
    attestation's own record of checks, apart from the status list it is on."""

    AGGREGATE: ClassVar[str] = "attestation_check"
    NAME: ClassVar[str] = "attestation.checked"

    attestation_id: UUID
    case_id: UUID
    checked_by: AgencyId
    result: AttestationCheckResult

    def aggregate_id(self) -> str:
        return str(self.attestation_id)


# --- Criminal proceedings (identifier) -----------------------------------------------------


class ProceedingEvent(Event):
    """One criminal proceeding (aggregate `proceeding`, id derived from the command that
    opened it). It names the cases it concerns by id; ids, codes and dates only: no person,
    no defendant, no court file number. services/case/proceedings.py folds it."""

    AGGREGATE: ClassVar[str] = "proceeding"

    proceeding_id: UUID

    def aggregate_id(self) -> str:
        return str(self.proceeding_id)


class ComplaintFiled(ProceedingEvent):
    """A criminal complaint: filed by an NGO or the ombudsperson on the victim's behalf
    (`on_behalf_of_victim`), or received by the prosecution or internal affairs."""

    NAME: ClassVar[str] = "proceeding.complaint_filed"

    case_ids: tuple[UUID, ...] = Field(min_length=1)
    filed_by: AgencyId
    filer_kind: AgencyKind
    on_behalf_of_victim: bool
    filed_on: dt.date
    recorded_at: dt.datetime


class InvestigationOpened(ProceedingEvent):
    """A criminal investigation was opened. `case_ids`: the cases this event links (all of
    them for a new proceeding; the further ones for a proceeding opened by a complaint)."""

    NAME: ClassVar[str] = "proceeding.investigation_opened"

    case_ids: tuple[UUID, ...]
    article: CriminalArticle
    opened_by: AgencyId
    agency_kind: AgencyKind
    opened_on: dt.date
    recorded_at: dt.datetime


class ChargesBrought(ProceedingEvent):
    """Charges were brought (a prosecution): the case goes to court."""

    NAME: ClassVar[str] = "proceeding.charges_brought"

    article: CriminalArticle
    defendants: int = Field(ge=1)
    charged_by: AgencyId
    charged_on: dt.date
    recorded_at: dt.datetime


class CourtDecisionRecorded(ProceedingEvent):
    """The court decided on the charges. `article`: the article of the decision (another
    than charged when `reclassified`)."""

    NAME: ClassVar[str] = "proceeding.decision_recorded"

    outcome: CourtOutcome
    article: CriminalArticle
    sentence: SentenceBand
    decided_on: dt.date
    recorded_by: AgencyId
    recorded_at: dt.datetime


class VictimParticipationRecorded(ProceedingEvent):
    """How the victim of one of the proceeding's cases took part in it."""

    NAME: ClassVar[str] = "proceeding.participation_recorded"

    case_id: UUID
    participation: tuple[VictimParticipation, ...] = Field(min_length=1)
    recorded_on: dt.date
    recorded_by: AgencyId
    recorded_at: dt.datetime


ALL_EVENTS: tuple[type[Event], ...] = (
    VictimIdentified,
    VictimNotIdentified,
    ConsentRecorded,
    ConsentWithdrawn,
    CaseErased,
    LikelyDuplicateFound,
    CaseReceivedFromAbroad,
    CaseNoticeFromAbroadApplied,
    # case lifecycle
    CaseTransferRequested,
    CaseTransferred,
    CaseTransferDeclined,
    CaseClosed,
    CaseReopened,
    # end case lifecycle
    # follow-ups
    FollowUpScheduled,
    FollowUpRecorded,
    FollowUpOverdue,
    # end follow-ups
    # presumed victims and review of a non-identification
    VictimPresumed,
    CaseReviewRequested,
    CaseReviewAssigned,
    CaseReviewDecided,
    # end presumed victims and review
    ReferralRequested,
    ReferralAccepted,
    ReferralWaitlisted,
    ReferralDeclined,
    ReferralCompleted,
    ReferralRevoked,
    ReferralEscalated,
    ReferralServiceDelivered,
    ReferralCrossBorderRequested,
    ReferralCrossBorderRefused,
    ReferralCrossBorderReceived,
    ReferralCrossBorderAccepted,
    ReferralCrossBorderDeclined,
    ReferralCrossBorderCompleted,
    ReferralCrossBorderClosed,
    ReferralCrossBorderNoticeSent,
    ReferralCrossBorderNoticeApplied,
    ShelterRegistered,
    ShelterAdmitted,
    ShelterWaitlisted,
    ShelterDischarged,
    ShelterWaitlistLeft,
    ShelterPlacementRefused,
    AccessGranted,
    AccessRefused,
    AgencyKeyRegistered,
    # Oversight: unmet needs.
    NeedUnmet,
    # The case plan: needs added, referred, removed.
    NeedAdded,
    NeedRemoved,
    NeedReferred,
    # attestations
    AttestationIssued,
    AttestationRevoked,
    AttestationChecked,
    # end attestations
    # criminal proceedings
    ComplaintFiled,
    InvestigationOpened,
    ChargesBrought,
    CourtDecisionRecorded,
    VictimParticipationRecorded,
    # end criminal proceedings
)
EVENTS_BY_NAME: dict[str, type[Event]] = {cls.NAME: cls for cls in ALL_EVENTS}

# (event name, stored version) -> function turning that version's data into the next one's.
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
UPCASTERS: dict[tuple[str, int], Upcaster] = {}


class UnknownEventError(ValueError):
    pass


def decode_event_data(
    name: str,
    version: int,
    data: dict[str, Any],
    upcasters: dict[tuple[str, int], Upcaster] = UPCASTERS,
) -> Event:
    """Parse stored event data, upcasting older versions step by step to the current one."""
    cls = EVENTS_BY_NAME.get(name)
    if cls is None:
        raise UnknownEventError(f"unknown event type {name!r}")
    if version > cls.VERSION:
        raise UnknownEventError(f"{name} version {version} is newer than this code ({cls.VERSION})")
    while version < cls.VERSION:
        step = upcasters.get((name, version))
        if step is None:
            raise UnknownEventError(f"no upcaster for {name} version {version}")
        data = step(data)
        version += 1
    return cls.model_validate(data)
