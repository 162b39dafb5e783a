"""A small client for agency systems, the demo and tests: send a command, get the reply."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from nats.aio.client import Client
from nats.errors import ConnectionClosedError, NoRespondersError

from contracts.commands import Command
from contracts.subjects import command_subject


class HubClient:
    def __init__(self, nc: Client, timeout: float = 5.0) -> None:
        self._nc = nc
        self._timeout = timeout

    async def send_raw(self, subject: str, body: bytes) -> dict[str, Any]:
        """The reply envelope (a CloudEvent) as a dict."""
        reply = await self._nc.request(subject, body, timeout=self._timeout)
        envelope: dict[str, Any] = json.loads(reply.data)
        return envelope

    async def send(self, command: Command) -> dict[str, Any]:
        """The reply's data: {"status": "accepted", ...} or {"status": "rejected", ...}."""
        envelope = await self.send_raw(
            command_subject(type(command)), command.model_dump_json().encode()
        )
        data: dict[str, Any] = envelope["data"]
        return data

    async def send_until_answered(self, command: Command, within: float = 30.0) -> dict[str, Any]:
        """Send, and resend the same command (same command_id, so it is applied at most once)
        while the hub is unreachable, restarting or answers `unavailable`, until it gives a
        definite answer or `within` passes."""
        deadline = time.monotonic() + within
        delay = 0.1
        while True:
            try:
                reply = await self.send(command)
                if not _unavailable(reply) or time.monotonic() + delay > deadline:
                    return reply
            except (NoRespondersError, TimeoutError, ConnectionClosedError):
                if time.monotonic() + delay > deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


def _unavailable(reply: dict[str, Any]) -> bool:
    errors = reply.get("errors") or []
    return reply.get("status") == "rejected" and all(e["code"] == "unavailable" for e in errors)
