"""The benchmark's cases: varied screenings with sealed personal data, and what each must lead to.

The expected outcome of every case is worked out here from the registry with the referral
domain's own provider choice, so the run can check that nothing was lost or doubled: a
benchmark that is fast but wrong reports failure, not a speed.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections import Counter
from dataclasses import dataclass

from contracts.commands import (
    Consent,
    CriteriaAnswers,
    PersonalData,
    RegisterShelter,
    ScreeningInterview,
)
from contracts.vocabulary import (
    Act,
    FormOfExploitation,
    Means,
    Purpose,
    Region,
    Service,
    Sex,
    ShelterCategory,
)
from services.agencies.registry import AgencyRegistry
from services.case.referrals import choose_provider, placement_category
from services.identifier.domain import ADULT_AGE

# Agencies that may identify (checked against the registry by a unit test).
IDENTIFYING = ("kg-ngo-osh-crisis-centre", "kg-mia-bishkek", "kg-mia-osh", "kg-border-batken")
FORM_PURPOSE = {
    FormOfExploitation.SEX_TRAFFICKING: Purpose.SEXUAL_EXPLOITATION,
    FormOfExploitation.FORCED_LABOUR: Purpose.FORCED_LABOUR,
    FormOfExploitation.DOMESTIC_SERVITUDE: Purpose.SLAVERY_OR_SERVITUDE,
    FormOfExploitation.FORCED_CRIMINALITY: Purpose.FORCED_CRIMINALITY,
    FormOfExploitation.FORCED_BEGGING: Purpose.FORCED_BEGGING,
    FormOfExploitation.FORCED_MARRIAGE: Purpose.FORCED_MARRIAGE,
}
NEEDS = (
    frozenset({Service.SHELTER, Service.LEGAL_AID}),
    frozenset({Service.SHELTER, Service.MEDICAL, Service.PSYCHOLOGICAL}),
    frozenset({Service.SHELTER}),
    frozenset({Service.LEGAL_AID, Service.REPATRIATION}),
    frozenset({Service.SOCIAL_ASSISTANCE, Service.EMPLOYMENT}),
)
# Share of each shelter category's referrals that find a bed; the rest are wait-listed.
BED_SHARE = 0.6


@dataclass(frozen=True)
class Case:
    interview: ScreeningInterview
    shelter: tuple[str, ShelterCategory] | None  # where its shelter referral goes
    referrals: int


@dataclass(frozen=True)
class Workload:
    cases: tuple[Case, ...]
    shelters: tuple[RegisterShelter, ...]
    admitted: int  # cases that must end in shelter.admitted; the other shelter cases wait

    def expected_events(self) -> Counter[str]:
        """Every event type the hub must write for these cases, and how many."""
        waiting = sum(1 for c in self.cases if c.shelter) - self.admitted
        expected: Counter[str] = Counter(
            {
                "shelter.registered": len(self.shelters),
                "victim.identified": len(self.cases),
                "consent.recorded": len(self.cases),
                "referral.requested": sum(c.referrals for c in self.cases),
                "shelter.admitted": self.admitted,
                "referral.accepted": self.admitted,
                "shelter.waitlisted": waiting,
                "referral.waitlisted": waiting,
            }
        )
        return +expected

    def events_total(self) -> int:
        return sum(self.expected_events().values())


def build(n: int, registry: AgencyRegistry, seed: int = 9) -> Workload:
    """`n` screenings varied across regions, sexes, ages, forms and needs (deterministic)."""
    rng = random.Random(seed)
    cases = []
    for index in range(n):
        sex = rng.choice(tuple(Sex))
        age = rng.choice((rng.randint(12, 17), rng.randint(18, 30), rng.randint(31, 65)))
        form = rng.choice(tuple(FORM_PURPOSE))
        needs = rng.choice(NEEDS)
        region = rng.choice(tuple(Region))
        interview = ScreeningInterview(
            command_id=uuid.UUID(int=rng.getrandbits(128), version=4),
            agency_id=rng.choice(IDENTIFYING),
            interviewed_on=dt.date(2026, 11, 1) + dt.timedelta(days=index % 28),
            region=region,
            sex=sex,
            age=age,
            citizenship="KG",
            country_of_exploitation=rng.choice(("KZ", "RU", "TR", "AE", "KG")),
            criteria=CriteriaAnswers(
                acts=frozenset({rng.choice(tuple(Act))}),
                means=frozenset({rng.choice(tuple(Means))}),
                purposes=frozenset({FORM_PURPOSE[form]}),
            ),
            forms_of_exploitation=frozenset({form}),
            needs=needs,
            consent=Consent(),
            # Unique per case (no date of birth: no blind-index match between bench cases).
            personal_data=PersonalData(
                full_name=f"Bench Person {index:07d}",
                phone=f"+996 700 {index:06d}",
                narrative=f"bench narrative {index}: recruited with a false job offer",
            ),
        )
        cases.append(_expect(interview, registry))
    by_place = Counter(c.shelter for c in cases if c.shelter)
    capacity: dict[str, dict[ShelterCategory, int]] = {}
    for (shelter_id, category), count in by_place.items():
        capacity.setdefault(shelter_id, {})[category] = max(1, int(count * BED_SHARE))
    admitted = sum(min(count, capacity[s][c]) for (s, c), count in by_place.items())
    shelters = tuple(
        RegisterShelter(
            command_id=uuid.UUID(int=rng.getrandbits(128), version=4),
            agency_id=shelter_id,
            capacity=beds,
        )
        for shelter_id, beds in sorted(capacity.items())
    )
    return Workload(tuple(cases), shelters, admitted)


def _expect(interview: ScreeningInterview, registry: AgencyRegistry) -> Case:
    """The referrals the referral service will plan (its own provider choice)."""
    child = interview.age_at_interview() < ADULT_AGE
    services = set(interview.needs) | ({Service.GUARDIANSHIP} if child else set())
    referrals = 0
    shelter = None
    for service in services:
        category = placement_category(child, interview.sex) if service is Service.SHELTER else None
        provider = choose_provider(registry, service, interview.region, category)
        if provider is None:
            continue
        referrals += 1
        if service is Service.SHELTER:
            assert category is not None
            shelter = (provider.id, category)
    return Case(interview, shelter, referrals)
