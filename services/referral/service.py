"""referral service: plans referrals on identification, takes providers' answers, follows
shelter placements, and escalates referrals nobody answered in time."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import services.referral.domain as domain
from contracts.commands import (
    AcceptReferral,
    CompleteReferral,
    DeclineReferral,
    RequestCrossBorderReferral,
    RevokeReferral,
)
from contracts.events import (
    Event,
    NeedUnmet,
    PlacementEvent,
    ReferralEvent,
    ReferralRequested,
    VictimIdentified,
    VictimPresumed,
)
from services.case.referrals import Referral, fold_referral
from services.referral.feed import AgencyFeed
from services.referral.link import CrossBorderLink
from services.runtime.eventstore import History
from services.runtime.keyvalue import KeyNotFound, KeyValue
from services.runtime.logging import get_logger
from services.runtime.messaging import Delivery, ServiceHost
from services.runtime.service_table import consumer
from services.runtime.topology import CASE_KEYS_BUCKET, REFERRAL_DEADLINES_BUCKET
from services.runtime.writer import Decide, Outcome

SERVICE = "referral"
log = get_logger("nrm.referral")


def _referral(history: History) -> Referral | None:
    return fold_referral([e.event for e in history.events])


def _unless_exists(first: ReferralRequested | NeedUnmet) -> Decide:
    """A referral is requested once, an unmet need recorded once: both ids are derived
    from case and service."""
    return lambda history: [] if history.events else [first]


class ReferralService:
    def __init__(self, host: ServiceHost) -> None:
        self.host = host
        self.runtime = host.runtime
        self._deadlines: KeyValue | None = None
        self.link = CrossBorderLink(host.runtime)

    def register(self) -> None:
        clock = self.runtime.clock
        self.host.command(
            AcceptReferral, self._answer(lambda ref, cmd: domain.decide_accept(ref, cmd, clock()))
        )
        self.host.command(DeclineReferral, self._answer(domain.decide_decline))
        self.host.command(CompleteReferral, self._answer(domain.decide_complete))
        self.host.command(RevokeReferral, self._answer(domain.decide_revoke))
        self.host.consume(consumer("referral-on-identification"), self.on_identification)
        self.host.consume(consumer("referral-on-placement"), self.on_placement)
        self.host.consume(consumer("referral-deadlines"), self.on_referral_event)
        self.host.needs_bucket(REFERRAL_DEADLINES_BUCKET)
        AgencyFeed(self.host).register()
        self.host.command(RequestCrossBorderReferral, self.link.request)
        self.host.consume(consumer("xb-outbox"), self.link.on_event)
        self.host.needs_bucket(CASE_KEYS_BUCKET)

    def _answer(
        self, decide: Callable[[Referral | None, Any], Sequence[Event]]
    ) -> Callable[[Any], Awaitable[tuple[str, Outcome]]]:
        """A provider's or referrer's answer to one referral, decided by `decide`."""

        async def handle(command: Any) -> tuple[str, Outcome]:
            referral_id = str(command.referral_id)
            outcome = await self.runtime.writer(SERVICE).execute(
                "referral",
                referral_id,
                cause=str(command.command_id),
                correlation=str(command.command_id),
                decide=lambda history: decide(_referral(history), command),
            )
            return referral_id, outcome

        return handle

    async def on_identification(self, delivery: Delivery) -> None:
        envelope, event = delivery.envelope, delivery.event
        if not isinstance(event, VictimIdentified | VictimPresumed):  # presumed: urgent only
            return
        settings = self.runtime.settings
        plan, unmet = domain.plan_needs(
            event,
            self.runtime.registry,
            self.runtime.clock(),
            dt.timedelta(seconds=settings.referral_response_seconds),
        )
        for referral_id, requested in plan:
            await self.runtime.writer(SERVICE).execute(
                "referral",
                str(referral_id),
                cause=envelope.id,
                correlation=envelope.correlationid,
                decide=_unless_exists(requested),
            )
        for need in unmet:
            # Once per need and cause: a redelivered identification finds it recorded.
            outcome = await self.runtime.writer(SERVICE).execute(
                "need",
                str(need.need_id),
                cause=envelope.id,
                correlation=envelope.correlationid,
                decide=_unless_exists(need),
            )
            if outcome.event_ids and not outcome.duplicate:
                log.info("need.unmet", case_id=str(need.case_id), service=need.service.value)

    async def on_placement(self, delivery: Delivery) -> None:
        envelope, event = delivery.envelope, delivery.event
        if not isinstance(event, PlacementEvent):
            return  # e.g. shelter.registered
        now = self.runtime.clock()
        await self.runtime.writer(SERVICE).execute(
            "referral",
            str(event.referral_id),
            cause=envelope.id,
            correlation=envelope.correlationid,
            decide=lambda history: domain.follow_placement(_referral(history), event, now),
        )

    async def deadlines(self) -> KeyValue:
        if self._deadlines is None:
            self._deadlines = await self.runtime.bucket(REFERRAL_DEADLINES_BUCKET)
        return self._deadlines

    async def on_referral_event(self, delivery: Delivery) -> None:
        event = delivery.event
        """Keeps the projection of open, not yet escalated referrals and their deadlines."""
        if not isinstance(event, ReferralEvent):
            return
        bucket = await self.deadlines()
        key = str(event.referral_id)
        if isinstance(event, ReferralRequested):
            await bucket.put(key, json.dumps({"respond_by": event.respond_by.isoformat()}).encode())
            return
        with contextlib.suppress(KeyNotFound):
            await bucket.delete(key)

    async def escalate_overdue(self) -> int:
        """One sweep: escalate every open referral past its deadline. Returns how many."""
        bucket = await self.deadlines()
        now = self.runtime.clock()
        escalated = 0
        for key in await bucket.keys():
            try:
                entry = await bucket.get(key)
            except KeyNotFound:
                continue
            if not entry.value:
                continue
            respond_by = dt.datetime.fromisoformat(json.loads(entry.value)["respond_by"])
            if respond_by > now:
                continue
            outcome = await self.runtime.writer(SERVICE).execute(
                "referral",
                key,
                cause=f"escalation/{key}",
                correlation=None,
                decide=lambda history: domain.decide_escalation(
                    _referral(history), now, self.runtime.registry.coordinating_body
                ),
            )
            if outcome.event_ids and not outcome.duplicate:
                escalated += 1
                log.info("referral.escalated", referral_id=key)
        return escalated

    async def run_deadline_sweeps(self) -> None:
        while True:
            try:
                await self.escalate_overdue()
            except Exception as exc:  # a failed sweep is retried at the next tick
                log.warning("deadline_sweep.failed", error=type(exc).__name__)
            await asyncio.sleep(self.runtime.settings.deadline_sweep_seconds)
