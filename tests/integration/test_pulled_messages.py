"""`PulledMessages` (services/runtime/pulled.py), the consumer loop's source of messages,
against a real nats-server: every message in order, with a pull request for every half batch
instead of one or two per fetch; a consumer at its max_ack_pending served as it acks; idle
requests renewed; requests sent again after the server restarts; a deleted consumer refused,
then taken again once it is back; a message with a `Status` header of its own still taken."""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

from services.runtime import pulled
from services.runtime.connection import flush_confirmed
from services.runtime.embedded import EmbeddedNats
from services.runtime.pulled import REQUEST_BATCH, PulledMessages, PullRefused

pytestmark = pytest.mark.integration

STREAM, DURABLE = "PULL_TEST", "puller"


async def _stream_and_consumer(nc: Client, max_ack_pending: int = 1000) -> None:
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name=STREAM, subjects=["pull.>"]))
    await js.add_consumer(
        STREAM,
        ConsumerConfig(
            durable_name=DURABLE,
            ack_policy=AckPolicy.EXPLICIT,
            max_ack_pending=max_ack_pending,
        ),
    )


async def _requests_seen(nc: Client) -> list[bytes]:
    """Every pull request sent for the durable, as the server receives them."""
    seen: list[bytes] = []

    async def on_request(msg: Msg) -> None:
        seen.append(msg.data)

    await nc.subscribe(f"$JS.API.CONSUMER.MSG.NEXT.{STREAM}.{DURABLE}", cb=on_request)
    await flush_confirmed(nc)
    return seen


async def _take_all(messages: PulledMessages, count: int, most: int = 64) -> list[bytes]:
    bodies: list[bytes] = []
    while len(bodies) < count:
        for msg in await messages.take(most, timeout=10.0):
            bodies.append(msg.data)
            await msg.ack()
    return bodies


async def test_every_message_in_order_with_a_request_for_every_half_batch(nc: Client) -> None:
    await _stream_and_consumer(nc)
    requests = await _requests_seen(nc)
    js = nc.jetstream()
    sent = [f"m{i}".encode() for i in range(10 * REQUEST_BATCH)]
    messages = PulledMessages(nc, STREAM, DURABLE)
    await messages.open()
    try:
        await js.publish("pull.a", sent[0])  # one waiting before the first request
        taken = await messages.take(8, timeout=10.0)
        for body in sent[1:]:
            await js.publish("pull.a", body)
        for msg in taken:
            await msg.ack()
        bodies = [msg.data for msg in taken] + await _take_all(
            messages, len(sent) - len(taken), most=8
        )
    finally:
        await messages.close()
    assert bodies == sent
    # nats-py's fetch of 8 sends one or two requests per batch: here ~80 batches.
    assert 1 <= len(requests) <= 2 * len(sent) // REQUEST_BATCH + 2


async def test_a_consumer_at_its_max_ack_pending_gets_each_next_message_as_it_acks(
    nc: Client,
) -> None:
    await _stream_and_consumer(nc, max_ack_pending=1)
    requests = await _requests_seen(nc)
    js = nc.jetstream()
    for i in range(5):
        await js.publish("pull.one", str(i).encode())
    messages = PulledMessages(nc, STREAM, DURABLE)
    await messages.open()
    try:
        bodies: list[bytes] = []
        for _ in range(5):
            taken = await messages.take(1, timeout=10.0)
            assert len(taken) == 1
            bodies.append(taken[0].data)
            await taken[0].ack_sync()
    finally:
        await messages.close()
    assert bodies == [b"0", b"1", b"2", b"3", b"4"]
    assert len(requests) == 1  # the one request stays open and brings each next one


async def test_an_idle_request_is_renewed_and_a_later_message_still_comes(
    nc: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pulled, "REQUEST_EXPIRES_SECONDS", 0.3)
    await _stream_and_consumer(nc)
    requests = await _requests_seen(nc)
    messages = PulledMessages(nc, STREAM, DURABLE)
    await messages.open()
    try:
        with pytest.raises(TimeoutError):
            await messages.take(8, timeout=0.2)
        for _ in range(4):  # each wait outlives the request it started with
            with pytest.raises(TimeoutError):
                await messages.take(8, timeout=0.5)
        await nc.jetstream().publish("pull.late", b"late")
        assert [m.data for m in await messages.take(8, timeout=5.0)] == [b"late"]
    finally:
        await messages.close()
    assert len(requests) >= 3


async def test_requests_are_sent_again_after_the_server_restarts(
    nats_server: EmbeddedNats, nc: Client
) -> None:
    await _stream_and_consumer(nc)
    messages = PulledMessages(nc, STREAM, DURABLE)
    await messages.open()
    try:
        with pytest.raises(TimeoutError):
            await messages.take(8, timeout=0.2)  # a request is open at the server
        nats_server.stop()
        await nats_server.start()  # same port, same store: the request is not there
        for _ in range(200):
            if nc.is_connected:
                break
            await asyncio.sleep(0.1)
        await nc.jetstream().publish("pull.after", b"after")
        assert await _taken_eventually(messages) == [b"after"]
    finally:
        await messages.close()


async def _taken_eventually(messages: PulledMessages) -> list[bytes]:
    """What `take` hands over once it does, as the consumer loop would retry it: a refusal
    (the server said it shut down, or the consumer was deleted) and idle waits go on."""
    for _ in range(40):
        try:
            return [m.data for m in await messages.take(8, timeout=0.5)]
        except (TimeoutError, PullRefused):
            continue
    raise AssertionError("nothing taken in 20 s")


async def test_a_deleted_consumer_is_refused_then_taken_again_once_back(nc: Client) -> None:
    await _stream_and_consumer(nc)
    js = nc.jetstream()
    messages = PulledMessages(nc, STREAM, DURABLE)
    await messages.open()
    try:
        with pytest.raises(TimeoutError):
            await messages.take(8, timeout=0.2)
        await js.delete_consumer(STREAM, DURABLE)
        with pytest.raises(PullRefused):
            for _ in range(20):
                await messages.take(8, timeout=0.5)
        await js.add_consumer(
            STREAM, ConsumerConfig(durable_name=DURABLE, ack_policy=AckPolicy.EXPLICIT)
        )
        await js.publish("pull.back", b"back")
        assert await _taken_eventually(messages) == [b"back"]
    finally:
        await messages.close()


async def test_a_message_with_a_status_header_of_its_own_is_still_a_message(nc: Client) -> None:
    """Status answers are told apart by having no ack subject, not by their header: a
    publisher may set "Status: 408" on a message, and it must still be taken (and acked)."""
    await _stream_and_consumer(nc)
    js = nc.jetstream()
    await js.publish("pull.odd", b"odd", headers={"Status": "408", "Description": "x"})
    await js.publish("pull.even", b"even")
    messages = PulledMessages(nc, STREAM, DURABLE)
    await messages.open()
    try:
        assert await _take_all(messages, 2) == [b"odd", b"even"]
    finally:
        await messages.close()
