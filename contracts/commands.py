"""Commands: requests an agency sends over NATS request/reply, version 1.

Every command carries `command_id`, a UUID the sender picks once and reuses on every retry:
the hub derives the ids of the events it writes from it, so a retried command is answered
with the same result and writes nothing twice. `agency_id` names the sending agency as
listed in the agency registry.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from contracts.public_key_sealing import SealedToKey
from contracts.vocabulary import (
    Act,
    AgencyId,
    AgencyKind,
    AttestationRevocationReason,
    CanonicalUuid,
    ClosureReason,
    ControlMethod,
    CountryCode,
    CourtOutcome,
    CriminalArticle,
    DataPurpose,
    DeclineReason,
    DeliveryUnit,
    DischargeReason,
    ErasureReason,
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
    SentenceBand,
    Service,
    Sex,
    SexualExploitationType,
    ShelterCategory,
    TransferDeclineReason,
    TransferReason,
    VictimParticipation,
    Vulnerability,
)

# Free text is personal data: bounded, and only ever stored sealed.
PersonalText = Annotated[
    str, StringConstraints(min_length=1, max_length=2000, strip_whitespace=True)
]
ShortPersonalText = Annotated[
    str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)
]


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    NAME: ClassVar[str]
    VERSION: ClassVar[int] = 1

    command_id: CanonicalUuid = Field(
        description="Idempotency key chosen by the sender, reused on retry"
    )
    agency_id: AgencyId = Field(description="The sending agency, as listed in the registry")


class PersonalData(BaseModel):
    """What identifies the person. Sealed field by field before anything is stored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    full_name: ShortPersonalText
    date_of_birth: dt.date | None = None
    document_number: ShortPersonalText | None = None
    phone: ShortPersonalText | None = None
    address: ShortPersonalText | None = None
    current_location: ShortPersonalText | None = None
    narrative: PersonalText | None = None

    def present_fields(self) -> dict[PersonalField, str]:
        values = self.model_dump(exclude_none=True, mode="json")
        return {PersonalField(name): str(value) for name, value in values.items()}


class CriteriaAnswers(BaseModel):
    """The interviewer's findings on the three elements of the identification criteria."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    acts: frozenset[Act] = Field(default=frozenset(), description="Act element answers")
    means: frozenset[Means] = Field(default=frozenset(), description="Means element answers")
    purposes: frozenset[Purpose] = Field(
        default=frozenset(), description="Purpose-of-exploitation element answers"
    )


class Consent(BaseModel):
    """What the person agreed to in the interview. Assistance never depends on it beyond the
    services the person declined; withheld fields are never shared with anyone.

    `purposes` and the recipients say who may be given the person's personal data, and why:
    for `assistance` the providers the case is referred to; for any other purpose (e.g.
    `investigation`: law enforcement) only agencies named in `recipients` or of a kind in
    `recipient_kinds`. Recorded as `consent.recorded`; changed or withdrawn later with
    `consent.record` / `consent.withdraw`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    declined_services: frozenset[Service] = frozenset()
    withheld_fields: frozenset[PersonalField] = frozenset()
    purposes: frozenset[DataPurpose] = frozenset({DataPurpose.ASSISTANCE})
    recipients: frozenset[AgencyId] = frozenset()
    recipient_kinds: frozenset[AgencyKind] = frozenset()
    recipient_countries: frozenset[CountryCode] = frozenset()
    legal_basis: LegalBasis = LegalBasis.INFORMED_CONSENT
    expires_at: dt.datetime | None = Field(default=None, description="None: until withdrawn")


class ScreeningFacts(Command):
    """What a screening interview found, apart from the personal data."""

    interviewed_on: dt.date
    region: Region
    sex: Sex
    age: StrictInt | None = Field(
        default=None, ge=0, le=120, description="Age in years; or give personal_data.date_of_birth"
    )
    citizenship: CountryCode = Field(description="ISO 3166-1 alpha-2; XX when stateless/unknown")
    country_of_exploitation: CountryCode | None = None
    criteria: CriteriaAnswers
    forms_of_exploitation: frozenset[FormOfExploitation] = frozenset()
    needs: frozenset[Service] = frozenset()
    vulnerabilities: frozenset[Vulnerability] = frozenset()
    consent: Consent = Consent()
    presumed: bool = Field(
        default=False,
        description="True: the criteria are not yet established (interview incomplete, person "
        "in crisis); the person is recorded as a presumed victim (`victim.presumed`), gets the "
        "urgent referrals at once, and `screening.decide` decides later",
    )
    # The data standard (HTCDS): optional codes for statistics; none is personal data.
    gender: Gender | None = Field(
        default=None, description="Gender beyond sex, or unknown (HTCDS); None: as `sex`"
    )
    recruitment_methods: frozenset[RecruitmentMethod] = frozenset()
    online_platforms: frozenset[OnlinePlatform] = Field(
        default=frozenset(),
        description="Recruited online: where; needs `internet` in recruitment_methods",
    )
    methods_of_control: frozenset[ControlMethod] = Field(
        default=frozenset(), description="Beyond criteria.means, which are recorded too"
    )
    labour_industries: frozenset[LabourIndustry] = frozenset()
    sexual_exploitation_types: frozenset[SexualExploitationType] = frozenset()

    @field_validator("online_platforms")
    @classmethod
    def _online_is_internet(
        cls, value: frozenset[OnlinePlatform], info: ValidationInfo
    ) -> frozenset[OnlinePlatform]:
        # Field order: recruitment_methods is validated first (absent if it was invalid).
        methods = info.data.get("recruitment_methods", frozenset())
        if value and RecruitmentMethod.INTERNET not in methods:
            raise ValueError("online platforms need internet among the recruitment methods")
        return value


class ScreeningInterview(ScreeningFacts):
    """A screening interview as the identifying agency holds it, personal data in clear.
    It never travels like this: `AgencyClient` seals `personal_data` to the hub's intake key
    and sends a `SubmitScreening`."""

    NAME: ClassVar[str] = "screening.submit"

    personal_data: PersonalData

    @model_validator(mode="after")
    def _age_is_known(self) -> ScreeningInterview:
        if self.age is None and self.personal_data.date_of_birth is None:
            raise ValueError("give age or personal_data.date_of_birth")
        dob = self.personal_data.date_of_birth
        if dob is not None and dob > self.interviewed_on:
            raise ValueError("personal_data.date_of_birth is after interviewed_on")
        return self

    def age_at_interview(self) -> int:
        dob = self.personal_data.date_of_birth
        if dob is None:
            assert self.age is not None  # guaranteed by the validator
            return self.age
        day = self.interviewed_on
        return day.year - dob.year - ((day.month, day.day) < (dob.month, dob.day))


class SubmitScreening(ScreeningFacts):
    """A screening interview by an identifying agency (Resolution No. 493, SOP on screening,
    identification and referral). `personal_data` is the JSON of `PersonalData` sealed to the
    hub's intake key (`contracts.public_key_sealing`, info `nrm-intake/1|command_id|agency_id`;
    the key is answered on `nrm.ctl.intake.key`)."""

    NAME: ClassVar[str] = "screening.submit"
    VERSION: ClassVar[int] = 2

    personal_data: SealedToKey = Field(description="PersonalData JSON sealed to the intake key")


class AcceptReferral(Command):
    NAME: ClassVar[str] = "referral.accept"

    referral_id: CanonicalUuid


class DeclineReferral(Command):
    NAME: ClassVar[str] = "referral.decline"

    referral_id: CanonicalUuid
    reason: DeclineReason


class DeliveredItem(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    service: Service
    quantity: StrictInt = Field(ge=1, le=10_000)
    unit: DeliveryUnit


class CompleteReferral(Command):
    NAME: ClassVar[str] = "referral.complete"

    referral_id: CanonicalUuid
    delivered: tuple[DeliveredItem, ...] = Field(min_length=1, max_length=50)


class RevokeReferral(Command):
    NAME: ClassVar[str] = "referral.revoke"

    referral_id: CanonicalUuid
    reason: RevokeReason


class DeliverService(Command):
    """The provider of an accepted referral records service delivered as it happens; the
    referral stays accepted (close it with `referral.complete`)."""

    NAME: ClassVar[str] = "referral.deliver"

    referral_id: CanonicalUuid
    delivered: tuple[DeliveredItem, ...] = Field(min_length=1, max_length=50)


class ReassignReferral(Command):
    """The coordinating body moves a referral to another provider: the referral is revoked
    (reason reassigned) and its need referred to `provider_id`, or, if none is named, to the
    nearest provider that has not declined the need."""

    NAME: ClassVar[str] = "referral.reassign"

    referral_id: CanonicalUuid
    provider_id: AgencyId | None = Field(default=None, description="None: the hub chooses")
    reason: ReassignReason


# --- The case plan: needs (referral) -----------------------------------------------------
# Sent by the case's owner or the coordinating body. Ids and codes only.


class AddNeed(Command):
    """Put a need on the case plan and refer it at once: to `provider_id`, or (none named) to
    the nearest provider of the service; recorded unmet when nobody offers it."""

    NAME: ClassVar[str] = "need.add"

    case_id: CanonicalUuid
    service: Service
    provider_id: AgencyId | None = Field(default=None, description="None: the hub chooses")


class RemoveNeed(Command):
    """Take a need off the case plan; refused while a referral of it is active."""

    NAME: ClassVar[str] = "need.remove"

    case_id: CanonicalUuid
    service: Service
    reason: NeedRemovalReason


class ReferNeed(Command):
    """Refer an open or unmet need again: to `provider_id`, or (none named) to the nearest
    provider that has not declined this need."""

    NAME: ClassVar[str] = "need.refer"

    case_id: CanonicalUuid
    service: Service
    provider_id: AgencyId | None = Field(default=None, description="None: the hub chooses")


class RegisterShelter(Command):
    """Registers (or re-registers, with new capacity) a shelter run by `agency_id`."""

    NAME: ClassVar[str] = "shelter.register"

    capacity: dict[ShelterCategory, Annotated[StrictInt, Field(ge=0, le=10_000)]] = Field(
        min_length=1, description="Beds per category the shelter takes"
    )


class DischargeFromShelter(Command):
    NAME: ClassVar[str] = "shelter.discharge"

    referral_id: CanonicalUuid = Field(description="The referral the person was admitted on")
    reason: DischargeReason


class RecordConsent(Command):
    """A new or changed consent of the person (replaces the one in force)."""

    NAME: ClassVar[str] = "consent.record"

    case_id: CanonicalUuid
    given_on: dt.date
    consent: Consent


class WithdrawConsent(Command):
    """The person withdrew consent: no further release of their personal data."""

    NAME: ClassVar[str] = "consent.withdraw"

    case_id: CanonicalUuid


class EraseCase(Command):
    """Crypto-shred a case (retention ended, erasure request): its data key is destroyed."""

    NAME: ClassVar[str] = "case.erase"

    case_id: CanonicalUuid
    reason: ErasureReason


# --- Case lifecycle: ownership, transfer, closure (identifier) -----------------------------
# The identifying agency owns a case from identification; ownership moves only when the
# receiving agency accepts a transfer. Ids and codes only: nothing here is personal data.


class RequestCaseTransfer(Command):
    """The owner (or the coordinating body) asks `to_agency` to take over the case. The owner
    keeps it until `to_agency` accepts; one pending transfer at a time."""

    NAME: ClassVar[str] = "case.transfer_request"

    case_id: CanonicalUuid
    to_agency: AgencyId = Field(description="The registry agency asked to take the case over")
    reason: TransferReason


class AcceptCaseTransfer(Command):
    """The agency named in the pending transfer takes the case over: it becomes the owner."""

    NAME: ClassVar[str] = "case.transfer_accept"

    case_id: CanonicalUuid


class DeclineCaseTransfer(Command):
    """The agency named in the pending transfer declines it: the owner keeps the case."""

    NAME: ClassVar[str] = "case.transfer_decline"

    case_id: CanonicalUuid
    reason: TransferDeclineReason


class CloseCase(Command):
    """The owner (or the coordinating body) closes the case. Refused while a referral of
    the case is active, unless every active referral is named in `revoke_referrals`: then
    the case closes and the hub revokes those (reason case_closed)."""

    NAME: ClassVar[str] = "case.close"

    case_id: CanonicalUuid
    reason: ClosureReason
    revoke_referrals: tuple[CanonicalUuid, ...] = Field(
        default=(), max_length=50, description="Active referrals to revoke with the closure"
    )


class ReopenCase(Command):
    """The owner (or the coordinating body) reopens a closed case."""

    NAME: ClassVar[str] = "case.reopen"

    case_id: CanonicalUuid
    reason: ReopenReason


# --- Follow-ups (identifier, on the case) ---------------------------------------------------


class ScheduleFollowUp(Command):
    """Schedule a follow-up of the person by `due_on` (today or later). Sent by the case's
    owner, the coordinating body, or a provider with an accepted or completed referral of the
    case. The follow-up id is derived from `command_id`. Not recorded by its due date, it is
    escalated once to the coordinating body."""

    NAME: ClassVar[str] = "followup.schedule"

    case_id: CanonicalUuid
    due_on: dt.date
    purpose: FollowUpPurpose


class RecordFollowUp(Command):
    """Record the outcome of a scheduled follow-up: that closes it. Sent by the agency that
    scheduled it, the case's owner or the coordinating body."""

    NAME: ClassVar[str] = "followup.record"

    case_id: CanonicalUuid
    followup_id: CanonicalUuid
    outcome: FollowUpOutcome


# --- Presumed victims and review of a non-identification (identifier) ---------------------


class DecideScreening(Command):
    """The identification decision on a presumed victim's case, by its owner (the identifying
    agency until a transfer) or the coordinating body: `victim.identified` or
    `victim.not_identified` on the same case, the profile and sealed personal data as recorded
    at the presumption, with these criteria answers."""

    NAME: ClassVar[str] = "screening.decide"

    case_id: CanonicalUuid
    criteria: CriteriaAnswers
    forms_of_exploitation: frozenset[FormOfExploitation] | None = Field(
        default=None, description="None: as recorded at the presumption"
    )
    needs: frozenset[Service] | None = Field(
        default=None, description="None: as recorded at the presumption"
    )


class RequestIdentificationReview(Command):
    """A representative of the person (an NGO or the ombudsperson) asks that a
    non-identification be reviewed. One open review per case at a time."""

    NAME: ClassVar[str] = "identification.review_request"

    case_id: CanonicalUuid
    grounds: ReviewGrounds


class AssignIdentificationReview(Command):
    """The coordinating body names the agency that decides a review (one that may identify,
    other than the agency whose decision is reviewed and the requester)."""

    NAME: ClassVar[str] = "identification.review_assign"

    case_id: CanonicalUuid
    review_id: CanonicalUuid
    to_agency: AgencyId


class DecideIdentificationReview(Command):
    """The coordinating body (or the agency it assigned) decides an open review. Overturned:
    `criteria` must meet the identification criteria, and the person is identified on the
    same case (`needs`, `forms_of_exploitation`: what the review found)."""

    NAME: ClassVar[str] = "identification.review_decide"

    case_id: CanonicalUuid
    review_id: CanonicalUuid
    outcome: ReviewOutcome
    criteria: CriteriaAnswers | None = Field(
        default=None, description="Required when overturned, not given when upheld"
    )
    forms_of_exploitation: frozenset[FormOfExploitation] | None = Field(
        default=None, description="Overturned only; None: as recorded at the screening"
    )
    needs: frozenset[Service] = Field(
        default=frozenset(), description="Overturned only: the services to refer"
    )


class RegisterAgencyKey(Command):
    """An agency's public key for receiving field keys (X25519, base64 of the raw 32 bytes),
    registered by the coordinating body (`agency_id`) after it verified the key with the agency
    out of band: an agency cannot register a key itself, so nobody can swap in their own key
    for another agency's. Registering again replaces the key in force."""

    NAME: ClassVar[str] = "agency.register_key"

    for_agency: AgencyId = Field(description="The agency whose key this is")
    public_key: str = Field(min_length=40, max_length=64)


class RequestAccess(Command):
    """Ask key custody for the keys of some personal-data fields of a case. Granted only to an
    entitled agency; the reply carries the field keys sealed to the agency's registered key.
    `command_id` is the request id."""

    NAME: ClassVar[str] = "access.request"

    case_id: CanonicalUuid
    purpose: DataPurpose
    fields: frozenset[PersonalField] = Field(
        default=frozenset(), description="Empty: every field the agency is entitled to"
    )


class RequestCrossBorderReferral(Command):
    """Refer a case to a partner country's hub (repatriation, return assistance, services
    there, case information for an investigation). Sent by the identifying agency or the
    coordinating body. Needs a consent in force naming the destination country and the
    purpose, and the destination on this hub's allow-list; only the minimal dataset for the
    purpose leaves, sealed to the destination. A refusal is recorded and answered
    `cross_border.refused`; nothing leaves."""

    NAME: ClassVar[str] = "referral.cross_border"

    case_id: CanonicalUuid
    destination: CountryCode = Field(description="ISO 3166-1 alpha-2 of the partner country")
    purpose: DataPurpose
    service: Service = Field(description="What the person needs there, e.g. repatriation")


# --- Victim-status attestations (custody) --------------------------------------------------
# docs/ATTESTATION.md. The credential the hub signs carries no name and no document number.


class IssueAttestation(Command):
    """The case owner (or the coordinating body) asks the hub to sign a victim-status
    attestation for an identified victim, with the person's consent: a consent in force must
    cover the purpose `attestation`. The reply (`attestation.credential`) carries the
    credential text; `nrm attest qr` prints it as a QR code. A retry answers the same
    credential."""

    NAME: ClassVar[str] = "attestation.issue"

    case_id: CanonicalUuid
    valid_days: StrictInt = Field(
        default=365, ge=1, le=730, description="Days the attestation is valid from issuance"
    )


class RevokeAttestation(Command):
    """The case owner (or the coordinating body) revokes an attestation: its bit in the hub's
    status list is set, and every verification with a status list published since fails."""

    NAME: ClassVar[str] = "attestation.revoke"

    attestation_id: CanonicalUuid
    reason: AttestationRevocationReason


class CheckAttestation(Command):
    """Any agency asks the hub, online, whether an attestation is in force: the answer
    (`attestation.status`) is recorded as `attestation.checked`, with who asked, so the
    audit log shows every online check. Offline checks (`nrm attest verify`) need no hub."""

    NAME: ClassVar[str] = "attestation.check"

    attestation_id: CanonicalUuid = Field(description="The credential's jti")


# --- Criminal proceedings (identifier, aggregate `proceeding`) ------------------------------
# Ids, codes and dates only: a proceeding names the cases it concerns (the victims) by case id,
# never a person, a defendant or a court file number. docs/ARCHITECTURE.md "Criminal
# proceedings" says who may record what.

CaseIds = Annotated[
    frozenset[CanonicalUuid],
    Field(min_length=1, max_length=50, description="The cases (victims) the proceeding concerns"),
]


class FileComplaint(Command):
    """A criminal complaint was filed: by an NGO or the ombudsperson on the victim's behalf,
    or received by the prosecution or internal affairs. Opens a proceeding whose id is derived
    from `command_id` (the reply's `aggregate_id`)."""

    NAME: ClassVar[str] = "proceeding.file_complaint"

    case_ids: CaseIds
    filed_on: dt.date


class OpenInvestigation(Command):
    """The prosecution or internal affairs opened a criminal investigation under `article`:
    on a proceeding opened by a complaint (`proceeding_id`), or, without one, opening a new
    proceeding whose id is derived from `command_id`. `case_ids`: the cases it concerns (a new
    proceeding needs at least one; on an existing one, further cases to link)."""

    NAME: ClassVar[str] = "proceeding.open_investigation"

    proceeding_id: CanonicalUuid | None = Field(
        default=None, description="None: a new proceeding (no complaint recorded)"
    )
    case_ids: frozenset[CanonicalUuid] = Field(default=frozenset(), max_length=50)
    article: CriminalArticle
    opened_on: dt.date


class BringCharges(Command):
    """The prosecution or internal affairs brought charges under `article` against
    `defendants` persons (a count, never who): the case goes to court."""

    NAME: ClassVar[str] = "proceeding.bring_charges"

    proceeding_id: CanonicalUuid
    article: CriminalArticle
    defendants: StrictInt = Field(default=1, ge=1, le=100)
    charged_on: dt.date


class RecordCourtDecision(Command):
    """The prosecution records the court's decision on the charges. `article`: the article
    of the decision (None: the one charged; required, and different, when `reclassified`).
    `sentence`: the band of the sentence of a conviction; `none` for an acquittal or a
    dismissal."""

    NAME: ClassVar[str] = "proceeding.record_decision"

    proceeding_id: CanonicalUuid
    outcome: CourtOutcome
    article: CriminalArticle | None = Field(default=None, description="None: as charged")
    sentence: SentenceBand = SentenceBand.NONE
    decided_on: dt.date


class RecordVictimParticipation(Command):
    """The prosecution or internal affairs records how a victim (one of the proceeding's
    cases) took part: testified in person or by video, protection measures, a civil claim."""

    NAME: ClassVar[str] = "proceeding.record_participation"

    proceeding_id: CanonicalUuid
    case_id: CanonicalUuid
    participation: frozenset[VictimParticipation] = Field(min_length=1)
    recorded_on: dt.date


ALL_COMMANDS: tuple[type[Command], ...] = (
    SubmitScreening,
    AcceptReferral,
    DeclineReferral,
    CompleteReferral,
    RevokeReferral,
    ReassignReferral,
    DeliverService,
    AddNeed,
    RemoveNeed,
    ReferNeed,
    RegisterShelter,
    DischargeFromShelter,
    RecordConsent,
    WithdrawConsent,
    EraseCase,
    # case lifecycle
    RequestCaseTransfer,
    AcceptCaseTransfer,
    DeclineCaseTransfer,
    CloseCase,
    ReopenCase,
    # end case lifecycle
    # follow-ups
    ScheduleFollowUp,
    RecordFollowUp,
    # end follow-ups
    # presumed victims and review of a non-identification
    DecideScreening,
    RequestIdentificationReview,
    AssignIdentificationReview,
    DecideIdentificationReview,
    # end presumed victims and review
    RegisterAgencyKey,
    RequestAccess,
    RequestCrossBorderReferral,
    # attestations
    IssueAttestation,
    RevokeAttestation,
    CheckAttestation,
    # end attestations
    # criminal proceedings
    FileComplaint,
    OpenInvestigation,
    BringCharges,
    RecordCourtDecision,
    RecordVictimParticipation,
    # end criminal proceedings
)
