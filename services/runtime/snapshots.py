"""Folded aggregate states kept beside the event store's kept histories (a snapshot each).

A decision folds its aggregate's history into the state it decides on. For an aggregate whose
life keeps growing (a shelter: every placement adds to it) folding the whole history again for
each decision makes the cost of a decision grow with the aggregate's age. A kept state is the
fold up to a stream sequence; the next decision applies only the events stored after it. The
stream is append-only, so a state folded up to sequence n stays the fold of every event up to
n, whoever stored them.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

from contracts.events import Event
from services.runtime.eventstore import History

S = TypeVar("S")

KEPT_STATES = 1024


class Snapshots(Generic[S]):
    """The fold of each aggregate's history, kept per aggregate id (least recently used
    forgotten). `state` returns the state to decide on: callers must not change it (a
    decision projects its events on a copy)."""

    def __init__(
        self,
        initial: Callable[[str], S],
        apply: Callable[[S, Event], None],
        copy: Callable[[S], S],
        size: int = KEPT_STATES,
    ) -> None:
        self._initial = initial
        self._apply = apply
        self._copy = copy
        self._size = size
        self._kept: OrderedDict[str, tuple[int, S]] = OrderedDict()

    def state(self, aggregate_id: str, history: History) -> S:
        kept = self._kept.get(aggregate_id)
        if kept is not None and kept[0] == history.last_sequence:
            self._kept.move_to_end(aggregate_id)
            return kept[1]
        if kept is None or kept[0] > history.last_sequence:
            # Unknown, or kept from a later read than this history: fold it all.
            state, start = self._initial(aggregate_id), 0
        else:
            state = self._copy(kept[1])
            start = bisect_right(history.events, kept[0], key=lambda e: e.stream_sequence)
        for stored in history.events[start:]:
            self._apply(state, stored.event)
        if history.last_sequence:
            self._kept[aggregate_id] = (history.last_sequence, state)
            self._kept.move_to_end(aggregate_id)
            while len(self._kept) > self._size:
                self._kept.popitem(last=False)
        return state
