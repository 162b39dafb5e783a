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
    """Beds per category, residents and the waiting list. Every question a decision asks of
    it is answered without walking the residents or the list (a busy shelter's state has
    thousands of entries, and each placement asks several): occupancy and waiting counts are
    kept per category, and the waiting list is keyed by referral in arrival order."""

    shelter_id: str
    region: Region | None = None
    capacity: dict[ShelterCategory, int] = field(default_factory=dict)
    residents: dict[UUID, Stay] = field(default_factory=dict)
    queue: dict[UUID, Stay] = field(default_factory=dict)  # insertion order = arrival
    occupancy: dict[ShelterCategory, int] = field(default_factory=dict)
    queued: dict[ShelterCategory, int] = field(default_factory=dict)

    @property
    def registered(self) -> bool:
        return self.region is not None

    @property
    def waiting(self) -> list[Stay]:
        """The waiting list, first come first."""
        return list(self.queue.values())

    def occupied(self, category: ShelterCategory) -> int:
        return self.occupancy.get(category, 0)

    def free(self, category: ShelterCategory) -> int:
        return self.capacity.get(category, 0) - self.occupied(category)

    def has_bed(self, category: ShelterCategory) -> bool:
        return self.free(category) > 0

    def waiting_in(self, category: ShelterCategory) -> int:
        return self.queued.get(category, 0)

    def knows(self, referral_id: UUID) -> bool:
        return referral_id in self.residents or referral_id in self.queue

    def copy(self) -> Shelter:
        """An independent copy (a decision projects its events on one; a kept state is
        never changed by a decision)."""
        return Shelter(
            self.shelter_id,
            self.region,
            dict(self.capacity),
            dict(self.residents),
            dict(self.queue),
            dict(self.occupancy),
            dict(self.queued),
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
            _leave_queue(shelter, event.referral_id)
            if event.referral_id not in shelter.residents:
                shelter.residents[event.referral_id] = _stay(event)
                _count(shelter.occupancy, event.category, 1)
        case ShelterWaitlisted():
            if event.referral_id not in shelter.queue:
                shelter.queue[event.referral_id] = _stay(event)
                _count(shelter.queued, event.category, 1)
        case ShelterDischarged():
            stay = shelter.residents.pop(event.referral_id, None)
            if stay is not None:
                _count(shelter.occupancy, stay.category, -1)
        case ShelterWaitlistLeft():
            _leave_queue(shelter, event.referral_id)


def _leave_queue(shelter: Shelter, referral_id: UUID) -> None:
    stay = shelter.queue.pop(referral_id, None)
    if stay is not None:
        _count(shelter.queued, stay.category, -1)


def _count(counts: dict[ShelterCategory, int], category: ShelterCategory, step: int) -> None:
    counts[category] = counts.get(category, 0) + step


def _stay(event: PlacementEvent) -> Stay:
    return Stay(event.referral_id, event.case_id, event.category)
