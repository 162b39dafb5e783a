"""`flush_confirmed` (services/runtime/connection.py) returns only once the server has read
what the connection sent before it, against a real nats-server. nats-py's own `flush()`
sends its PING ahead of a subscription still in the client's buffer: a request made right
after it from another connection found no responders a few times in a thousand."""

from __future__ import annotations

import nats
import pytest
from nats.aio.msg import Msg

from services.runtime.connection import flush_confirmed

pytestmark = pytest.mark.integration

ROUNDS = 2_000


async def test_a_subscription_is_in_place_once_flush_confirmed_returns(nats_url: str) -> None:
    subscriber = await nats.connect(nats_url, name="subscriber")
    requester = await nats.connect(nats_url, name="requester")
    try:

        async def answer(msg: Msg) -> None:
            await msg.respond(b"here")

        unanswered = 0
        for round_ in range(ROUNDS):
            subject = f"nrm.test.flush.{round_}"
            subscription = await subscriber.subscribe(subject, cb=answer)
            await flush_confirmed(subscriber)
            try:
                await requester.request(subject, b"", timeout=5.0)
            except nats.errors.NoRespondersError:
                unanswered += 1
            await subscription.unsubscribe()
        assert unanswered == 0, f"{unanswered} of {ROUNDS} requests found no subscriber"
    finally:
        await subscriber.close()
        await requester.close()
