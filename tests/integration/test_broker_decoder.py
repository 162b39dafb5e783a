"""The hub's subscribers take their message on the event loop, against a real nats-server.
FastStream runs a plain function given as a decoder, and the injection of a `NatsMessage`
argument, in a worker thread (anyio's): two thread hops of ~0.15 ms for every command
(docs/PERFORMANCE.md item 27). The broker's settings decide which path a message takes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import anyio.to_thread
import pytest
from faststream.nats import NatsBroker, NatsMessage
from nats.aio.client import Client

from services.runtime.connection import flush_confirmed
from services.runtime.messaging import BROKER_DECODING

pytestmark = pytest.mark.integration

BODY = b'{"not": "parsed"}'
SUBJECT = "nrm.cmd.test.kg-police"


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


async def taken(nats_url: str, nc: Client, **settings: Any) -> list[tuple[bytes, str]]:
    """Body and subject of a request as a subscriber of a broker with `settings` is handed
    it, answered before this returns."""
    seen: list[tuple[bytes, str]] = []
    broker = NatsBroker(nats_url, logger=None, **settings)

    @broker.subscriber(SUBJECT)
    async def on_command(msg: NatsMessage) -> bytes:
        seen.append((msg.body, msg.raw_message.subject))
        return b"ok"

    async with broker:
        await broker.start()
        await flush_confirmed(broker.connection)  # the server has the subscription
        assert (await nc.request(SUBJECT, BODY, timeout=5.0)).data == b"ok"
    await asyncio.sleep(0)
    return seen


async def test_the_hubs_subscribers_take_the_message_as_it_came_on_the_loop(
    nats_url: str, nc: Client, thread_hops: list[str]
) -> None:
    assert await taken(nats_url, nc, **BROKER_DECODING) == [(BODY, SUBJECT)]
    assert thread_hops == []


async def test_faststreams_defaults_would_hop_to_a_thread(
    nats_url: str, nc: Client, thread_hops: list[str]
) -> None:
    """The control: a plain decoder function and an injected `NatsMessage` hop once each."""

    def plain(msg: NatsMessage) -> bytes:
        return msg.body

    assert await taken(nats_url, nc, decoder=plain) == [(BODY, SUBJECT)]
    assert thread_hops == ["plain", "partial"]
