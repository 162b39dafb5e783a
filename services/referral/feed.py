"""The agency feed: every referral event, copied to `nrm.feed.<agency>.<referral>.<type>` in
NRM_FEEDS for each agency it is addressed to, so that NATS permissions can let an agency read
its own referrals and nothing else (the event subject does not name the provider).

Addressed to: the provider; the referrer (the case's identifying agency, from the referral's
request), so it can follow its case; for an escalation, the coordinating body. An unmet need
(`need.unmet`, `nrm.feed.<agency>.<need id>.need.unmet`) goes to the coordinating body and
the identifying agency, both named in the event.

The copy is the stored event's exact bytes; `Nats-Msg-Id` is `<event id>:<agency>`, so a
redelivered event inside the stream's duplicate window is not copied twice. Outside it an
agency may see a copy again: agencies deduplicate by the CloudEvent id.
"""

from __future__ import annotations

from collections.abc import Iterable

from contracts.events import Event, NeedUnmet, ReferralEscalated, ReferralEvent, ReferralRequested
from contracts.subjects import feed_subject
from services.runtime.logging import get_logger
from services.runtime.messaging import Delivery, ServiceHost
from services.runtime.service_table import consumer

log = get_logger("nrm.referral.feed")


def addressees(event: ReferralEvent | NeedUnmet, history: Iterable[Event]) -> tuple[str, ...]:
    """Who an event is for. A referral event: its provider (from the event, else from the
    referral's request, e.g. for a revocation), the referrer (from the request: the event
    itself or the referral's history) and, for an escalation, the body it went to. An unmet
    need: the coordinating body and the identifying agency."""
    if isinstance(event, NeedUnmet):
        return tuple(dict.fromkeys((event.coordinating_body, event.identifying_agency)))
    request = (
        event
        if isinstance(event, ReferralRequested)
        else next((e for e in history if isinstance(e, ReferralRequested)), None)
    )
    provider = getattr(event, "provider_id", None)
    if provider is None and request is not None:
        provider = request.provider_id
    found = [provider] if provider is not None else []
    if request is not None:
        found.append(request.referrer_id)
    if isinstance(event, ReferralEscalated):
        found.append(event.escalated_to)
    return tuple(dict.fromkeys(str(a) for a in found))


def needs_history(event: ReferralEvent | NeedUnmet) -> bool:
    """A request and an unmet need name everyone they are for; any other referral event
    needs its referral's request (the referrer, and the provider of a revocation): one load."""
    return not isinstance(event, ReferralRequested | NeedUnmet)


class AgencyFeed:
    def __init__(self, host: ServiceHost) -> None:
        self.host = host
        self.runtime = host.runtime

    def register(self) -> None:
        self.host.consume(consumer("referral-feed"), self.on_referral_event)

    async def on_referral_event(self, delivery: Delivery) -> None:
        event = delivery.event
        if not isinstance(event, ReferralEvent | NeedUnmet):
            return
        history: list[Event] = []
        if needs_history(event):
            assert self.runtime.store is not None, "not connected"
            loaded = await self.runtime.store.load(event.AGGREGATE, event.aggregate_id())
            history = [e.event for e in loaded.events]
        agencies = addressees(event, history)
        for agency in agencies:
            await self.runtime.jetstream.publish(
                feed_subject(agency, event.aggregate_id(), event.NAME),
                delivery.data,
                headers={"Nats-Msg-Id": f"{delivery.envelope.id}:{agency}"},
            )
        log.info("feed.copied", event_type=event.NAME, agencies=len(agencies))
