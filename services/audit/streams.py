"""Reading a whole JetStream stream in order, one batch at a time (never all in memory): what
the audit service catches up from and what the auditor's commands export and replay. The
bytes are handed over as stored (a leaf hashes them), through the hub's one reader."""

from __future__ import annotations

from collections.abc import AsyncIterator

from nats.aio.client import Client

from services.runtime.stored_messages import StoredMessage, StreamReader


async def read_stream(
    nc: Client, stream: str, start: int = 1, subject: str | None = None
) -> AsyncIterator[StoredMessage]:
    """Every message from sequence `start` to the stream's end as it was when called."""
    reader = StreamReader(nc, stream)
    last = await reader.last_sequence()
    if start > last:
        return
    async for message in reader.messages(subject or ">", start=start, stop=last):
        yield message
