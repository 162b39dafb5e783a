"""Controlled vocabularies shared by commands and events.

These values are clear (never sealed): they carry routing and statistics and identify nobody.
Adding a member is a compatible change; renaming or removing one needs a new schema version.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any
from uuid import UUID

from pydantic import BeforeValidator, StringConstraints, WithJsonSchema


class Region(StrEnum):
    """Where a person was identified or an agency works: the seven oblasts, the two cities of
    republican significance, or abroad (consulates, overseas missions); and, for the partner
    countries' hubs (cross-border referral), the regions their registries use."""

    BISHKEK_CITY = "bishkek_city"
    OSH_CITY = "osh_city"
    BATKEN = "batken"
    CHUY = "chuy"
    ISSYK_KUL = "issyk_kul"
    JALAL_ABAD = "jalal_abad"
    NARYN = "naryn"
    OSH_REGION = "osh_region"
    TALAS = "talas"
    ABROAD = "abroad"
    # Kazakhstan (kz hub)
    KZ_ASTANA_CITY = "kz_astana_city"
    KZ_ALMATY_CITY = "kz_almaty_city"
    KZ_SHYMKENT_CITY = "kz_shymkent_city"
    KZ_TURKISTAN = "kz_turkistan"
    # Uzbekistan (uz hub)
    UZ_TASHKENT_CITY = "uz_tashkent_city"
    UZ_ANDIJAN = "uz_andijan"
    UZ_FERGANA = "uz_fergana"
    UZ_SAMARKAND = "uz_samarkand"


# A partner country's regions carry its code as a prefix (`kz_`, `uz_`); the others are the
# Kyrgyz Republic's, where the NRM the hub was built for runs; `abroad` is nobody's.
PARTNER_REGION_PREFIXES = ("kz", "uz")


def region_country(region: str) -> str | None:
    """The country (ISO 3166-1 alpha-2, lower case) a region belongs to; None for abroad."""
    if region == Region.ABROAD:
        return None
    prefix = region.split("_", 1)[0]
    return prefix if prefix in PARTNER_REGION_PREFIXES else "kg"


class Sex(StrEnum):
    """Sex as the shelter beds and referrals need it (women's / men's beds). Gender beyond
    it, or not known, is the separate optional `Gender`."""

    FEMALE = "female"
    MALE = "male"


class Gender(StrEnum):
    """HTCDS `prs_Gender`: recorded beside `Sex` when the person's gender is not simply their
    sex or is not known; not given, the statistics use the sex."""

    FEMALE = "female"
    MALE = "male"
    TRANSGENDER_OR_NON_CONFORMING = "transgender_or_non_conforming"
    UNKNOWN = "unknown"


class Sector(StrEnum):
    GOVERNMENT = "government"
    CIVIL_SOCIETY = "civil_society"


class AgencyKind(StrEnum):
    """Kinds of organisation taking part in the NRM (Counter-Trafficking Law, art. 6)."""

    PROSECUTION = "prosecution"
    INTERNAL_AFFAIRS = "internal_affairs"
    FOREIGN_AFFAIRS = "foreign_affairs"
    CONSULATE = "consulate"
    NATIONAL_SECURITY = "national_security"
    BORDER_SERVICE = "border_service"
    CUSTOMS = "customs"
    LABOUR_INSPECTORATE = "labour_inspectorate"
    SOCIAL_DEVELOPMENT = "social_development"
    EDUCATION = "education"
    HEALTH = "health"
    MIGRATION = "migration"
    LOCAL_ADMINISTRATION = "local_administration"
    OMBUDSPERSON = "ombudsperson"
    COORDINATING_BODY = "coordinating_body"
    NGO = "ngo"
    INTERNATIONAL_ORGANISATION = "international_organisation"
    SERVICE_PROVIDER = "service_provider"


class Service(StrEnum):
    """Assistance a victim may need and a provider may offer; one referral per service."""

    SHELTER = "shelter"
    LEGAL_AID = "legal_aid"
    MEDICAL = "medical"
    PSYCHOLOGICAL = "psychological"
    SOCIAL_ASSISTANCE = "social_assistance"
    EMPLOYMENT = "employment"
    EDUCATION = "education"
    REPATRIATION = "repatriation"
    GUARDIANSHIP = "guardianship"


class Act(StrEnum):
    RECRUITMENT = "recruitment"
    TRANSPORTATION = "transportation"
    TRANSFER = "transfer"
    HARBOURING = "harbouring"
    RECEIPT = "receipt"


class Means(StrEnum):
    THREAT = "threat"
    FORCE = "force"
    COERCION = "coercion"
    ABDUCTION = "abduction"
    FRAUD = "fraud"
    DECEPTION = "deception"
    ABUSE_OF_POWER = "abuse_of_power"
    ABUSE_OF_VULNERABILITY = "abuse_of_vulnerability"
    PAYMENT_TO_CONTROLLER = "payment_to_controller"
    DEBT_BONDAGE = "debt_bondage"
    DOCUMENT_CONFISCATION = "document_confiscation"


class Purpose(StrEnum):
    SEXUAL_EXPLOITATION = "sexual_exploitation"
    FORCED_LABOUR = "forced_labour"
    SLAVERY_OR_SERVITUDE = "slavery_or_servitude"
    FORCED_CRIMINALITY = "forced_criminality"
    FORCED_BEGGING = "forced_begging"
    FORCED_MARRIAGE = "forced_marriage"
    ORGAN_REMOVAL = "organ_removal"
    ARMED_CONFLICT = "armed_conflict"


class FormOfExploitation(StrEnum):
    """What the person was subjected to, for statistics (seed 001 TRAFFICKING PROFILE)."""

    SEX_TRAFFICKING = "sex_trafficking"
    FORCED_LABOUR = "forced_labour"
    DOMESTIC_SERVITUDE = "domestic_servitude"
    FORCED_CRIMINALITY = "forced_criminality"
    FORCED_BEGGING = "forced_begging"
    FORCED_MARRIAGE = "forced_marriage"
    ORGAN_REMOVAL = "organ_removal"
    ARMED_CONFLICT = "armed_conflict"
    ONLINE_SEXUAL_EXPLOITATION = "online_sexual_exploitation"


class Vulnerability(StrEnum):
    DISABILITY = "disability"
    PREGNANCY = "pregnancy"
    SUBSTANCE_DEPENDENCE = "substance_dependence"
    NO_DOCUMENTS = "no_documents"
    FOREIGN_NATIONAL = "foreign_national"
    UNACCOMPANIED_CHILD = "unaccompanied_child"
    HEALTH_CONDITION = "health_condition"
    LGBTQI = "lgbtqi"
    DEBT = "debt"
    DISPLACEMENT = "displacement"
    # The groups the seeds name as vulnerable (TIP report 2024, Kyrgyz Republic).
    RETURNED_MIGRANT = "returned_migrant"
    BANNED_FROM_REENTRY = "banned_from_reentry"  # e.g. on a re-entry ban to Russia
    IN_COMMERCIAL_SEX = "in_commercial_sex"
    CHILD_IN_STATE_CARE = "child_in_state_care"
    CHILD_ON_THE_STREET = "child_on_the_street"
    FEMALE_VICTIM_OF_CRIME = "female_victim_of_crime"


# --- The data standard (HTCDS, IOM): how the person was recruited, controlled, exploited ---
# Codes only, every one optional on a screening (docs/STATISTICS.md "HTCDS export").


class RecruitmentMethod(StrEnum):
    """HTCDS `vic_MethodOfRecruitment`."""

    ABDUCTION = "abduction"
    EDUCATIONAL_FACILITY = "educational_facility"
    FAMILIAL = "familial"
    INTERNET = "internet"  # social media, online advertisement: see `OnlinePlatform`
    MARRIAGE_BROKER = "marriage_broker"
    INTIMATE_PARTNER = "intimate_partner"  # intimate partner or marriage proposition
    JOB_OFFER = "job_offer"
    POSING_AS_BENEFACTOR = "posing_as_benefactor"
    PUBLIC_AREA = "public_area"
    OFFER_OF_ACCOMMODATION = "offer_of_accommodation"
    SHELTER = "shelter"
    SMUGGLING = "smuggling"  # smuggling, ransom
    WORK = "work"
    OTHER = "other"
    UNKNOWN = "unknown"


class OnlinePlatform(StrEnum):
    """Where a person recruited online was recruited (HTCDS `vic_RecruitmentWebsitesAndApps`,
    with the networks used in the region, and kinds of site where no app is named)."""

    FACEBOOK = "facebook"
    INSTAGRAM = "instagram"
    WHATSAPP = "whatsapp"
    TELEGRAM = "telegram"
    FACEBOOK_MESSENGER = "facebook_messenger"
    VIBER = "viber"
    SNAPCHAT = "snapchat"
    TIKTOK = "tiktok"
    TWITTER = "twitter"
    WECHAT = "wechat"
    ODNOKLASSNIKI = "odnoklassniki"
    VKONTAKTE = "vkontakte"
    JOB_SITE = "job_site"
    DATING_SITE = "dating_site"
    CLASSIFIED_ADS = "classified_ads"
    OTHER = "other"


class ControlMethod(StrEnum):
    """HTCDS `vic_MethodsOfControl`, beyond the screening's `means` answers (which are kept
    as data too and exported mapped to these)."""

    DEBT_BONDAGE = "debt_bondage"
    TAKES_EARNINGS = "takes_earnings"
    RESTRICTS_FINANCIAL_ACCESS = "restricts_financial_access"
    THREATS = "threats"
    PSYCHOLOGICAL_ABUSE = "psychological_abuse"
    PHYSICAL_ABUSE = "physical_abuse"
    SEXUAL_ABUSE = "sexual_abuse"
    FALSE_PROMISES = "false_promises"
    PSYCHOACTIVE_SUBSTANCES = "psychoactive_substances"
    RESTRICTS_MOVEMENT = "restricts_movement"
    RESTRICTS_MEDICAL_CARE = "restricts_medical_care"
    EXCESSIVE_WORKING_HOURS = "excessive_working_hours"
    USES_CHILDREN = "uses_children"
    THREAT_OF_LAW_ENFORCEMENT = "threat_of_law_enforcement"
    WITHHOLDS_NECESSITIES = "withholds_necessities"
    WITHHOLDS_DOCUMENTS = "withholds_documents"
    OTHER = "other"


class LabourIndustry(StrEnum):
    """Where a person was exploited for labour (HTCDS `vic_TypeOfLabourExploitation` and
    `vic_LabourIndustry`, ISIC sections)."""

    AGRICULTURE = "agriculture"
    CONSTRUCTION = "construction"
    TEXTILES = "textiles"  # garment and textile workshops
    OTHER_MANUFACTURING = "other_manufacturing"
    DOMESTIC_WORK = "domestic_work"
    CHILDCARE = "childcare"  # in a household
    HOSPITALITY = "hospitality"  # hotels, restaurants, cafes
    RETAIL_AND_MARKETS = "retail_and_markets"
    TRANSPORT = "transport"
    MINING = "mining"
    BEGGING = "begging"
    ILLICIT_ACTIVITIES = "illicit_activities"
    OTHER_SERVICES = "other_services"
    OTHER = "other"


class SexualExploitationType(StrEnum):
    """HTCDS `vic_TypeOfSexExploitation`."""

    PROSTITUTION = "prostitution"
    PORNOGRAPHY = "pornography"
    REMOTE_INTERACTIVE_SERVICES = "remote_interactive_services"  # e.g. webcam
    PRIVATE_SEXUAL_SERVICES = "private_sexual_services"


class AgeBand(StrEnum):
    UNDER_12 = "0-11"
    FROM_12_TO_17 = "12-17"
    FROM_18_TO_24 = "18-24"
    FROM_25_TO_34 = "25-34"
    FROM_35_TO_49 = "35-49"
    FROM_50 = "50+"


class ShelterCategory(StrEnum):
    """Shelters take women, men or children; one shelter may take several."""

    WOMEN = "women"
    MEN = "men"
    CHILDREN = "children"


class PersonalField(StrEnum):
    """Names of the personal-data fields; values are only ever carried sealed in events."""

    FULL_NAME = "full_name"
    DATE_OF_BIRTH = "date_of_birth"
    DOCUMENT_NUMBER = "document_number"
    PHONE = "phone"
    ADDRESS = "address"
    CURRENT_LOCATION = "current_location"
    NARRATIVE = "narrative"


class DataPurpose(StrEnum):
    """Why personal data is processed or released: what a consent covers and what a key
    release request must name (confidentiality SOP)."""

    ASSISTANCE = "assistance"  # care and services under a referral
    INVESTIGATION = "investigation"  # law enforcement, criminal proceedings
    REPATRIATION = "repatriation"  # safe return and cross-border referral
    STATISTICS = "statistics"  # non-identifying reporting and publication
    ATTESTATION = "attestation"  # a signed victim-status attestation the person carries


class LegalBasis(StrEnum):
    """On what ground the consent was given or the processing rests."""

    INFORMED_CONSENT = "informed_consent"
    GUARDIAN_CONSENT = "guardian_consent"  # a child's legal representative
    VITAL_INTERESTS = "vital_interests"
    LEGAL_OBLIGATION = "legal_obligation"


class ErasureReason(StrEnum):
    RETENTION_ENDED = "retention_ended"
    ERASURE_REQUEST = "erasure_request"
    RECORDED_IN_ERROR = "recorded_in_error"
    # A case received from abroad whose origin erased it (a cross-border erasure notice).
    ERASED_AT_ORIGIN = "erased_at_origin"


# --- Case lifecycle: ownership, transfer, closure ------------------------------------------


class CaseStatus(StrEnum):
    """HTCDS `cas_Status`: an open case is `active`, or `follow_up` while a scheduled
    follow-up is not yet recorded; a closed one is `closed`, or `closed_referred` when it
    was closed because the person was referred on abroad (`transferred_abroad`)."""

    ACTIVE = "active"
    FOLLOW_UP = "follow_up"
    CLOSED = "closed"
    CLOSED_REFERRED = "closed_referred"

    @property
    def is_closed(self) -> bool:
        return self in (CaseStatus.CLOSED, CaseStatus.CLOSED_REFERRED)


class TransferReason(StrEnum):
    """Why the owner hands a case to another agency."""

    PERSON_RELOCATED = "person_relocated"
    SPECIALISED_ASSISTANCE = "specialised_assistance"
    CONFLICT_OF_INTEREST = "conflict_of_interest"
    CAPACITY = "capacity"
    OTHER = "other"


class TransferDeclineReason(StrEnum):
    OUTSIDE_MANDATE = "outside_mandate"
    NO_CAPACITY = "no_capacity"
    WRONG_REGION = "wrong_region"
    OTHER = "other"


class ClosureReason(StrEnum):
    """HTCDS-style reasons a case is closed."""

    REINTEGRATED = "reintegrated"
    REPATRIATED = "repatriated"
    TRANSFERRED_ABROAD = "transferred_abroad"
    DECLINED_FURTHER_ASSISTANCE = "declined_further_assistance"
    LOST_CONTACT = "lost_contact"
    DECEASED = "deceased"
    OTHER = "other"


class ReopenReason(StrEnum):
    NEW_NEEDS = "new_needs"
    RE_TRAFFICKED = "re_trafficked"
    CONTACT_RESUMED = "contact_resumed"
    CLOSED_IN_ERROR = "closed_in_error"
    OTHER = "other"


# --- Follow-ups (identifier, on the case) ---------------------------------------------------


class FollowUpPurpose(StrEnum):
    """Why a follow-up of the person is scheduled."""

    POST_DISCHARGE = "post_discharge"
    REINTEGRATION_CHECK = "reintegration_check"
    SAFETY_CHECK = "safety_check"
    OTHER = "other"


class FollowUpOutcome(StrEnum):
    """What the follow-up found (codes only: no notes, they would be personal data)."""

    IN_CONTACT_STABLE = "in_contact_stable"
    NEEDS_SUPPORT = "needs_support"
    NOT_REACHED = "not_reached"
    OTHER = "other"


# --- Presumed victims and review of a non-identification ----------------------------------


class ReviewGrounds(StrEnum):
    """Why a representative of the person (an NGO, the ombudsperson) asks that a
    non-identification be reviewed."""

    NEW_INFORMATION = "new_information"
    CRITERIA_MISAPPLIED = "criteria_misapplied"
    INTERVIEW_CONDITIONS = "interview_conditions"  # e.g. no interpreter, person in crisis
    OTHER = "other"


class ReviewOutcome(StrEnum):
    UPHELD = "upheld"  # the non-identification stands
    OVERTURNED = "overturned"  # the person is identified as a victim


class AccessRefusal(StrEnum):
    """Why a request for a case's data key was refused (never says more than the code)."""

    UNKNOWN_CASE = "unknown_case"
    CASE_ERASED = "case_erased"
    NO_REGISTERED_KEY = "no_registered_key"
    NOT_A_RECIPIENT = "not_a_recipient"
    REFERRAL_NOT_ACTIVE = "referral_not_active"
    NO_CONSENT = "no_consent"
    CONSENT_WITHDRAWN = "consent_withdrawn"
    CONSENT_EXPIRED = "consent_expired"
    GUARDIAN_CONSENT_REQUIRED = "guardian_consent_required"  # a child on informed consent
    PURPOSE_NOT_COVERED = "purpose_not_covered"
    RECIPIENT_NOT_COVERED = "recipient_not_covered"
    FIELDS_NOT_COVERED = "fields_not_covered"


class TransferRefusal(StrEnum):
    """Why a cross-border referral was not sent (recorded, audited; nothing left the hub)."""

    UNKNOWN_CASE = "unknown_case"
    NOT_IDENTIFIED = "not_identified"
    CASE_ERASED = "case_erased"
    NOT_AUTHORISED = "not_authorised"
    NOT_ALLOW_LISTED = "not_allow_listed"
    PURPOSE_NOT_ALLOWED = "purpose_not_allowed"
    NO_CONSENT = "no_consent"
    CONSENT_WITHDRAWN = "consent_withdrawn"
    CONSENT_EXPIRED = "consent_expired"
    GUARDIAN_CONSENT_REQUIRED = "guardian_consent_required"  # a child on informed consent
    PURPOSE_NOT_COVERED = "purpose_not_covered"
    COUNTRY_NOT_COVERED = "country_not_covered"


# --- Victim-status attestations (custody) --------------------------------------------------


class VictimStatus(StrEnum):
    """What an attestation says of the person (docs/ATTESTATION.md)."""

    IDENTIFIED = "identified"  # identified under the NRM (victim.identified)
    PRESUMED = "presumed"  # presumed victim (victim.presumed), until the decision is due


class AttestationRevocationReason(StrEnum):
    """Why an attestation was revoked: its bit in the hub's status list is set."""

    NOT_A_TRAFFICKING_CASE = "not_a_trafficking_case"
    CASE_ERASED = "case_erased"  # automatic on case.erased
    CONSENT_WITHDRAWN = "consent_withdrawn"
    ISSUED_IN_ERROR = "issued_in_error"


class AttestationCheckResult(StrEnum):
    """What the hub answered to an online `attestation.check` (recorded, audited)."""

    VALID = "valid"
    REVOKED = "revoked"
    EXPIRED = "expired"


# --- Criminal proceedings (identifier, aggregate `proceeding`) ------------------------------


class CriminalArticle(StrEnum):
    """The criminal code article a proceeding is under, as the investigating body records it
    (166: trafficking in persons; 159: engaging a person in prostitution by force, threat or
    fraud; 167 and 170 as the prosecution reports them; anything else is `other`). Codes only:
    the charge's wording stays in the case file."""

    ART_166 = "art_166"
    ART_167 = "art_167"
    ART_170 = "art_170"
    ART_159 = "art_159"
    OTHER = "other"


class CourtOutcome(StrEnum):
    """What the court decided on the charges."""

    CONVICTION = "conviction"
    ACQUITTAL = "acquittal"
    DISMISSAL = "dismissal"
    RECLASSIFIED = "reclassified"  # convicted under another article than the one charged


class SentenceBand(StrEnum):
    """The sentence of a conviction, banded (the exact term is in the court record)."""

    NONE = "none"  # no sentence: acquittal, dismissal, or a conviction without one
    FINE_OR_NON_CUSTODIAL = "fine_or_non_custodial"
    SUSPENDED = "suspended"
    UNDER_3_YEARS = "under_3_years"
    FROM_3_TO_8_YEARS = "3_to_8_years"
    OVER_8_YEARS = "over_8_years"


class VictimParticipation(StrEnum):
    """How the victim took part in the proceedings."""

    TESTIFIED = "testified"  # in person
    TESTIFIED_BY_VIDEO = "testified_by_video"
    PROTECTION_MEASURES = "protection_measures"  # the court or prosecution ordered protection
    CIVIL_CLAIM = "civil_claim"  # claimed compensation in the proceedings


class DeclineReason(StrEnum):
    NO_CAPACITY = "no_capacity"
    OUTSIDE_MANDATE = "outside_mandate"
    PERSON_UNREACHABLE = "person_unreachable"
    PERSON_REFUSED = "person_refused"
    CATEGORY_NOT_ACCEPTED = "category_not_accepted"
    SHELTER_NOT_REGISTERED = "shelter_not_registered"


class RevokeReason(StrEnum):
    PERSON_WITHDREW = "person_withdrew"
    NEED_MET_ELSEWHERE = "need_met_elsewhere"
    REFERRED_IN_ERROR = "referred_in_error"
    REASSIGNED = "reassigned"  # the coordinating body moved the need to another provider
    CASE_CLOSED = "case_closed"  # the owner closed the case naming this referral


class ReassignReason(StrEnum):
    """Why the coordinating body moves a referral to another provider (`referral.reassign`)."""

    PROVIDER_UNRESPONSIVE = "provider_unresponsive"
    WAITING_TOO_LONG = "waiting_too_long"
    PERSON_REQUEST = "person_request"
    CLOSER_PROVIDER = "closer_provider"


class EscalationCause(StrEnum):
    """Why a referral was escalated to the coordinating body."""

    NO_ANSWER = "no_answer"  # nobody answered before `respond_by`
    WAITLISTED_TOO_LONG = "waitlisted_too_long"  # on a waiting list past the set limit


# --- Unmet needs (oversight: nobody falls through the cracks) -------------------------------


class UnmetReason(StrEnum):
    """Why a need found no provider."""

    NO_PROVIDER = "no_provider"  # nobody in the registry offers it (for this person)
    ALL_DECLINED = "all_declined"  # every provider left declined it, not all for capacity
    NO_CAPACITY = "no_capacity"  # every provider that declined it had no room


class NeedRemovalReason(StrEnum):
    """Why a need was taken off the case plan (`need.remove`)."""

    NOT_NEEDED = "not_needed"
    DECLINED_BY_PERSON = "declined_by_person"


class DischargeReason(StrEnum):
    REHABILITATION_COMPLETED = "rehabilitation_completed"
    LEFT_VOLUNTARILY = "left_voluntarily"
    TRANSFERRED = "transferred"
    RETURNED_HOME = "returned_home"


class DeliveryUnit(StrEnum):
    SESSION = "session"
    CONSULTATION = "consultation"
    DAY = "day"
    ITEM = "item"


# ISO 3166-1 alpha-2; "XX" for stateless or unknown citizenship.
CountryCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
# Agency ids come from the registry: lowercase, digits and hyphens, no dots (they go in subjects).
AgencyId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")]


# A UUID in a command: 36-character lowercase hyphenated text only (not braced, not "urn:uuid:",
# not unhyphenated, not upper case) and not nil, so one id has one spelling everywhere.
# Events and replies keep plain UUID fields: they hold what the hub wrote, always canonical.
CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
NIL_UUID = "00000000-0000-0000-0000-000000000000"


def _canonical_uuid(value: Any) -> Any:
    if isinstance(value, UUID):  # built in Python (the agency client, the hub): not from JSON
        value = str(value)
    if not isinstance(value, str) or not CANONICAL_UUID.fullmatch(value) or value == NIL_UUID:
        raise ValueError("must be a UUID as 36 lowercase hex digits and hyphens, not nil")
    return value


CanonicalUuid = Annotated[
    UUID,
    BeforeValidator(_canonical_uuid),
    WithJsonSchema({"type": "string", "format": "uuid", "pattern": f"^{CANONICAL_UUID.pattern}$"}),
]


def age_band(age: int) -> AgeBand:
    """Band an age for clear fields: exact ages and birth dates stay sealed."""
    if age < 12:
        return AgeBand.UNDER_12
    if age < 18:
        return AgeBand.FROM_12_TO_17
    if age < 25:
        return AgeBand.FROM_18_TO_24
    if age < 35:
        return AgeBand.FROM_25_TO_34
    if age < 50:
        return AgeBand.FROM_35_TO_49
    return AgeBand.FROM_50
