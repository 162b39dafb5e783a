"""Who may read which personal data of a case (services/custody/domain.py), rule by rule,
and the blind index's normalisation."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from contracts.commands import Consent, RequestAccess
from contracts.events import (
    AccessGranted,
    AccessRefused,
    AgencyKeyRegistered,
    CaseErased,
    ConsentWithdrawn,
    Event,
    ReferralRequested,
    ReferralRevoked,
    VictimIdentified,
)
from contracts.sealed import seal
from contracts.vocabulary import (
    AccessRefusal,
    AgeBand,
    AgencyKind,
    CountryCode,
    DataPurpose,
    PersonalField,
    Region,
    RevokeReason,
    Sector,
    Service,
    Sex,
    ShelterCategory,
)
from services.agencies.registry import load_registry
from services.custody.domain import decide_access, fold_case_access
from services.identifier.blind_index import blind_index, normalised_name
from services.identifier.domain import consent_recorded

CASE = uuid.uuid4()
REFERRAL = uuid.uuid4()
NOW = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)
REGISTRY = load_registry()
IDENTIFIER, SHELTER, POLICE, STRANGER = (
    "kg-health-osh",
    "kg-ngo-osh-crisis-centre",
    "kg-mia-osh",
    "kg-ngo-bishkek-mens-shelter",
)
F = PersonalField
KEY = bytes(32)


def identified() -> VictimIdentified:
    sealed = {f: seal(KEY, str(CASE), f.value, 1, "x") for f in (F.FULL_NAME, F.PHONE, F.NARRATIVE)}
    citizenship: CountryCode = "KG"
    return VictimIdentified(
        case_id=CASE,
        agency_id=IDENTIFIER,
        agency_kind=AgencyKind.HEALTH,
        sector=Sector.GOVERNMENT,
        region=Region.OSH_CITY,
        interviewed_on=dt.date(2026, 11, 20),
        sex=Sex.FEMALE,
        age_band=AgeBand.FROM_25_TO_34,
        is_child=False,
        citizenship=citizenship,
        country_of_exploitation=None,
        forms_of_exploitation=(),
        vulnerabilities=(),
        personal_data=sealed,
        purposes=(),
        needs=(Service.SHELTER,),
        consent=Consent(),
    )


def consent(**changes: object) -> Event:
    return consent_recorded(
        CASE, uuid.uuid4(), IDENTIFIER, dt.date(2026, 11, 20), Consent.model_validate(changes)
    )


def referral() -> ReferralRequested:
    return ReferralRequested(
        referral_id=REFERRAL,
        case_id=CASE,
        service=Service.SHELTER,
        provider_id=SHELTER,
        referrer_id=IDENTIFIER,
        region=Region.OSH_CITY,
        sex=Sex.FEMALE,
        age_band=AgeBand.FROM_25_TO_34,
        is_child=False,
        placement_category=ShelterCategory.WOMEN,
        shared_fields=(F.FULL_NAME, F.DATE_OF_BIRTH, F.PHONE),
        requested_at=NOW,
        respond_by=NOW,
    )


def key(agency_id: str) -> AgencyKeyRegistered:
    return AgencyKeyRegistered(
        agency_id=agency_id, key_id="0" * 16, public_key="A" * 44, registered_by=agency_id
    )


def decide(
    events: list[Event],
    agency_id: str,
    purpose: DataPurpose = DataPurpose.ASSISTANCE,
    fields: frozenset[PersonalField] = frozenset(),
    registered: bool = True,
) -> AccessGranted | AccessRefused:
    request = RequestAccess(
        command_id=uuid.uuid4(), agency_id=agency_id, case_id=CASE, purpose=purpose, fields=fields
    )
    decision = decide_access(
        fold_case_access(events),
        REGISTRY.get(agency_id),
        key(agency_id) if registered else None,
        request,
        NOW,
    )
    assert isinstance(decision, AccessGranted | AccessRefused)
    return decision


BASE: list[Event] = [identified(), consent(), referral()]


def test_the_referred_provider_gets_its_referral_fields_less_what_was_withheld() -> None:
    granted = decide(BASE, SHELTER)
    assert isinstance(granted, AccessGranted)
    assert granted.fields == (F.FULL_NAME, F.PHONE)  # no birth date was collected
    assert granted.basis == f"referral:{REFERRAL}"
    withheld = decide([identified(), consent(withheld_fields={F.PHONE}), referral()], SHELTER)
    assert isinstance(withheld, AccessGranted) and withheld.fields == (F.FULL_NAME,)


def test_the_identifying_agency_gets_every_field_not_withheld() -> None:
    granted = decide(BASE, IDENTIFIER)
    assert isinstance(granted, AccessGranted) and granted.basis == "identifying_agency"
    assert set(granted.fields) == {F.FULL_NAME, F.PHONE, F.NARRATIVE}


@pytest.mark.parametrize(
    ("events", "agency", "purpose", "fields", "registered", "reason"),
    [
        ([], SHELTER, DataPurpose.ASSISTANCE, set(), True, AccessRefusal.UNKNOWN_CASE),
        (
            [*BASE, CaseErased(case_id=CASE, erased_by=IDENTIFIER, reason="erasure_request")],
            SHELTER,
            DataPurpose.ASSISTANCE,
            set(),
            True,
            AccessRefusal.CASE_ERASED,
        ),
        (
            BASE,
            "kg-no-such-agency",
            DataPurpose.ASSISTANCE,
            set(),
            True,
            AccessRefusal.NOT_A_RECIPIENT,
        ),
        (BASE, SHELTER, DataPurpose.ASSISTANCE, set(), False, AccessRefusal.NO_REGISTERED_KEY),
        (
            [identified(), referral()],
            SHELTER,
            DataPurpose.ASSISTANCE,
            set(),
            True,
            AccessRefusal.NO_CONSENT,
        ),
        (
            [*BASE, ConsentWithdrawn(case_id=CASE, withdrawn_by=IDENTIFIER)],
            SHELTER,
            DataPurpose.ASSISTANCE,
            set(),
            True,
            AccessRefusal.CONSENT_WITHDRAWN,
        ),
        (
            [identified(), consent(expires_at=NOW), referral()],
            SHELTER,
            DataPurpose.ASSISTANCE,
            set(),
            True,
            AccessRefusal.CONSENT_EXPIRED,
        ),
        (BASE, POLICE, DataPurpose.INVESTIGATION, set(), True, AccessRefusal.PURPOSE_NOT_COVERED),
        (BASE, STRANGER, DataPurpose.ASSISTANCE, set(), True, AccessRefusal.NOT_A_RECIPIENT),
        (
            [
                *BASE,
                ReferralRevoked(
                    referral_id=REFERRAL,
                    case_id=CASE,
                    revoked_by=IDENTIFIER,
                    reason=RevokeReason.PERSON_WITHDREW,
                ),
            ],
            SHELTER,
            DataPurpose.ASSISTANCE,
            set(),
            True,
            AccessRefusal.REFERRAL_NOT_ACTIVE,
        ),
        (
            BASE,
            SHELTER,
            DataPurpose.ASSISTANCE,
            {F.NARRATIVE},
            True,
            AccessRefusal.FIELDS_NOT_COVERED,
        ),
        # Consent for investigation covers police only when it names them, by kind or id.
        (
            [identified(), consent(purposes={"assistance", "investigation"})],
            POLICE,
            DataPurpose.INVESTIGATION,
            set(),
            True,
            AccessRefusal.RECIPIENT_NOT_COVERED,
        ),
        # Consent to an attestation lets the hub sign one; it never releases the data, not
        # even to an agency the consent names.
        (
            [identified(), consent(purposes={"attestation"}, recipients={SHELTER})],
            SHELTER,
            DataPurpose.ATTESTATION,
            set(),
            True,
            AccessRefusal.PURPOSE_NOT_COVERED,
        ),
        # Law enforcement never receives data for assistance, whatever the consent says.
        (
            [identified(), consent(recipient_kinds={"internal_affairs"})],
            POLICE,
            DataPurpose.ASSISTANCE,
            set(),
            True,
            AccessRefusal.PURPOSE_NOT_COVERED,
        ),
    ],
)
def test_each_refusal_names_its_reason(
    events: list[Event],
    agency: str,
    purpose: DataPurpose,
    fields: set[PersonalField],
    registered: bool,
    reason: AccessRefusal,
) -> None:
    decision = decide(events, agency, purpose, frozenset(fields), registered)
    assert isinstance(decision, AccessRefused)
    assert decision.reason is reason
    assert decision.agency_id == agency and decision.case_id == CASE


def test_police_with_consent_for_investigation_naming_them() -> None:
    by_kind = [
        identified(),
        consent(purposes={"investigation"}, recipient_kinds={"internal_affairs"}),
    ]
    by_id = [identified(), consent(purposes={"investigation"}, recipients={POLICE})]
    for events in (by_kind, by_id):
        granted = decide(events, POLICE, DataPurpose.INVESTIGATION)
        assert isinstance(granted, AccessGranted) and granted.basis == "consent"


def test_blind_index_ignores_case_accents_punctuation_and_word_order() -> None:
    assert normalised_name("Zarina  CANARYKYZY") == normalised_name("canarykyzy, zarina")
    assert normalised_name("Aigül Asanova") == normalised_name("aigul asanova")
    dob = dt.date(1992, 3, 4)
    secret = bytes(range(32))
    assert blind_index(secret, "Zarina Canarykyzy", dob) == blind_index(
        secret, "CANARYKYZY zarina", dob
    )
    assert blind_index(secret, "Zarina Canarykyzy", dob) != blind_index(
        secret, "Zarina Canarykyzy", dob + dt.timedelta(days=1)
    )
    assert blind_index(secret, "Zarina Canarykyzy", dob) != blind_index(
        bytes(32), "Zarina Canarykyzy", dob
    )
    assert "zarina" not in blind_index(secret, "Zarina Canarykyzy", dob)
