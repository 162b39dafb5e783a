"""Reading the whole event stream into the statistics projection (the only I/O here).

NRM_EVENTS is read from the first event after `state.last_sequence`, in stream order,
through the hub's one reader (batched direct get, services/runtime/stored_messages.py); each
event is folded with its stream sequence. A message that is not an event is skipped and
counted (the reader's policy), here also as "unreadable message" in `ignored`."""

from __future__ import annotations

import time
from dataclasses import dataclass

from nats.aio.client import Client

from contracts.subjects import EVENT_PREFIX, EVENTS_STREAM
from services.runtime.stored_messages import StreamReader, decoded_envelope
from services.statistics.projection import StatsState, apply

_BATCH = 1024


@dataclass(frozen=True)
class Replay:
    state: StatsState
    seconds: float

    @property
    def events_per_second(self) -> float:
        return self.state.events_applied / self.seconds if self.seconds > 0 else 0.0


async def replay(nc: Client, state: StatsState | None = None) -> Replay:
    """Fold every event of NRM_EVENTS after `state.last_sequence` into `state`."""
    state = state if state is not None else StatsState()
    started = time.perf_counter()
    reader = StreamReader(nc, EVENTS_STREAM, batch=_BATCH, timeout=10.0)
    async for message in reader.messages(f"{EVENT_PREFIX}.>", start=state.last_sequence + 1):
        envelope = decoded_envelope(message)
        if envelope is None:
            state.ignored["unreadable message"] += 1
            continue
        apply(state, envelope, message.sequence)
    return Replay(state, time.perf_counter() - started)
