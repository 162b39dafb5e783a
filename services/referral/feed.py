"""The agency feed: every referral event, copied to `nrm.feed.<agency>.<referral>.<type>` in
NRM_FEEDS for each agency it is addressed to, so that NATS permissions can let an agency read
its own referrals and nothing else (the event subject does not name the provider).

The copy is the stored event's exact bytes; `Nats-Msg-Id` is `<event id>:<agency>`, so a
redelivered event inside the stream's duplicate window is not copied twice. Outside it an
agency may see a copy again: agencies deduplicate by the CloudEvent id.
"""

from __future__ import annotations

from collections.abc import Iterable

from contracts.events import Event, ReferralEscalated, ReferralEvent, ReferralRequested
from contracts.subjects import feed_subject
from services.runtime.logging import get_logger
from services.runtime.messaging import Delivery, ServiceHost
from services.runtime.service_table import consumer

log = get_logger("nrm.referral.feed")


def addressees(event: ReferralEvent, history: Iterable[Event]) -> tuple[str, ...]:
    """Who a referral event is for: its provider (from the event, else from the referral's
    request, e.g. for a revocation) and, for an escalation, the body it went to."""
    provider = getattr(event, "provider_id", None)
    if provider is None:
        provider = next((e.provider_id for e in history if isinstance(e, ReferralRequested)), None)
    found = [provider] if provider is not None else []
    if isinstance(event, ReferralEscalated):
        found.append(event.escalated_to)
    return tuple(dict.fromkeys(str(a) for a in found))


class AgencyFeed:
    def __init__(self, host: ServiceHost) -> None:
        self.host = host
        self.runtime = host.runtime

    def register(self) -> None:
        self.host.consume(consumer("referral-feed"), self.on_referral_event)

    async def on_referral_event(self, delivery: Delivery) -> None:
        event = delivery.event
        if not isinstance(event, ReferralEvent):
            return
        history: list[Event] = []
        if getattr(event, "provider_id", None) is None:
            assert self.runtime.store is not None, "not connected"
            loaded = await self.runtime.store.load("referral", str(event.referral_id))
            history = [e.event for e in loaded.events]
        for agency in addressees(event, history):
            await self.runtime.jetstream.publish(
                feed_subject(agency, str(event.referral_id), event.NAME),
                delivery.data,
                headers={"Nats-Msg-Id": f"{delivery.envelope.id}:{agency}"},
            )
        log.info("feed.copied", event_type=event.NAME, agencies=len(addressees(event, history)))
