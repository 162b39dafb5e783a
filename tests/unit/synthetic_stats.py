"""A seeded generator of hub event streams with known truth, for the statistics tests.

`generate(seed, n)` returns the envelopes a hub would have written for `n` screenings and
their referrals, shelter placements, consents, duplicates and erasures, in time order, and
`Truth`: what happened to each person, kept beside the events, so that the tests can count it
the straightforward way and compare with the projection. Pure: no clock, no I/O.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from dataclasses import dataclass, field

from contracts.commands import Consent, DeliveredItem
from contracts.envelope import Envelope, wrap_event
from contracts.events import (
    CaseErased,
    ConsentRecorded,
    ConsentWithdrawn,
    Event,
    LikelyDuplicateFound,
    ReferralAccepted,
    ReferralCompleted,
    ReferralDeclined,
    ReferralEscalated,
    ReferralRequested,
    ReferralRevoked,
    ReferralWaitlisted,
    ShelterAdmitted,
    ShelterDischarged,
    ShelterPlacementRefused,
    ShelterRegistered,
    ShelterWaitlisted,
    ShelterWaitlistLeft,
    VictimIdentified,
    VictimNotIdentified,
)
from contracts.vocabulary import (
    AgencyKind,
    DataPurpose,
    DeclineReason,
    DeliveryUnit,
    DischargeReason,
    ErasureReason,
    FormOfExploitation,
    LegalBasis,
    Region,
    RevokeReason,
    Sector,
    Service,
    Sex,
    ShelterCategory,
    age_band,
)

START = dt.datetime(2025, 1, 1, 8, 0, tzinfo=dt.UTC)
REPORT_AT = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
SHELTERS = {
    "kg-shelter-bishkek": (
        Region.BISHKEK_CITY,
        {ShelterCategory.WOMEN: 8, ShelterCategory.CHILDREN: 4},
    ),
    "kg-shelter-osh": (Region.OSH_CITY, {ShelterCategory.WOMEN: 6, ShelterCategory.MEN: 3}),
}
AGENCIES = (
    ("kg-mvd-bishkek", AgencyKind.INTERNAL_AFFAIRS, Sector.GOVERNMENT),
    ("kg-border-batken", AgencyKind.BORDER_SERVICE, Sector.GOVERNMENT),
    ("kg-labour-inspectorate", AgencyKind.LABOUR_INSPECTORATE, Sector.GOVERNMENT),
    ("kg-ngo-osh-crisis-centre", AgencyKind.NGO, Sector.CIVIL_SOCIETY),
    ("kg-iom-mission", AgencyKind.INTERNATIONAL_ORGANISATION, Sector.CIVIL_SOCIETY),
)
CITIZENSHIPS = ("KG",) * 6 + ("UZ", "UZ", "TJ", "BD", "RU")
COUNTRIES = ("KG", "KZ", "RU", "TR", "AE", None)


@dataclass
class TrueReferral:
    service: str
    requested_at: dt.datetime
    outcome: str = "pending"
    decline_reason: str | None = None
    escalated: bool = False
    served_at: dt.datetime | None = None  # first accepted / completed


@dataclass
class TruePlacement:
    category: str
    shelter_region: str
    first_seen_at: dt.datetime
    waitlisted_at: dt.datetime | None = None
    admitted_at: dt.datetime | None = None
    discharged_at: dt.datetime | None = None
    left_at: dt.datetime | None = None
    refused: bool = False


@dataclass
class TrueCase:
    status: str
    interviewed_on: dt.date
    recorded_at: dt.datetime
    region: str
    sector: str
    agency_kind: str
    sex: str
    age_band: str
    is_child: bool
    citizenship: str
    country: str | None
    forms: tuple[str, ...]
    statistics_consent: bool = False  # consent in force at REPORT_AT covers statistics
    erased: bool = False
    duplicate: bool = False
    referrals: list[TrueReferral] = field(default_factory=list)
    placements: list[TruePlacement] = field(default_factory=list)


@dataclass
class Synthetic:
    envelopes: list[Envelope]
    truth: list[TrueCase]
    case_ids: list[uuid.UUID]


def _wrap(event: Event, at: dt.datetime) -> Envelope:
    return wrap_event(
        event,
        event_id=uuid.uuid4(),
        source="urn:nrm-hub:kg:test",
        time=at,
        correlation_id=None,
        causation_id=None,
    )


def generate(seed: int, n: int) -> Synthetic:
    rng = random.Random(seed)
    timed: list[tuple[dt.datetime, int, Event]] = []
    order = 0

    def emit(at: dt.datetime, event: Event) -> None:
        nonlocal order
        timed.append((at, order, event))
        order += 1

    for shelter_id, (region, capacity) in SHELTERS.items():
        emit(
            START - dt.timedelta(days=1),
            ShelterRegistered(shelter_id=shelter_id, region=region, capacity=capacity),
        )
    truth: list[TrueCase] = []
    case_ids: list[uuid.UUID] = []
    for _ in range(n):
        case_id = uuid.UUID(int=rng.getrandbits(128), version=4)
        agency_id, kind, sector = rng.choice(AGENCIES)
        day = (START + dt.timedelta(days=rng.randrange(0, 640))).date()
        at = dt.datetime.combine(day, dt.time(9), tzinfo=dt.UTC) + dt.timedelta(
            minutes=rng.randrange(0, 600)
        )
        age = rng.choice((rng.randrange(3, 18), rng.randrange(18, 70), rng.randrange(18, 40)))
        sex = rng.choice((Sex.FEMALE, Sex.FEMALE, Sex.MALE))
        forms = tuple(
            sorted(
                {rng.choice(list(FormOfExploitation)) for _ in range(rng.choice((0, 1, 1, 1, 2)))}
            )
        )
        identified = rng.random() < 0.8
        record = dict(
            case_id=case_id,
            agency_id=agency_id,
            agency_kind=kind,
            sector=sector,
            region=rng.choice(list(Region)),
            interviewed_on=day,
            sex=sex,
            age_band=age_band(age),
            is_child=age < 18,
            citizenship=rng.choice(CITIZENSHIPS),
            country_of_exploitation=rng.choice(COUNTRIES),
            forms_of_exploitation=forms,
            vulnerabilities=(),
            personal_data={},
        )
        case = TrueCase(
            status="identified" if identified else "not_identified",
            interviewed_on=day,
            recorded_at=at,
            region=record["region"].value,
            sector=sector.value,
            agency_kind=kind.value,
            sex=sex.value,
            age_band=age_band(age).value,
            is_child=age < 18,
            citizenship=record["citizenship"],
            country=record["country_of_exploitation"],
            forms=tuple(f.value for f in forms),
        )
        truth.append(case)
        case_ids.append(case_id)
        needs = tuple(rng.sample(list(Service), rng.randrange(1, 4))) if identified else ()
        if identified:
            emit(at, VictimIdentified(**record, purposes=(), needs=needs, consent=Consent()))
        else:
            emit(
                at,
                VictimNotIdentified(
                    **record, unmet_criteria=({"criterion": "means", "reason": "no means found"},)
                ),
            )
            continue
        t = at + dt.timedelta(minutes=1)
        if rng.random() < 0.8:
            purposes = [DataPurpose.ASSISTANCE]
            if rng.random() < 0.7:
                purposes.append(DataPurpose.STATISTICS)
            expires = rng.choice(
                (
                    None,
                    None,
                    None,
                    START + dt.timedelta(days=300),
                    REPORT_AT + dt.timedelta(days=30),
                )
            )
            emit(
                t,
                ConsentRecorded(
                    case_id=case_id,
                    consent_id=uuid.uuid4(),
                    recorded_by=agency_id,
                    # A child's consent is given by a guardian (services/case/consent.py).
                    legal_basis=(
                        LegalBasis.GUARDIAN_CONSENT if age < 18 else LegalBasis.INFORMED_CONSENT
                    ),
                    purposes=tuple(purposes),
                    recipients=(),
                    recipient_kinds=(),
                    withheld_fields=(),
                    given_on=day,
                    expires_at=expires,
                ),
            )
            case.statistics_consent = DataPurpose.STATISTICS in purposes and (
                expires is None or expires > REPORT_AT
            )
            if rng.random() < 0.1:
                emit(
                    t + dt.timedelta(days=2),
                    ConsentWithdrawn(case_id=case_id, withdrawn_by=agency_id),
                )
                case.statistics_consent = False
        if rng.random() < 0.05:
            emit(
                t + dt.timedelta(minutes=1),
                LikelyDuplicateFound(case_id=case_id, earlier_case_ids=(uuid.uuid4(),)),
            )
            case.duplicate = True
        for service in needs:
            referral_id = uuid.uuid4()
            requested = t + dt.timedelta(minutes=5)
            category = (
                ShelterCategory.CHILDREN
                if age < 18
                else ShelterCategory.WOMEN
                if sex is Sex.FEMALE
                else ShelterCategory.MEN
            )
            emit(
                requested,
                ReferralRequested(
                    referral_id=referral_id,
                    case_id=case_id,
                    service=service,
                    provider_id="kg-provider",
                    referrer_id=agency_id,
                    region=record["region"],
                    sex=sex,
                    age_band=age_band(age),
                    is_child=age < 18,
                    placement_category=category if service is Service.SHELTER else None,
                    shared_fields=(),
                    requested_at=requested,
                    respond_by=requested + dt.timedelta(hours=72),
                ),
            )
            ref = TrueReferral(service=service.value, requested_at=requested)
            case.referrals.append(ref)
            common = {"referral_id": referral_id, "case_id": case_id}
            later = requested + dt.timedelta(hours=rng.choice((2, 30, 100, 400, 1000)))
            if rng.random() < 0.1:
                emit(
                    requested + dt.timedelta(hours=73),
                    ReferralEscalated(
                        **common,
                        provider_id="kg-provider",
                        overdue_since=requested,
                        escalated_to="kg-coordinating-body",
                    ),
                )
                ref.escalated = True
                later = max(later, requested + dt.timedelta(hours=74))
            if service is Service.SHELTER:
                shelter_id = (
                    next(s for s, (_, cap) in SHELTERS.items() if category in cap)
                    if any(category in cap for _, cap in SHELTERS.values())
                    else None
                )
                if shelter_id is None:
                    emit(
                        later,
                        ReferralDeclined(
                            **common,
                            provider_id="kg-provider",
                            reason=DeclineReason.CATEGORY_NOT_ACCEPTED,
                        ),
                    )
                    ref.outcome, ref.decline_reason = "declined", "category_not_accepted"
                    continue
                sh = {"shelter_id": shelter_id, **common, "category": category}
                placement = TruePlacement(
                    category=category.value,
                    shelter_region=SHELTERS[shelter_id][0].value,
                    first_seen_at=later,
                )
                case.placements.append(placement)
                path = rng.choice(("at_once", "waited", "left", "refused", "still"))
                if path == "refused":
                    emit(later, ShelterPlacementRefused(**sh, reason=DeclineReason.NO_CAPACITY))
                    emit(
                        later,
                        ReferralDeclined(
                            **common, provider_id=shelter_id, reason=DeclineReason.NO_CAPACITY
                        ),
                    )
                    placement.refused = True
                    ref.outcome, ref.decline_reason = "declined", "no_capacity"
                    continue
                admit_at = later
                if path != "at_once":
                    emit(later, ShelterWaitlisted(**sh, position=1))
                    emit(later, ReferralWaitlisted(**common, provider_id=shelter_id, position=1))
                    placement.waitlisted_at = later
                    ref.outcome = "waitlisted"
                    if path == "still":
                        continue
                    if path == "left":
                        left = later + dt.timedelta(hours=5)
                        emit(
                            left,
                            ReferralRevoked(
                                **common,
                                revoked_by=agency_id,
                                reason=RevokeReason.NEED_MET_ELSEWHERE,
                            ),
                        )
                        emit(left, ShelterWaitlistLeft(**sh))
                        placement.left_at = left
                        ref.outcome = "revoked"
                        continue
                    admit_at = later + dt.timedelta(hours=rng.choice((3, 50, 300, 900)))
                emit(admit_at, ShelterAdmitted(**sh, from_waiting_list=path == "waited"))
                emit(
                    admit_at,
                    ReferralAccepted(**common, provider_id=shelter_id, accepted_at=admit_at),
                )
                placement.admitted_at = admit_at
                ref.outcome, ref.served_at = "accepted", admit_at
                if rng.random() < 0.4:
                    out = admit_at + dt.timedelta(days=rng.randrange(5, 90))
                    emit(out, ShelterDischarged(**sh, reason=DischargeReason.RETURNED_HOME))
                    placement.discharged_at = out
                continue
            answer = rng.choice(("pending", "accepted", "declined", "completed", "revoked"))
            if answer == "pending":
                continue
            if answer == "declined":
                emit(
                    later,
                    ReferralDeclined(
                        **common, provider_id="kg-provider", reason=DeclineReason.OUTSIDE_MANDATE
                    ),
                )
                ref.outcome, ref.decline_reason = "declined", "outside_mandate"
                continue
            if answer == "revoked":
                emit(
                    later,
                    ReferralRevoked(
                        **common, revoked_by=agency_id, reason=RevokeReason.PERSON_WITHDREW
                    ),
                )
                ref.outcome = "revoked"
                continue
            emit(later, ReferralAccepted(**common, provider_id="kg-provider", accepted_at=later))
            ref.outcome, ref.served_at = "accepted", later
            if answer == "completed":
                emit(
                    later + dt.timedelta(days=3),
                    ReferralCompleted(
                        **common,
                        provider_id="kg-provider",
                        delivered=(
                            DeliveredItem(service=service, quantity=2, unit=DeliveryUnit.SESSION),
                        ),
                    ),
                )
                ref.outcome = "completed"
        if rng.random() < 0.05:
            emit(
                REPORT_AT - dt.timedelta(days=1),
                CaseErased(
                    case_id=case_id,
                    erased_by="kg-coordinating-body",
                    reason=ErasureReason.ERASURE_REQUEST,
                ),
            )
            case.erased = True
            case.statistics_consent = False
    timed.sort(key=lambda item: (item[0], item[1]))
    return Synthetic([_wrap(e, at) for at, _, e in timed], truth, case_ids)
