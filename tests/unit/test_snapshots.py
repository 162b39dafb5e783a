"""A kept fold (services/runtime/snapshots.py) is always the fold of the whole history it is
asked about: after appends, after being forgotten, and when asked about an older history."""

from __future__ import annotations

import datetime as dt
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.envelope import wrap_event
from contracts.events import (
    Event,
    ShelterAdmitted,
    ShelterDischarged,
    ShelterRegistered,
    ShelterWaitlisted,
    ShelterWaitlistLeft,
)
from contracts.vocabulary import DischargeReason, Region, ShelterCategory
from services.case.shelter_beds import Shelter, apply, fold_shelter
from services.runtime.eventstore import History, StoredEvent
from services.runtime.snapshots import Snapshots

SHELTER = "kg-ngo-bishkek-crisis-centre"
NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
CATEGORIES = (ShelterCategory.WOMEN, ShelterCategory.CHILDREN)


def _event(kind: int, referral: uuid.UUID, category: ShelterCategory) -> Event:
    ids = {"shelter_id": SHELTER, "referral_id": referral, "case_id": referral}
    if kind == 0:
        return ShelterAdmitted(**ids, category=category, from_waiting_list=False)
    if kind == 1:
        return ShelterWaitlisted(**ids, category=category, position=1)
    if kind == 2:
        return ShelterDischarged(**ids, category=category, reason=DischargeReason.LEFT_VOLUNTARILY)
    if kind == 3:
        return ShelterWaitlistLeft(**ids, category=category)
    return ShelterRegistered(
        shelter_id=SHELTER, region=Region.BISHKEK_CITY, capacity={category: kind % 7}
    )


def _stored(events: list[Event], first_sequence: int, gap: int) -> list[StoredEvent]:
    return [
        StoredEvent(
            wrap_event(
                event,
                event_id=uuid.uuid4(),
                source="test",
                time=NOW,
                correlation_id=None,
                causation_id=None,
            ),
            event,
            first_sequence + index * gap,  # other aggregates' events lie in between
        )
        for index, event in enumerate(events)
    ]


def _same(a: Shelter, b: Shelter) -> bool:
    return a == b and a.waiting == b.waiting  # the waiting list's order counts too


operations = st.lists(
    st.tuples(st.integers(0, 5), st.integers(0, 5), st.sampled_from(CATEGORIES)),
    min_size=1,
    max_size=60,
)


@given(operations, st.lists(st.integers(0, 60), min_size=1, max_size=12), st.integers(1, 3))
@settings(max_examples=150, deadline=None)
def test_the_kept_fold_equals_the_whole_fold(
    ops: list[tuple[int, int, ShelterCategory]], asked: list[int], size: int
) -> None:
    referrals = [uuid.uuid4() for _ in range(6)]
    events = [_event(kind, referrals[who], category) for kind, who, category in ops]
    stored = _stored(events, first_sequence=5, gap=3)
    snapshots: Snapshots[Shelter] = Snapshots(Shelter, apply, Shelter.copy, size=size)
    # Ask about growing histories, then older ones (a reader behind another), in any order.
    for length in [*sorted(asked), *asked]:
        prefix = stored[: min(length, len(stored))]
        history = History(tuple(prefix), prefix[-1].stream_sequence if prefix else 0)
        expected = fold_shelter(SHELTER, [s.event for s in prefix])
        assert _same(snapshots.state(SHELTER, history), expected)
        # Another aggregate asked in between may push this one out of a small cache.
        snapshots.state("kg-ngo-osh-crisis-centre", History((), 0))


def test_a_decision_never_changes_the_kept_state() -> None:
    referral = uuid.uuid4()
    stored = _stored([_event(4, referral, ShelterCategory.WOMEN)], 1, 1)
    snapshots: Snapshots[Shelter] = Snapshots(Shelter, apply, Shelter.copy)
    state = snapshots.state(SHELTER, History(tuple(stored), 1))
    projected = state.copy()
    apply(projected, _event(0, referral, ShelterCategory.WOMEN))
    assert snapshots.state(SHELTER, History(tuple(stored), 1)).residents == {}
    assert projected.occupied(ShelterCategory.WOMEN) == 1
