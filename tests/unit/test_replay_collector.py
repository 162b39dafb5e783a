"""A replay pauses Python's cyclic collector while it reads and folds, and gives it back as
it found it, whatever happens inside."""

from __future__ import annotations

import gc

import pytest

from services.audit.replay import collector_paused


def test_the_collector_is_off_inside_and_back_on_after_even_on_error() -> None:
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("a replay that failed")
    assert gc.isenabled()


def test_a_collector_already_off_stays_off() -> None:
    gc.disable()
    try:
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_what_the_pause_kept_alive_is_promoted_without_a_scan() -> None:
    """On the way out the objects made during the pause go to the oldest generation at once,
    so the first collection after it does not walk all of them; nothing stays frozen."""

    class Kept:  # an object the collector tracks, like a replayed event
        pass

    with collector_paused():
        kept = [Kept() for _ in range(1000)]
    assert gc.isenabled() and gc.get_freeze_count() == 0
    young = {id(o) for o in gc.get_objects(generation=0)} | {
        id(o) for o in gc.get_objects(generation=1)
    }
    assert not any(id(o) in young for o in kept)
    assert all(gc.is_tracked(o) for o in kept)
