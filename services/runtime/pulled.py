"""A durable pull consumer's messages as they come, with the pull requests sent ahead.

nats-py's `fetch` pays for every batch: a `no_wait` pull request and the server's status
answer to it, then, when nothing was waiting, a second request that lingers; and it waits
for each message of the batch with a timer and a task of its own. At saturation the hub's
consumers take 1-5 messages per fetch, so that is a request and a status message for every
two or three events, and most of the consumer loop's own CPU (docs/PERFORMANCE.md item 29).

`PulledMessages` keeps requests for up to `REQUEST_BATCH` messages open at the server
(each expiring after `REQUEST_EXPIRES_SECONDS`) and asks for more only when fewer than half
of that are still to come. The server delivers into one inbox subscription as soon as a
message is stored (and, for a consumer at its `max_ack_pending`, as soon as an ack frees a
place); `take` hands over what has arrived. What it does not do is settle anything: the one
consumer loop (messaging.consume) acks, naks and terminates, exactly as before.

A request can be lost without an answer: the server restarted, or the connection dropped
and came back. Both are a reconnect of the client, after which every request is counted as
gone and asked for again; a request whose expiry passed without its 408 is forgotten too.
A 409 (the consumer deleted, a leader change, too many requests waiting) voids every open
request: `take` raises `PullRefused`, and the loop's wait-and-retry follows.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError

REQUEST_BATCH = 64  # messages asked for per request
REQUEST_EXPIRES_SECONDS = 5.0  # an idle request is renewed this often
LOST_AFTER_SECONDS = 1.0  # past its expiry with no answer: the request is gone
_STATUS = "Status"
_NO_MESSAGES, _EXPIRED, _REFUSED = "404", "408", "409"


class PullRefused(NatsError):
    """The server voided the consumer's pull requests (409): deleted, moved, or overloaded."""


class PulledMessages:
    """One durable's messages, taken as they arrive (see the module docstring)."""

    def __init__(self, nc: Client, stream: str, durable: str) -> None:
        self._nc = nc
        self._api = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._inbox = nc.new_inbox()
        self._sub: Subscription | None = None
        self._arrived: deque[Msg] = deque()
        self._wake = asyncio.Event()
        # Per open request, oldest first (the server serves them in that order): how many
        # messages it may still bring, and when it is forgotten if nothing says it ended.
        self._open: deque[list[float]] = deque()
        self._reconnects = self._nc.stats["reconnects"]
        self._refusal: str | None = None

    async def open(self) -> None:
        self._sub = await self._nc.subscribe(self._inbox, cb=self._on_message)

    async def close(self) -> None:
        """Stop receiving. Messages delivered and not taken are redelivered after the
        consumer's ack wait, as any unacknowledged message is."""
        if self._sub is not None:
            sub, self._sub = self._sub, None
            await sub.unsubscribe()

    async def take(self, most: int, timeout: float) -> list[Msg]:
        """Up to `most` messages, in the order they came; waits up to `timeout` for the
        first (TimeoutError). Raises `PullRefused` once for a 409 received meanwhile."""
        deadline = time.monotonic() + timeout
        while not self._arrived:
            self._raise_refusal()
            self._wake.clear()  # before asking: whatever comes meanwhile wakes the wait
            await self._ask()
            if self._arrived or self._refusal is not None:
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            await asyncio.wait_for(self._wake.wait(), left)
        taken = [self._arrived.popleft() for _ in range(min(most, len(self._arrived)))]
        await self._ask()  # ahead: the next messages come while these are handled
        return taken

    def _raise_refusal(self) -> None:
        refusal, self._refusal = self._refusal, None
        if refusal is not None:
            raise PullRefused(refusal)

    async def _ask(self) -> None:
        """Send a request when fewer than half a batch are still to come."""
        now = time.monotonic()
        if self._nc.stats["reconnects"] != self._reconnects:
            self._reconnects = self._nc.stats["reconnects"]
            self._open.clear()  # the server forgot them, or will: nobody was subscribed
        while self._open and self._open[0][1] < now:
            self._open.popleft()
        if sum(remaining for remaining, _ in self._open) > REQUEST_BATCH // 2:
            return
        request = {"batch": REQUEST_BATCH, "expires": int(REQUEST_EXPIRES_SECONDS * 1e9)}
        await self._nc.publish(self._api, json.dumps(request).encode(), reply=self._inbox)
        self._open.append([REQUEST_BATCH, now + REQUEST_EXPIRES_SECONDS + LOST_AFTER_SECONDS])

    async def _on_message(self, msg: Msg) -> None:
        # A delivery always carries its ack subject, a status message never: told apart by
        # that, not by a "Status" header, which any publisher may set on a message.
        if msg.reply:
            self._arrived.append(msg)
            self._delivered()
            self._wake.set()
            return
        status = msg.headers.get(_STATUS) if msg.headers else None
        if status in (_EXPIRED, _NO_MESSAGES):
            if self._open:
                self._open.popleft()
        elif status == _REFUSED:
            self._open.clear()
            self._refusal = (msg.headers or {}).get("Description", "409")
        else:  # no heartbeats are asked for; any other status changes nothing
            return
        self._wake.set()

    def _delivered(self) -> None:
        if not self._open:
            return
        self._open[0][0] -= 1
        if self._open[0][0] <= 0:
            self._open.popleft()
