"""Bootstrap brings the durables of a hub that is already running to the current settings
(here the ack wait, which bounds how long a crash holds in-flight events back)."""

from __future__ import annotations

import pytest
from nats.aio.client import Client

from contracts.subjects import EVENTS_STREAM
from services.bootstrap import bootstrap
from services.runtime.service_table import consumer
from services.runtime.settings import Settings
from services.runtime.topology import ACK_WAIT_SECONDS

pytestmark = pytest.mark.integration


async def test_bootstrap_updates_an_existing_durables_ack_wait(
    settings: Settings, nc: Client
) -> None:
    assert settings.nats_url is not None
    await bootstrap(settings.nats_url, settings)
    js = nc.jetstream()
    spec = consumer("referral-on-identification")
    old = spec.config(settings)
    old.ack_wait = 30.0  # what an earlier release created
    await js.add_consumer(EVENTS_STREAM, old)
    assert (await js.consumer_info(EVENTS_STREAM, spec.durable)).config.ack_wait == 30.0
    await bootstrap(settings.nats_url, settings)
    updated = (await js.consumer_info(EVENTS_STREAM, spec.durable)).config.ack_wait
    assert updated == ACK_WAIT_SECONDS < 30.0
