"""The hub's subscribers take their message on the event loop. FastStream runs a plain
function given as a decoder, and the injection of a `NatsMessage` argument, in a worker
thread (anyio's): two thread hops of ~0.15 ms for every command (docs/PERFORMANCE.md item
27). FastStream's in-memory broker runs the same decoding and injection path as the real one,
so it shows which of the two a broker's settings take."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import anyio.to_thread
import pytest
from faststream.nats import NatsBroker, NatsMessage, TestNatsBroker

from services.runtime.messaging import BROKER_DECODING

BODY = b'{"not": "parsed"}'


@pytest.fixture
def thread_hops(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """What FastStream hands to a worker thread meanwhile, by function name."""
    hops: list[str] = []
    run_sync = anyio.to_thread.run_sync

    async def recorded(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        hops.append(getattr(func, "__name__", type(func).__name__))
        return await run_sync(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", recorded)
    yield hops


async def taken(broker: NatsBroker) -> list[tuple[bytes, str]]:
    """Body and subject of a message as a subscriber of `broker` is handed it."""
    seen: list[tuple[bytes, str]] = []

    @broker.subscriber("nrm.cmd.test.kg-police")
    async def on_command(msg: NatsMessage) -> None:
        seen.append((msg.body, msg.raw_message.subject))

    async with TestNatsBroker(broker) as test_broker:
        await test_broker.publish(BODY, "nrm.cmd.test.kg-police")
    return seen


async def test_the_hubs_subscribers_take_the_message_as_it_came_on_the_loop(
    thread_hops: list[str],
) -> None:
    assert await taken(NatsBroker(**BROKER_DECODING)) == [(BODY, "nrm.cmd.test.kg-police")]
    assert thread_hops == []


async def test_faststreams_defaults_would_hop_to_a_thread(thread_hops: list[str]) -> None:
    """The control: a plain decoder function and an injected `NatsMessage` hop once each."""

    def plain(msg: NatsMessage) -> bytes:
        return msg.body

    assert await taken(NatsBroker(decoder=plain)) == [(BODY, "nrm.cmd.test.kg-police")]
    assert thread_hops == ["plain", "partial"]
