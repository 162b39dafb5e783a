"""A service's loops run as long as the service (services/runtime/loops.py): one that ends
without a stop, by an exception or by a cancel count nobody asked for, is restarted, logged
and counted; a stop, however it is reported, ends it for good."""

from __future__ import annotations

import asyncio
import contextlib
import functools

import pytest
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from services.runtime import loops
from services.runtime.loops import Lifetime, keep_running, loop_name, stop_if_cancelled, stop_loops


@pytest.fixture(autouse=True)
def quick_restarts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loops, "FIRST_RESTART_DELAY_SECONDS", 0.01)


def _restarts(name: str) -> float:
    labels = {"service": "looptest", "loop": name}
    return REGISTRY.get_sample_value("nrm_loop_restarts_total", labels) or 0.0


async def _failing_task_group() -> None:
    """What the referral plan once did: a TaskGroup whose child fails. On Python 3.11 it
    leaves the calling task's `cancelling()` raised (fixed in 3.12)."""

    async def fail() -> None:
        raise ValueError("a write failed")

    async def wait() -> None:
        await asyncio.sleep(10)

    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(wait())
            group.create_task(fail())
    except ExceptionGroup:
        pass


def _leave_cancel_count_raised() -> None:
    task = asyncio.current_task()
    assert task is not None
    task.cancel()  # and swallowed below: the count stays, as a library bug leaves it


async def _until(condition: asyncio.Event) -> None:
    await asyncio.wait_for(condition.wait(), 5.0)


async def test_a_loop_that_raises_is_restarted_logged_and_counted() -> None:
    lifetime = Lifetime()
    runs = 0
    third = asyncio.Event()

    async def loop() -> None:
        nonlocal runs
        runs += 1
        if runs < 3:
            raise KeyError("case-7f3a")  # the text may name what it worked on: never logged
        third.set()
        await asyncio.sleep(60)

    before = _restarts("raising")
    with capture_logs() as logs:
        task = asyncio.create_task(keep_running(lifetime, "looptest", "raising", loop))
        await _until(third)
        await stop_loops(lifetime, [task])
    assert task.done() and runs == 3
    assert _restarts("raising") - before == 2
    restarted = [e for e in logs if e["event"] == "loop.restarted"]
    assert [e["log_level"] for e in restarted] == ["error", "error"]
    assert restarted[0]["reason"] == "KeyError escaped the loop"
    assert "case-7f3a" not in repr(logs)


async def test_a_cancel_count_left_raised_by_a_task_group_does_not_end_a_consumer() -> None:
    """The consumer loop reads `cancelling()` as a stop. A count a library left raised is
    not one: the loop is restarted with the count cleared, and keeps taking."""
    lifetime = Lifetime()
    taken: list[int] = []
    later = asyncio.Event()

    async def consumer() -> None:
        for n in range(1, 100):
            if n == 2 and taken == [1]:  # the first run only
                await _failing_task_group()
                _leave_cancel_count_raised()  # on Python 3.12+ the group leaves none
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.sleep(0)
            stop_if_cancelled()  # what the consumer loop does after a failed handler
            taken.append(n)
            if len(taken) == 3:
                later.set()
            await asyncio.sleep(0)

    before = _restarts("consumer")
    task = asyncio.create_task(keep_running(lifetime, "looptest", "consumer", consumer))
    try:
        await _until(later)
    finally:
        await stop_loops(lifetime, [task])
    assert taken[:3] == [1, 1, 2]  # ended at 2 by the stray count, restarted from the top
    assert _restarts("consumer") - before == 1
    assert task.cancelled()


async def test_a_stop_ends_the_loop_however_it_is_reported() -> None:
    """A stop that nats-py swallowed (reported as a timeout, then `stop_if_cancelled`), and
    one delivered as it is: both end the loop, neither restarts it."""
    for swallowed in (True, False):
        lifetime = Lifetime()
        running = asyncio.Event()

        async def loop(swallowed: bool = swallowed, running: asyncio.Event = running) -> None:
            running.set()
            while True:
                try:
                    await asyncio.sleep(60)
                except asyncio.CancelledError:
                    if not swallowed:
                        raise
                    stop_if_cancelled()

        before = _restarts("stopped")
        task = asyncio.create_task(keep_running(lifetime, "looptest", "stopped", loop))
        await _until(running)
        await asyncio.wait_for(stop_loops(lifetime, [task]), 5.0)
        assert task.cancelled()
        assert _restarts("stopped") == before


async def test_a_cancel_from_outside_is_a_stop_too() -> None:
    """`task.cancel()` without the service's stop (asyncio.run's own teardown does that):
    the loop ends, so nothing waits for it for ever."""
    lifetime = Lifetime()
    running = asyncio.Event()

    async def loop() -> None:
        running.set()
        await asyncio.sleep(60)

    task = asyncio.create_task(keep_running(lifetime, "looptest", "outside", loop))
    await _until(running)
    task.cancel()
    await asyncio.wait_for(asyncio.wait({task}), 5.0)
    assert task.cancelled()


async def test_a_loop_that_returns_is_restarted() -> None:
    lifetime = Lifetime()
    runs = 0
    second = asyncio.Event()

    async def loop() -> None:
        nonlocal runs
        runs += 1
        if runs == 2:
            second.set()
            await asyncio.sleep(60)

    task = asyncio.create_task(keep_running(lifetime, "looptest", "returning", loop))
    await _until(second)
    await stop_loops(lifetime, [task])
    assert runs == 2


def test_loop_names_say_which_loop_and_which_peer() -> None:
    async def relay(peer: str) -> None: ...

    assert loop_name(functools.partial(relay, "uz")) == "relay(uz)"
    assert loop_name(relay) == "relay"


def test_the_hubs_processes_run_on_uvloop() -> None:
    """`nrm up`, `nrm run`, the workers and the bench run their main coroutine this way
    (docs/PERFORMANCE.md item 30)."""
    from services.runtime.loops import run_process

    async def loop_kind() -> str:
        return type(asyncio.get_running_loop()).__module__.split(".")[0]

    assert run_process(loop_kind()) == "uvloop"
    assert asyncio.run(loop_kind()) == "asyncio"  # the control: asyncio's own loop


def test_a_process_ends_though_a_task_it_left_swallows_its_cancellation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """nats-py's reconnect loop, with the server gone, swallows the cancellation that ends
    a process: under `asyncio.run` the worker stayed alive, orphaned. `run_process` gives
    what is left a grace period, names it, and returns; a task that does end on
    cancellation is finished (its cleanup ran) before that."""
    from services.runtime.loops import run_process

    monkeypatch.setattr(loops, "EXIT_GRACE_SECONDS", 0.3)
    cleaned: list[str] = []

    async def obstinate() -> None:
        while True:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(3600)

    async def polite() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            cleaned.append("polite")

    async def main() -> str:
        asyncio.get_running_loop().create_task(obstinate())
        asyncio.get_running_loop().create_task(polite())
        await asyncio.sleep(0)
        return "done"

    with capture_logs() as logs:
        assert run_process(main()) == "done"
    assert cleaned == ["polite"]
    left = [e for e in logs if e["event"] == "process.tasks_left_running"]
    assert [e["tasks"] for e in left] == [
        ["test_a_process_ends_though_a_task_it_left_swallows_its_cancellation.<locals>.obstinate"]
    ]
