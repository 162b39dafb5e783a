"""The case core (services/case/): the rules several services share, each tested here once.
The services' own tests (access, cross-border, referral) check how they use them."""

from __future__ import annotations

import ast
import datetime as dt
import uuid
from pathlib import Path

import pytest

from contracts.commands import Consent
from contracts.events import (
    CaseErased,
    ConsentRecorded,
    ConsentWithdrawn,
    Event,
    ReferralAccepted,
    ReferralEscalated,
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
    TransferRefusal,
)
from services.agencies.registry import Agency, AgencyRegistry, load_registry
from services.case.case import Case, fold_case, may_act_on
from services.case.consent import (
    ConsentGap,
    consent_in_force,
    covers_purpose,
    names_agency,
    names_country,
    not_withheld,
)
from services.case.ids import (
    case_id_for_screening,
    consent_id_for_command,
    derived_event_id,
    referral_id_for,
)
from services.case.referrals import (
    Status,
    choose_provider,
    fold_referral,
    placement_category,
    referral_request,
)
from services.identifier.domain import consent_recorded

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = load_registry()
CASE = uuid.UUID("11111111-1111-4111-8111-111111111111")
NOW = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)
IDENTIFIER = "kg-health-osh"
F = PersonalField


def agency(agency_id: str) -> Agency:
    found = REGISTRY.get(agency_id)
    assert found is not None
    return found


def identified(is_child: bool = False, sex: Sex = Sex.FEMALE) -> VictimIdentified:
    sealed = {f: seal(bytes(32), str(CASE), f.value, 1, "x") for f in (F.FULL_NAME, F.PHONE)}
    citizenship: CountryCode = "KG"
    return VictimIdentified(
        case_id=CASE,
        agency_id=IDENTIFIER,
        agency_kind=AgencyKind.HEALTH,
        sector=Sector.GOVERNMENT,
        region=Region.OSH_CITY,
        interviewed_on=dt.date(2026, 11, 20),
        sex=sex,
        age_band=AgeBand.FROM_12_TO_17 if is_child else AgeBand.FROM_25_TO_34,
        is_child=is_child,
        citizenship=citizenship,
        country_of_exploitation=None,
        forms_of_exploitation=(),
        vulnerabilities=(),
        personal_data=sealed,
        purposes=(),
        needs=(Service.SHELTER,),
        consent=Consent(),
    )


def consent(**terms: object) -> ConsentRecorded:
    return consent_recorded(
        CASE, uuid.uuid4(), IDENTIFIER, dt.date(2026, 11, 20), Consent.model_validate(terms)
    )


def case_of(*events: Event) -> Case:
    case = fold_case([identified(), *events])
    assert case is not None
    return case


# --- ids -----------------------------------------------------------------------------------


def test_derived_ids_are_those_already_stored() -> None:
    # Pinned: a changed namespace or part order would orphan every stored history.
    command = "11111111-1111-4111-8111-111111111111"
    assert str(case_id_for_screening(command)) == "def388f8-1ef7-5159-ae9c-7c89ad347d46"
    assert str(consent_id_for_command(command)) == "2403daa3-92b7-5719-ab62-936de43eb571"
    assert str(referral_id_for(CASE, Service.SHELTER)) == "ae47ffa7-5cb5-571a-ad7a-7f39031c7dbd"
    event_id = derived_event_id(command, "case", command, 0)
    assert str(event_id) == "13d44eb9-bdc1-56d6-971a-64ee48d049ca"


def test_one_referral_id_per_case_and_service() -> None:
    ids = {referral_id_for(CASE, s) for s in Service}
    assert len(ids) == len(Service)
    assert referral_id_for(str(CASE), Service.MEDICAL) == referral_id_for(CASE, Service.MEDICAL)
    assert referral_id_for(uuid.uuid4(), Service.MEDICAL) != referral_id_for(CASE, Service.MEDICAL)


# --- the case and who may act on it ----------------------------------------------------------


def test_no_case_before_its_screening() -> None:
    assert fold_case([]) is None
    assert fold_case([consent()]) is None  # a consent alone does not make a case


def test_a_later_consent_replaces_the_earlier_and_lifts_a_withdrawal() -> None:
    first, later = consent(purposes={"assistance"}), consent(purposes={"statistics"})
    withdrawn = ConsentWithdrawn(case_id=CASE, withdrawn_by=IDENTIFIER)
    assert case_of(first, withdrawn).consent_withdrawn
    case = case_of(first, withdrawn, later)
    assert case.consent == later and not case.consent_withdrawn


def test_erasure_is_final() -> None:
    erased = CaseErased(case_id=CASE, erased_by=IDENTIFIER, reason="erasure_request")
    assert case_of(erased, consent()).erased


@pytest.mark.parametrize(
    ("agency_id", "may"),
    [
        (IDENTIFIER, True),  # the identifying agency
        ("kg-coordinating-body", True),
        ("kg-health-bishkek", False),  # same kind, another agency
        ("kg-mia-osh", False),  # same region
        ("kg-prosecutor-general", False),
    ],
)
def test_only_the_identifying_agency_or_the_coordinating_body_may_act(
    agency_id: str, may: bool
) -> None:
    assert may_act_on(case_of(), agency(agency_id)) is may


# --- consent -------------------------------------------------------------------------------


def test_consent_in_force_or_the_first_gap() -> None:
    given = consent()
    assert consent_in_force(case_of(), NOW) is ConsentGap.NO_CONSENT
    withdrawn = ConsentWithdrawn(case_id=CASE, withdrawn_by=IDENTIFIER)
    assert consent_in_force(case_of(given, withdrawn), NOW) is ConsentGap.CONSENT_WITHDRAWN
    assert consent_in_force(case_of(given), NOW) == given
    ends = consent(expires_at=NOW)
    assert consent_in_force(case_of(ends), NOW) is ConsentGap.CONSENT_EXPIRED  # ends at, not after
    assert consent_in_force(case_of(ends), NOW - dt.timedelta(seconds=1)) == ends


def test_every_consent_gap_is_a_refusal_of_custody_and_of_a_transfer() -> None:
    for gap in ConsentGap:
        assert AccessRefusal(gap.value).value == TransferRefusal(gap.value).value == gap.value


def test_what_a_consent_covers() -> None:
    given = consent(
        purposes={"assistance", "investigation"},
        recipients={"kg-mia-bishkek"},
        recipient_kinds={"health"},
        recipient_countries={"UZ"},
    )
    assert covers_purpose(given, DataPurpose.INVESTIGATION)
    assert not covers_purpose(given, DataPurpose.STATISTICS)
    assert names_agency(given, agency("kg-mia-bishkek"))  # by id
    assert names_agency(given, agency("kg-health-bishkek"))  # by kind
    assert not names_agency(given, agency("kg-mia-osh"))
    assert names_country(given, "UZ") and not names_country(given, "KZ")


def test_withheld_fields_never_go_and_the_order_is_kept() -> None:
    fields = (F.PHONE, F.FULL_NAME, F.DATE_OF_BIRTH)
    assert not_withheld(fields, frozenset({F.FULL_NAME})) == (F.PHONE, F.DATE_OF_BIRTH)
    assert not_withheld(fields, ()) == fields


# --- referral requests and states ----------------------------------------------------------


@pytest.mark.parametrize(
    ("is_child", "sex", "category"),
    [
        (True, Sex.MALE, ShelterCategory.CHILDREN),
        (True, Sex.FEMALE, ShelterCategory.CHILDREN),
        (False, Sex.FEMALE, ShelterCategory.WOMEN),
        (False, Sex.MALE, ShelterCategory.MEN),
    ],
)
def test_placement_category(is_child: bool, sex: Sex, category: ShelterCategory) -> None:
    assert placement_category(is_child, sex) is category


def test_provider_in_the_region_then_the_capital_and_only_of_the_category() -> None:
    def chosen(region: Region, category: ShelterCategory | None) -> str | None:
        provider = choose_provider(REGISTRY, Service.SHELTER, region, category)
        return provider.id if provider else None

    assert chosen(Region.OSH_CITY, ShelterCategory.WOMEN) == "kg-ngo-osh-crisis-centre"
    assert chosen(Region.BATKEN, ShelterCategory.WOMEN) == "kg-ngo-bishkek-crisis-centre"
    assert chosen(Region.OSH_CITY, ShelterCategory.MEN) == "kg-ngo-bishkek-mens-shelter"
    legal = choose_provider(REGISTRY, Service.LEGAL_AID, Region.OSH_CITY, None)
    assert legal is not None and legal.id == "kg-ngo-osh-legal-clinic"


def request(
    service: Service, registry: AgencyRegistry = REGISTRY, fallback: Agency | None = None
) -> ReferralRequested | None:
    return referral_request(
        registry,
        referral_id=referral_id_for(CASE, service),
        case_id=CASE,
        service=service,
        referrer_id=IDENTIFIER,
        region=Region.OSH_CITY,
        person=identified(is_child=True),
        shared_fields=(F.FULL_NAME,),
        now=NOW,
        response_window=dt.timedelta(hours=72),
        fallback=fallback,
    )


def test_a_referral_request_names_provider_bed_category_and_deadline() -> None:
    shelter = request(Service.SHELTER)
    assert shelter is not None
    assert shelter.provider_id == "kg-ngo-osh-crisis-centre"
    assert shelter.placement_category is ShelterCategory.CHILDREN
    assert shelter.respond_by == NOW + dt.timedelta(hours=72)
    assert shelter.is_child and shelter.shared_fields == (F.FULL_NAME,)
    medical = request(Service.MEDICAL)
    assert medical is not None and medical.placement_category is None


def test_a_referral_nobody_provides_goes_to_the_fallback_or_nowhere() -> None:
    # Cross-border reception falls back to the receiving authority; at home no request.
    others = tuple(a for a in REGISTRY.agencies if Service.MEDICAL not in a.services)
    no_doctors = REGISTRY.model_copy(update={"agencies": others})
    assert request(Service.MEDICAL, no_doctors) is None
    authority = agency("kg-coordinating-body")
    sent = request(Service.MEDICAL, no_doctors, fallback=authority)
    assert sent is not None and sent.provider_id == authority.id


def test_a_referral_state_from_its_events() -> None:
    requested = request(Service.MEDICAL)
    assert requested is not None
    ids = {"referral_id": requested.referral_id, "case_id": CASE}
    assert fold_referral([]) is None
    accepted = ReferralAccepted(**ids, provider_id=requested.provider_id, accepted_at=NOW)
    escalated = ReferralEscalated(
        **ids,
        provider_id=requested.provider_id,
        overdue_since=NOW,
        escalated_to="kg-coordinating-body",
    )
    state = fold_referral([requested, escalated, accepted])
    assert state is not None
    assert (state.status, state.escalated, state.accepted_at) == (Status.ACCEPTED, True, NOW)
    revoked = ReferralRevoked(**ids, revoked_by=IDENTIFIER, reason=RevokeReason.PERSON_WITHDREW)
    after = fold_referral([requested, accepted, revoked])
    assert after is not None and after.status is Status.REVOKED and after.accepted_at == NOW


# --- the import rule -----------------------------------------------------------------------

SERVICES = ("identifier", "referral", "shelter", "custody", "audit", "statistics")


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_no_service_imports_another_services_domain() -> None:
    crossing = sorted(
        f"{path.relative_to(ROOT)} imports {name}"
        for service in SERVICES
        for path in (ROOT / "services" / service).glob("*.py")
        for name in imports_of(path)
        for other in SERVICES
        if other != service and name == f"services.{other}.domain"
    )
    assert crossing == []


def test_the_core_imports_no_service_and_no_nats() -> None:
    allowed = ("contracts", "services.case", "services.agencies.registry")
    for path in (ROOT / "services" / "case").glob("*.py"):
        for name in imports_of(path):
            top = name.split(".")[0]
            if top in ("contracts", "services"):
                assert name.startswith(allowed), f"{path.name} imports {name}"
            assert top not in ("nats", "faststream"), f"{path.name} imports {name}"
