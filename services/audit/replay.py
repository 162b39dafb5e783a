"""Replay, pure: rebuild the projections (cases, referrals, shelter occupancy, open referrals)
by folding events with the folds the services decide on (the case core's), and list where
two builds differ."""

from __future__ import annotations

import contextlib
import gc
import hashlib
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from contracts.envelope import event_from_bytes
from contracts.events import (
    CaseErased,
    ConsentWithdrawn,
    Event,
    ReferralRequested,
    VictimIdentified,
    VictimNotIdentified,
    VictimPresumed,
)
from services.case.referrals import fold_referral
from services.case.shelter_beds import fold_shelter

Key = tuple[str, str]  # (aggregate, aggregate id)


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic collector off while a replay reads and folds: the replay keeps every
    event it reads (the projections need them all), so each full collection walks a heap
    that only grows, and they come every few thousand events. Measured on 16,602 events:
    8.3k-10.3k events/s with it, 17.9k-18.9k without (docs/PERFORMANCE.md, item 14). The
    events are acyclic (reference counting frees them); the collector runs again after.

    On the way out, what the pause let pile up in the youngest generation is moved to the
    oldest without a scan (`gc.freeze()` then `gc.unfreeze()`): else the first allocation
    after `gc.enable()` scans every object the replay made, to find no garbage (they are
    alive, or freed already). Measured: 37-88 ms after 13,780 events, 15-25 % of the read
    (docs/PERFORMANCE.md, item 16). They are scanned, as everything old is, at the next
    full collection. Nothing in the hub freezes objects for good, so the unfreeze undoes
    nobody's freeze."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.freeze()
            gc.unfreeze()
            gc.enable()


@dataclass
class ReadEvents:
    """What a replay has read, in stream order: each aggregate's history, the SHA-256 of
    every stored event by stream sequence (to compare with its audit leaf), and how many
    stored messages are not a readable event (skipped, as every reader of the hub skips
    them). `read` takes runs of (sequence, stored bytes), as `replay_batches` gives them."""

    histories: defaultdict[Key, list[Event]] = field(default_factory=lambda: defaultdict(list))
    hashes: dict[int, str] = field(default_factory=dict)
    unreadable: int = 0

    def read(self, run: Iterable[tuple[int, bytes]]) -> None:
        histories, hashes, sha256 = self.histories, self.hashes, hashlib.sha256
        for sequence, data in run:
            hashes[sequence] = sha256(data).hexdigest()
            try:
                event = event_from_bytes(data)
            except ValueError:  # pydantic's ValidationError included
                self.unreadable += 1
                continue
            histories[(event.AGGREGATE, event.aggregate_id())].append(event)


@dataclass
class Projections:
    cases: dict[str, str] = field(default_factory=dict)
    referrals: dict[str, str] = field(default_factory=dict)
    shelters: dict[str, str] = field(default_factory=dict)
    open_referrals: set[str] = field(default_factory=set)


def case_status(events: Sequence[Event]) -> str:
    status = "opened"
    for event in events:
        match event:
            case VictimIdentified():
                status = "identified"
            case VictimNotIdentified():
                status = "not_identified"
            case VictimPresumed():
                status = "presumed"
            case ConsentWithdrawn():
                status = f"{status.split('+')[0]}+consent_withdrawn"
            case CaseErased():
                status = "erased"
    return status


def referral_status(events: Sequence[Event]) -> str | None:
    state = fold_referral(events)
    if state is None:
        return None
    return state.status.value + ("+escalated" if state.escalated else "")


def shelter_occupancy(shelter_id: str, events: Sequence[Event]) -> str:
    shelter = fold_shelter(shelter_id, events)
    beds = ", ".join(
        f"{category.value} {shelter.occupied(category)}/{capacity}"
        for category, capacity in sorted(shelter.capacity.items())
    )
    return f"{beds}; waiting {len(shelter.waiting)}"


def project(histories: Mapping[Key, Sequence[Event]]) -> Projections:
    # In the histories' order, not sorted: what is compared and printed is sorted there
    # (`differences`), and sorting ~2 keys per 5 events cost ~1 us an event.
    out = Projections()
    for (aggregate, aggregate_id), events in histories.items():
        if aggregate == "case":
            out.cases[aggregate_id] = case_status(events)
        elif aggregate == "referral":
            status = referral_status(events)
            if status is not None:
                out.referrals[aggregate_id] = status
            if events and isinstance(events[-1], ReferralRequested):
                out.open_referrals.add(aggregate_id)
        elif aggregate == "shelter":
            out.shelters[aggregate_id] = shelter_occupancy(aggregate_id, events)
    return out


def differences(replayed: Projections, live: Projections) -> list[str]:
    """Human-readable differences, ids only."""
    found: list[str] = []
    for name in ("cases", "referrals", "shelters"):
        mine: dict[str, str] = getattr(replayed, name)
        theirs: dict[str, str] = getattr(live, name)
        for key in sorted(mine.keys() | theirs.keys()):
            if mine.get(key) != theirs.get(key):
                found.append(
                    f"{name[:-1]} {key}: replayed {mine.get(key, 'absent')!r}, "
                    f"live {theirs.get(key, 'absent')!r}"
                )
    for key in sorted(replayed.open_referrals - live.open_referrals):
        found.append(f"open referral {key}: replayed open, missing from the live deadline list")
    for key in sorted(live.open_referrals - replayed.open_referrals):
        found.append(f"open referral {key}: in the live deadline list, replayed not open")
    return found
