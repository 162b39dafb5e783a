"""Reading NRM_EVENTS from a real nats-server into the statistics gives the same figures as
folding the same events in memory, also when a reader picks up where it stopped. Prints how
fast the replay goes (a figure, not an assert)."""

from __future__ import annotations

import asyncio
import tracemalloc

import pytest
from nats.aio.client import Client

from contracts.envelope import Envelope, unwrap_event
from contracts.subjects import event_subject
from services.bootstrap import bootstrap
from services.runtime.settings import Settings
from services.statistics.projection import fold
from services.statistics.publish import STANDARD
from services.statistics.reader import replay
from services.statistics.tables import count
from tests.unit.synthetic_stats import REPORT_AT, generate

pytestmark = pytest.mark.integration


async def _publish(nc: Client, envelopes: list[Envelope]) -> None:
    js = nc.jetstream()
    for start in range(0, len(envelopes), 500):
        batch = envelopes[start : start + 500]
        await asyncio.gather(
            *(js.publish(event_subject(unwrap_event(e)), e.to_bytes()) for e in batch)
        )


async def test_replay_from_nats_equals_the_in_memory_fold(settings: Settings, nc: Client) -> None:
    assert settings.nats_url is not None
    await bootstrap(settings.nats_url, settings)
    envelopes = generate(seed=3, n=2000).envelopes
    first, rest = envelopes[: len(envelopes) // 2], envelopes[len(envelopes) // 2 :]
    await _publish(nc, first)
    partial = await replay(nc)
    assert partial.state.events_applied == len(first)
    await _publish(nc, rest)

    full = await replay(nc)
    tracemalloc.start()  # memory measured on a second read: tracing slows it down
    await replay(nc)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    resumed = await replay(nc, partial.state)  # continues after the last sequence it read

    expected = fold(envelopes)
    for query in STANDARD:
        want = count(expected, query, REPORT_AT).cells
        assert count(full.state, query, REPORT_AT).cells == want, query.title
        assert count(resumed.state, query, REPORT_AT).cells == want, query.title
    assert resumed.state.events_applied == full.state.events_applied == len(envelopes)
    print(
        f"\nstatistics replay: {len(envelopes)} events ({len(expected.all_cases())} cases) "
        f"in {full.seconds:.2f} s = {full.events_per_second:,.0f} events/s; "
        f"peak Python memory {peak / 1e6:.1f} MB"
    )
