"""Background loops that live as long as their service: started, kept running, stopped.

A service's consumer loops and background loops (the audit writer's, the cross-border link's,
the follow-ups, the lag poll) must run until the service stops. A loop that ends any other
way, by an exception nobody expected or by a cancellation nobody asked for, used to end in
silence while the process stayed up and looked ready: a consumer nobody took any more.
`keep_running` restarts such a loop, says so at error level and counts it.

A stop is told apart from a stray cancellation by asking the service: it is stopping only
after `Lifetime.stop` was called. That matters on Python 3.11, where a library can leave a
task's `cancelling()` raised without a stop (a `TaskGroup` whose child failed does), and the
loops read that count to honour a stop that nats-py reported as a timeout
(`stop_if_cancelled`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import uvloop

from services.runtime.health import LOOP_RESTARTS
from services.runtime.logging import get_logger

log = get_logger("nrm.loops")

T = TypeVar("T")

FIRST_RESTART_DELAY_SECONDS = 0.5
MAX_RESTART_DELAY_SECONDS = 30.0


def run_process(main: Coroutine[Any, Any, T]) -> T:
    """Run a long-lived process of the hub (`nrm up`, `nrm run`, a worker; the bench and its
    relays, so that the ceilings run on the same loop) on uvloop: libuv's event loop, in C.
    Every message costs the hub a few loop iterations, a socket write or read and a timer;
    asyncio's own loop does each in Python (docs/PERFORMANCE.md item 30). Short commands keep
    `asyncio.run`: they would not notice.

    Once `main` is done, what it left running is cancelled and given EXIT_GRACE_SECONDS, not
    for ever as `asyncio.run` gives it: a task that swallows its cancellation kept workers
    alive, orphaned, after `nrm up` was gone (seen after the kill -9 tests); such tasks are
    logged by name and the process exits anyway."""
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(main)
    finally:
        try:
            _cancel_what_is_left(loop)
        finally:
            asyncio.set_event_loop(None)
            loop.close()


EXIT_GRACE_SECONDS = 5.0


def _cancel_what_is_left(loop: asyncio.AbstractEventLoop) -> None:
    left = asyncio.all_tasks(loop)
    for task in left:
        task.cancel()
    if left:
        _, stuck = loop.run_until_complete(asyncio.wait(left, timeout=EXIT_GRACE_SECONDS))
        if stuck:
            log.warning(
                "process.tasks_left_running",
                tasks=sorted(_task_name(task) for task in stuck),
            )
    for ending in (loop.shutdown_asyncgens(), loop.shutdown_default_executor()):
        with contextlib.suppress(TimeoutError):
            loop.run_until_complete(asyncio.wait_for(ending, EXIT_GRACE_SECONDS))


def _task_name(task: asyncio.Task[Any]) -> str:
    coro = task.get_coro()
    return getattr(coro, "__qualname__", None) or task.get_name()


class StopRequested(asyncio.CancelledError):
    """Raised by `stop_if_cancelled`: the task's cancel count is raised, though the
    cancellation itself was swallowed on the way (nats-py reports it as a timeout)."""


def stop_if_cancelled() -> None:
    """nats-py reports a cancellation as a timeout or a closed connection when the connection
    is closing; a loop that retries on those must not swallow the service's stop."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise StopRequested


@dataclass
class Lifetime:
    """Whether a service was asked to stop; its loops ask before they restart."""

    stopping: bool = False

    def stop(self) -> None:
        self.stopping = True


async def keep_running(
    lifetime: Lifetime, service: str, name: str, run: Callable[[], Awaitable[None]]
) -> None:
    """Run `run()` until the service stops; restart it, with a growing delay, whenever it
    ends before that: it returned, raised, or read a cancel count nobody asked for.

    A cancellation delivered to this task (`CancelledError` itself, not `StopRequested`) is
    always a stop: someone cancelled it on purpose. One that a library swallowed on the way
    cannot be told from a stray count unless the service said it is stopping, so stop these
    loops with `stop_loops`, never with a bare `cancel()`."""
    delay = FIRST_RESTART_DELAY_SECONDS
    while True:
        started = time.monotonic()
        try:
            await run()
            why = "returned"
        except StopRequested:
            if lifetime.stopping:
                raise
            why = "a cancel count left raised without a stop"
            _clear_cancel_count()
        except Exception as exc:  # a CancelledError delivered as such is not one: a stop
            # By type only: a loop's exception text may quote what it was working on.
            why = f"{type(exc).__name__} escaped the loop"
        if lifetime.stopping:
            return
        if time.monotonic() - started > MAX_RESTART_DELAY_SECONDS:
            delay = FIRST_RESTART_DELAY_SECONDS  # it had been running well: not a crash loop
        log.error("loop.restarted", loop=name, reason=why, restart_in=delay)
        LOOP_RESTARTS.labels(service, name).inc()
        await asyncio.sleep(delay)
        delay = min(delay * 2, MAX_RESTART_DELAY_SECONDS)


def loop_name(loop: Callable[[], Awaitable[None]]) -> str:
    """A loop's name for logs and metrics: its function's, with a partial's arguments (the
    relay's peer), which are names and never personal data."""
    if isinstance(loop, functools.partial):
        arguments = ",".join(str(a) for a in loop.args if isinstance(a, str))
        name = loop_name(loop.func)
        return f"{name}({arguments})" if arguments else name
    return getattr(loop, "__name__", type(loop).__name__)


def _clear_cancel_count() -> None:
    task = asyncio.current_task()
    while task is not None and task.cancelling():
        task.uncancel()


async def stop_loops(lifetime: Lifetime, tasks: list[asyncio.Task[None]]) -> None:
    """Stop a service's loops: mark it stopping, cancel them, wait until every one ended."""
    lifetime.stop()
    for task in tasks:
        task.cancel()
    pending = set(tasks)
    while pending:
        _, pending = await asyncio.wait(pending, timeout=1.0)
        for task in pending:
            # A cancellation can be lost: on Python 3.11 asyncio.wait_for (under every
            # nats-py request) returns the result when it completes as the cancel lands,
            # and the loop carries on. Ask again rather than wait forever.
            task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
