"""`History.caused_by` (services/runtime/eventstore.py) answers what a walk of the events
answers, for histories made directly, extended, and extended in two ways from one prefix;
and an extended history answers without reading the causes of the events it extends."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.events import ShelterWaitlistLeft
from contracts.vocabulary import ShelterCategory
from services.runtime.eventstore import History, StoredEvent

CAUSES = ("a", "b", "c", "d", None)
EVENT = ShelterWaitlistLeft(
    shelter_id="kg-ngo-bishkek-crisis-centre",
    referral_id=uuid.uuid4(),
    case_id=uuid.uuid4(),
    category=ShelterCategory.WOMEN,
)


@dataclasses.dataclass
class CountedEnvelope:
    """The envelope attributes a history reads, counting each read of the cause."""

    causation: str | None
    reads: list[int]
    id: str = "e"
    source: str = "test"
    type: str = "shelter.waitlist_left"
    time: dt.datetime = dt.datetime(2026, 12, 3, tzinfo=dt.UTC)
    subject: str | None = None
    correlationid: str | None = None

    @property
    def causationid(self) -> str | None:
        self.reads.append(1)
        return self.causation


def _stored(causes: list[str | None], first_sequence: int, reads: list[int]) -> list[StoredEvent]:
    return [
        StoredEvent(CountedEnvelope(cause, reads), EVENT, first_sequence + index)
        for index, cause in enumerate(causes)
    ]


def _walked(history: History, cause: str) -> tuple[StoredEvent, ...]:
    return tuple(e for e in history.events if e.envelope.causationid == cause)


# Each step extends one of the histories made so far (its index) by some events, and asks
# one history made so far about one cause: the index is built at different moments.
steps = st.lists(
    st.tuples(
        st.integers(0, 20),
        st.lists(st.sampled_from(CAUSES), max_size=4),
        st.integers(0, 20),
        st.sampled_from(CAUSES[:-1]),
    ),
    min_size=1,
    max_size=25,
)


@given(st.lists(st.sampled_from(CAUSES), max_size=6), steps)
@settings(max_examples=300, deadline=None)
def test_caused_by_answers_what_a_walk_of_the_events_answers(
    first: list[str | None], plan: list[tuple[int, list[str | None], int, str]]
) -> None:
    reads: list[int] = []
    histories = [History(tuple(_stored(first, 1, reads)), len(first))]
    for extend, more, ask, cause in plan:
        base = histories[extend % len(histories)]
        last = base.last_sequence + len(more)
        histories.append(base.extended(_stored(more, base.last_sequence + 1, reads), last))
        asked = histories[ask % len(histories)]
        assert asked.caused_by(cause) == _walked(asked, cause)
    for history in histories:  # divergent extensions of a shared prefix see only their own
        for cause in CAUSES[:-1]:
            assert history.caused_by(cause) == _walked(history, cause)


def test_an_extended_history_answers_without_reading_what_it_extends() -> None:
    reads: list[int] = []
    history = History(tuple(_stored(["old"] * 5_000, 1, reads)), 5_000)
    assert len(history.caused_by("old")) == 5_000  # the first question reads them all once
    for step in range(100):
        cause = f"placement-{step}"
        history = history.extended(
            _stored([cause], history.last_sequence + 1, reads), history.last_sequence + 1
        )
        reads.clear()
        assert [e.stream_sequence for e in history.caused_by(cause)] == [history.last_sequence]
        assert history.caused_by("never") == ()
        # The new event when it is indexed, and the match: not the 5,000 before it.
        assert len(reads) <= 2
