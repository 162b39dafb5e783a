"""The agency feed: every referral event, copied to `nrm.feed.<agency>.<referral>.<type>` in
NRM_FEEDS for each agency it is addressed to, so that NATS permissions can let an agency read
its own referrals and nothing else (the event subject does not name the provider).

Addressed to: the provider; the referrer (from the referral's request: the case's owner when
the referral was requested), the case's identifying agency and its owner now (from the
case), so they can follow their case; for an escalation, the coordinating body. A need event
(`nrm.feed.<agency>.<need id>.need.<type>`: added, referred, unmet, removed) goes to the
coordinating body and the identifying agency (named in a `need.unmet`, from the case
otherwise) and, if another agency owns the case now, to its owner. Case events that ask an
agency to act (`nrm.feed.<agency>.<case id>.<type>`): a transfer requested, accepted or
declined; a follow-up overdue; a review requested, assigned or decided (see
`case_event_addressees`).

The copy is the stored event's exact bytes; `Nats-Msg-Id` is `<event id>:<agency>`, so a
redelivered event inside the stream's duplicate window is not copied twice. Outside it an
agency may see a copy again: agencies deduplicate by the CloudEvent id.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from contracts.events import (
    CaseReviewAssigned,
    CaseReviewDecided,
    CaseReviewRequested,
    CaseTransferDeclined,
    CaseTransferred,
    CaseTransferRequested,
    Event,
    FollowUpOverdue,
    FollowUpScheduled,
    NeedEvent,
    NeedUnmet,
    ReferralEscalated,
    ReferralEvent,
    ReferralRequested,
)
from contracts.subjects import feed_subject
from services.case.case import fold_case
from services.runtime.eventstore import History
from services.runtime.logging import get_logger
from services.runtime.messaging import Delivery, ServiceHost

log = get_logger("nrm.referral.feed")


# The case events the feed copies: `contracts.subjects.CASE_EVENTS_FOR_FEED`, which the service
# table filters the durable on and the agency AsyncAPI document lists (a unit test keeps the two
# equal).
CaseEventForFeed = (
    CaseTransferRequested
    | CaseTransferred
    | CaseTransferDeclined
    | FollowUpOverdue
    | CaseReviewRequested
    | CaseReviewAssigned
    | CaseReviewDecided
)
FeedEvent = ReferralEvent | NeedEvent | CaseEventForFeed


def case_event_addressees(
    event: CaseEventForFeed, history: Iterable[Event], coordinating_body: str
) -> tuple[str, ...]:
    """A transfer: both agencies and whoever asked. An overdue follow-up: the body it was
    escalated to, the agency that scheduled it and the owner. A review: the coordinating body,
    the requester (from the request), the agency assigned and the case's owner."""
    past = list(history)
    case = fold_case([e for e in past if e.AGGREGATE == "case"])
    owner = [case.owner] if case is not None else []
    found: list[str]
    if isinstance(event, CaseTransferRequested):
        found = [event.to_agency, event.from_agency, event.requested_by]
    elif isinstance(event, CaseTransferred | CaseTransferDeclined):
        found = [event.to_agency, event.from_agency]
    elif isinstance(event, FollowUpOverdue):
        scheduled = [
            e.scheduled_by
            for e in past
            if isinstance(e, FollowUpScheduled) and e.followup_id == event.followup_id
        ]
        found = [event.escalated_to, *scheduled, *owner]
    else:
        requested = [
            e.requested_by
            for e in [event, *past]
            if isinstance(e, CaseReviewRequested) and e.review_id == event.review_id
        ]
        assigned = [
            e.assigned_to
            for e in [event, *past]
            if isinstance(e, CaseReviewAssigned) and e.review_id == event.review_id
        ]
        found = [coordinating_body, *requested, *assigned, *owner]
    return tuple(dict.fromkeys(a for a in found if a))


def addressees(
    event: FeedEvent, history: Iterable[Event], coordinating_body: str = ""
) -> tuple[str, ...]:
    """Who an event is for. A referral event: its provider (from the event, else from the
    referral's request, e.g. for a revocation), the referrer (from the request: the event
    itself or the referral's history) and, for an escalation, the body it went to. A need
    event: the coordinating body, the identifying agency and the case's owner (from the
    case's history; a `need.unmet` names the first two itself). A case event: see
    `case_event_addressees`."""
    if isinstance(event, CaseEventForFeed):
        return case_event_addressees(event, history, coordinating_body)
    if isinstance(event, NeedEvent):
        case = fold_case(list(history))
        found = [event.coordinating_body] if isinstance(event, NeedUnmet) else [coordinating_body]
        if isinstance(event, NeedUnmet):
            found.append(event.identifying_agency)
        if case is not None:
            found += [case.record.agency_id, case.owner]
        return tuple(dict.fromkeys(a for a in found if a))
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
    case = fold_case([e for e in history if e.AGGREGATE == "case"])
    if case is not None:  # the identifying agency, and the owner if another took it over
        found += [case.record.agency_id, case.owner]
    if isinstance(event, ReferralEscalated):
        found.append(event.escalated_to)
    return tuple(dict.fromkeys(str(a) for a in found if a))


def histories_to_load(event: FeedEvent) -> tuple[tuple[str, str], ...]:
    """The aggregates whose histories say who else an event is for: always its case (the
    identifying agency, the owner now); for a referral event other than the request, its
    referral too (the request names the provider of a revocation and the referrer)."""
    case = ("case", str(event.case_id))
    if not isinstance(event, ReferralEvent) or isinstance(event, ReferralRequested):
        return (case,)
    return (case, (event.AGGREGATE, event.aggregate_id()))


class AgencyFeed:
    def __init__(self, host: ServiceHost) -> None:
        self.host = host
        self.runtime = host.runtime
        # Loads under way, by aggregate: the lanes of one fetched batch share them.
        self._loading: dict[tuple[str, str], asyncio.Future[History]] = {}

    async def copy(self, delivery: Delivery) -> None:
        event = delivery.event
        if not isinstance(event, ReferralEvent | NeedEvent | CaseEventForFeed):
            return
        # The case and the referral loaded side by side (kept histories: only what is new is
        # read); each is in its own order, which is all `addressees` needs.
        loaded = await asyncio.gather(*map(self._load, histories_to_load(event)))
        history = [e.event for one in loaded for e in one.events]
        agencies = addressees(event, history, self.runtime.registry.coordinating_body)
        # The copies are published together and their acknowledgements awaited together;
        # any failure fails the delivery, which is retried (each copy's id deduplicates).
        await asyncio.gather(
            *(
                self.runtime.jetstream.publish(
                    feed_subject(agency, event.aggregate_id(), event.NAME),
                    delivery.data,
                    headers={"Nats-Msg-Id": f"{delivery.envelope.id}:{agency}"},
                )
                for agency in agencies
            )
        )
        log.info("feed.copied", event_type=event.NAME, agencies=len(agencies))

    def _load(self, key: tuple[str, str]) -> asyncio.Future[History]:
        """The aggregate's history, read once for every lane that asks while it is read.

        The consumer loop takes a fetched batch in lanes, one per referral, side by side, and
        the referrals of one case mostly come together (requested at once): each lane loaded
        the same case, from scratch, at the same moment. A load shared this way still began
        after the batch was fetched, so it holds everything stored before any event of the
        batch, which is all `addressees` needs (docs/PERFORMANCE.md item 28)."""
        loading = self._loading.get(key)
        if loading is None:
            store = self.runtime.store
            assert store is not None, "not connected"

            async def read() -> History:
                try:
                    return await store.load(*key)
                finally:  # before anyone sees it done: no later batch gets this read
                    del self._loading[key]

            loading = self._loading[key] = asyncio.ensure_future(read())
        return loading
