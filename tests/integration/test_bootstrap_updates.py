"""Bootstrap brings the durables of a hub that is already running to the current settings
(here the ack wait, which bounds how long a crash holds in-flight events back), and retires
the durables whose work another one took over without skipping an event of that work."""

from __future__ import annotations

import nats
import pytest
from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from contracts.subjects import EVENT_PREFIX, EVENTS_STREAM
from services.bootstrap import bootstrap
from services.runtime.connection import ADMIN_ROLE, connect_options
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


async def _earlier_release(js: JetStreamContext, events: int = 8) -> str:
    """What an earlier release left: the deadline projection's own durable on the referral
    events, and `events` such events stored. Returns that durable's name."""
    [retired] = consumer("referral-feed").takes_over
    earlier = ConsumerConfig(
        durable_name=retired,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        filter_subjects=[f"{EVENT_PREFIX}.referral.>"],
    )
    await js.add_consumer(EVENTS_STREAM, earlier)
    for n in range(events):
        await js.publish(f"{EVENT_PREFIX}.referral.r{n}.referral.requested", b"{}")
    return retired


async def _acked_up_to(nc: Client, durable: str, last: int) -> None:
    """Take and acknowledge `durable`'s events in order up to stream sequence `last`."""
    subscription = await nc.jetstream().pull_subscribe_bind(durable, EVENTS_STREAM)
    while True:
        [message] = await subscription.fetch(1, timeout=2)
        await message.ack_sync()
        if message.metadata.sequence.stream >= last:
            break
    await subscription.unsubscribe()


async def _next_sequence(nc: Client, durable: str) -> int:
    subscription = await nc.jetstream().pull_subscribe_bind(durable, EVENTS_STREAM)
    [message] = await subscription.fetch(1, timeout=2)
    await message.nak()
    await subscription.unsubscribe()
    return message.metadata.sequence.stream


@pytest.mark.parametrize(
    ("retired_done", "taking_done", "resumes_at"),
    [(3, 6, 4), (5, 2, 3)],
    ids=["the retired durable behind", "the retired durable ahead"],
)
async def test_a_durable_taking_over_a_retired_ones_work_skips_no_event_of_it(
    settings: Settings, nc: Client, retired_done: int, taking_done: int, resumes_at: int
) -> None:
    """An earlier release kept the referral deadline projection with a durable of its own;
    the agency feed's durable does that work now. Upgrading must not skip an event the
    projection had not taken yet, whichever of the two was ahead."""
    assert settings.nats_url is not None
    await bootstrap(settings.nats_url, settings)
    js = nc.jetstream()
    feed = consumer("referral-feed")
    retired = await _earlier_release(js)
    await _acked_up_to(nc, retired, retired_done)
    await _acked_up_to(nc, feed.durable, taking_done)

    await bootstrap(settings.nats_url, settings)
    with pytest.raises(NotFoundError):
        await js.consumer_info(EVENTS_STREAM, retired)
    assert await _next_sequence(nc, feed.durable) == resumes_at

    # Once retired, a bootstrap moves nothing back again.
    await _acked_up_to(nc, feed.durable, 7)
    await bootstrap(settings.nats_url, settings)
    assert await _next_sequence(nc, feed.durable) == 8


async def test_on_the_secured_hub_only_the_operators_retire_a_durable(
    secured_hub: Settings,
) -> None:
    """`nrm up`'s default (nkey users, per-user permissions, every service running): the
    bootstrap, as `admin`, retires the earlier release's durable; the referral service's own
    user, which runs the durable that took over, can neither move it nor delete the old one."""
    url = secured_hub.nats_url
    assert url is not None
    admin = await nats.connect(url, **connect_options(secured_hub, ADMIN_ROLE))
    referral = await nats.connect(url, **connect_options(secured_hub, "referral"))
    try:
        js = admin.jetstream()
        retired = await _earlier_release(js, events=0)  # admin writes no events
        for attempt in (
            f"$JS.API.CONSUMER.RESET.{EVENTS_STREAM}.referral-feed",
            f"$JS.API.CONSUMER.DELETE.{EVENTS_STREAM}.{retired}",
        ):
            with pytest.raises((NoRespondersError, TimeoutError)):  # refused: no answer
                await referral.request(attempt, b'{"seq": 1}', timeout=1)
        await js.consumer_info(EVENTS_STREAM, retired)  # still there

        await bootstrap(url, secured_hub)
        with pytest.raises(NotFoundError):
            await js.consumer_info(EVENTS_STREAM, retired)
    finally:
        await referral.close()
        await admin.close()


async def test_a_takeover_cut_short_between_the_reset_and_the_delete_is_finished_next_time(
    settings: Settings, nc: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash after the taking durable was moved back and before the retired one was
    deleted: the next bootstrap moves it back again to the retired one's first event not
    done (work done since is done again), then deletes it. No event of it is skipped."""
    assert settings.nats_url is not None
    await bootstrap(settings.nats_url, settings)
    js = nc.jetstream()
    feed = consumer("referral-feed")
    retired = await _earlier_release(js)
    await _acked_up_to(nc, retired, 3)
    await _acked_up_to(nc, feed.durable, 6)

    async def crash(*args: object, **kwargs: object) -> bool:
        raise ConnectionError("the bootstrap's process died here")

    with monkeypatch.context() as patched:
        patched.setattr(JetStreamContext, "delete_consumer", crash)
        with pytest.raises(ConnectionError):
            await bootstrap(settings.nats_url, settings)
    await js.consumer_info(EVENTS_STREAM, retired)  # still there
    assert await _next_sequence(nc, feed.durable) == 4
    await _acked_up_to(nc, feed.durable, 5)  # the restarted service took two more

    await bootstrap(settings.nats_url, settings)
    with pytest.raises(NotFoundError):
        await js.consumer_info(EVENTS_STREAM, retired)
    assert await _next_sequence(nc, feed.durable) == 4
