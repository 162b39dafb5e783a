"""A shelter's beds, residents and waiting list as its events tell them.

The shelter service decides on this state; the audit replay rebuilds occupancy from it to
compare with the live hub, so both read the events the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from uuid import UUID

from contracts.events import (
    Event,
    PlacementEvent,
    ShelterAdmitted,
    ShelterDischarged,
    ShelterRegistered,
    ShelterWaitlisted,
    ShelterWaitlistLeft,
)
from contracts.vocabulary import Region, ShelterCategory


@dataclass(frozen=True)
class Stay:
    referral_id: UUID
    case_id: UUID
    category: ShelterCategory


@dataclass
class Shelter:
    shelter_id: str
    region: Region | None = None
    capacity: dict[ShelterCategory, int] = field(default_factory=dict)
    residents: dict[UUID, Stay] = field(default_factory=dict)
    waiting: list[Stay] = field(default_factory=list)

    @property
    def registered(self) -> bool:
        return self.region is not None

    def occupied(self, category: ShelterCategory) -> int:
        return sum(1 for s in self.residents.values() if s.category is category)

    def has_bed(self, category: ShelterCategory) -> bool:
        return self.occupied(category) < self.capacity.get(category, 0)

    def knows(self, referral_id: UUID) -> bool:
        return referral_id in self.residents or any(
            s.referral_id == referral_id for s in self.waiting
        )


def fold_shelter(shelter_id: str, events: Sequence[Event]) -> Shelter:
    shelter = Shelter(shelter_id)
    for event in events:
        apply(shelter, event)
    return shelter


def apply(shelter: Shelter, event: Event) -> None:
    """One event's effect, in place; events of other kinds change nothing."""
    match event:
        case ShelterRegistered():
            shelter.region = event.region
            shelter.capacity = dict(event.capacity)
        case ShelterAdmitted():
            shelter.waiting = [s for s in shelter.waiting if s.referral_id != event.referral_id]
            shelter.residents[event.referral_id] = _stay(event)
        case ShelterWaitlisted():
            shelter.waiting.append(_stay(event))
        case ShelterDischarged():
            shelter.residents.pop(event.referral_id, None)
        case ShelterWaitlistLeft():
            shelter.waiting = [s for s in shelter.waiting if s.referral_id != event.referral_id]


def _stay(event: PlacementEvent) -> Stay:
    return Stay(event.referral_id, event.case_id, event.category)
