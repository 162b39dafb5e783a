"""Reading the whole event stream into the statistics projection (the only I/O here).

NRM_EVENTS is read from the first event after `state.last_sequence` to its last event when
the read began, in stream order, by the operators' replay reader (an ordered consumer,
services/runtime/stored_messages.py `replay_batches`: `nrm stats` connects as the operators'
`admin` user, who may create one); each event is folded with its stream sequence. Envelope
and event are read in one pass (`read_current_event`); what that pass does not take (an older
version, a message that is not the contract) goes the general way, which decides as before:
a message that is not an envelope is skipped and counted (the reader's policy), here also as
"unreadable message" in `ignored`; an envelope whose event cannot be read counts as
"unreadable <type>". The cyclic collector is paused while the state grows (as for the
projection replay: services/audit/replay.py `collector_paused`)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from nats.aio.client import Client

from contracts.envelope import read_current_event
from contracts.subjects import EVENT_PREFIX, EVENTS_STREAM
from services.audit.replay import collector_paused
from services.runtime.stored_messages import StoredMessage, decoded_envelope, replay_batches
from services.statistics.projection import StatsState, apply, apply_event


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
    subject = f"{EVENT_PREFIX}.>"
    with collector_paused():
        runs = replay_batches(nc, EVENTS_STREAM, subject, start=state.last_sequence + 1)
        async for run in runs:
            for sequence, data in run:
                read = read_current_event(data)
                if read is not None:
                    apply_event(state, read[1], read[0], sequence)
                    continue
                # Skipped messages are logged by stream and sequence only (never content).
                envelope = decoded_envelope(
                    StoredMessage(EVENTS_STREAM, sequence, subject, data, {})
                )
                if envelope is None:
                    state.ignored["unreadable message"] += 1
                    continue
                apply(state, envelope, sequence)
    return Replay(state, time.perf_counter() - started)
