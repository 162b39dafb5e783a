"""What the statistics replay's one-pass read does not take goes the general way, as before:
a stored message that is not an envelope is skipped and counted ("unreadable message", and
the readers' metric), an envelope whose event cannot be read counts as "unreadable <type>",
and the events around them are folded."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from nats.aio.client import Client

from contracts.envelope import schema_uri, wrap_event
from contracts.events import ShelterRegistered
from contracts.subjects import EVENTS_STREAM, event_subject
from contracts.vocabulary import Region, ShelterCategory
from services.bootstrap import bootstrap
from services.runtime.settings import Settings
from services.runtime.stored_messages import UNREADABLE
from services.statistics.reader import replay

pytestmark = pytest.mark.integration


def registered(shelter: str, dataschema: str | None = None) -> tuple[str, bytes]:
    event = ShelterRegistered(
        shelter_id=shelter, region=Region.OSH_CITY, capacity={ShelterCategory.WOMEN: 2}
    )
    envelope = wrap_event(
        event,
        event_id=uuid.uuid4(),
        source="urn:nrm-hub:kg:shelter",
        time=dt.datetime.now(dt.UTC),
        correlation_id=None,
        causation_id=None,
    )
    if dataschema is not None:
        envelope = envelope.model_copy(update={"dataschema": dataschema})
    return event_subject(event), envelope.to_bytes()


async def test_unreadable_messages_and_events_are_counted_as_before(
    settings: Settings, nc: Client
) -> None:
    assert settings.nats_url is not None
    await bootstrap(settings.nats_url, settings)
    js = nc.jetstream()
    skipped = UNREADABLE.labels(EVENTS_STREAM)._value.get()
    good = registered("kg-shelter-a")
    older = registered("kg-shelter-b", schema_uri("shelter.registered", 0))  # no upcaster
    for subject, data in (good, (good[0], b"{not an envelope"), older, registered("kg-c")):
        await js.publish(subject, data)

    read = await replay(nc)
    assert read.state.events_applied == 2
    assert set(read.state.shelters) == {"kg-shelter-a", "kg-c"}
    assert read.state.ignored == {"unreadable message": 1, "unreadable shelter.registered": 1}
    assert read.state.last_sequence == 4
    assert UNREADABLE.labels(EVENTS_STREAM)._value.get() == skipped + 1
