"""referral service: plans referrals on identification, keeps the case plan (needs added,
removed, referred again, re-referred by the hub after a decline, reassigned), takes
providers' answers, follows shelter placements, revokes what a closed case named, and
escalates referrals nobody answered in time or left waiting too long."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from uuid import UUID

import services.referral.domain as domain
import services.referral.plan as plan
from contracts.commands import (
    AcceptReferral,
    AddNeed,
    CompleteReferral,
    DeclineReferral,
    DeliverService,
    ReassignReferral,
    ReferNeed,
    RemoveNeed,
    RequestCrossBorderReferral,
    RevokeReferral,
)
from contracts.events import (
    CaseClosed,
    Event,
    NeedReferred,
    NeedUnmet,
    PlacementEvent,
    ReferralDeclined,
    ReferralEvent,
    ReferralRequested,
    ReferralRevoked,
    ReferralWaitlisted,
    VictimIdentified,
    VictimPresumed,
)
from contracts.vocabulary import EscalationCause, RevokeReason
from services.case.case import Case, fold_case
from services.case.ids import need_id_for
from services.case.needs import Need, fold_need
from services.case.plan_reader import read_case_plan
from services.case.referrals import ACTIVE, Referral, fold_referral
from services.referral.feed import AgencyFeed
from services.referral.link import CrossBorderLink
from services.runtime.eventstore import EventStore, History
from services.runtime.keyvalue import Entry, KeyNotFound, KeyValue, WrongRevision
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


def _deadline(due: dt.datetime, cause: EscalationCause) -> bytes:
    """A watched referral's entry: when it is due and what escalation it leads to."""
    return json.dumps({"respond_by": due.isoformat(), "cause": cause.value}).encode()


def _revoke_for_closure(referral: Referral | None, closed: CaseClosed) -> list[Event]:
    if referral is None or referral.status not in ACTIVE:
        return []
    if referral.request.case_id != closed.case_id:  # only the closed case's own referrals
        return []
    return [
        ReferralRevoked(
            **referral.ids, revoked_by=closed.closed_by, reason=RevokeReason.CASE_CLOSED
        )
    ]


class ReferralService:
    def __init__(self, host: ServiceHost) -> None:
        self.host = host
        self.runtime = host.runtime
        self._deadlines: KeyValue | None = None
        self.link = CrossBorderLink(host.runtime)
        self.feed = AgencyFeed(host)

    def register(self) -> None:
        clock = self.runtime.clock
        self.host.command(
            AcceptReferral, self._answer(lambda ref, cmd: domain.decide_accept(ref, cmd, clock()))
        )
        self.host.command(DeclineReferral, self._answer(domain.decide_decline))
        self.host.command(CompleteReferral, self._answer(domain.decide_complete))
        self.host.command(DeliverService, self._answer(domain.decide_deliver))
        self.host.command(RevokeReferral, self.revoke)
        self.host.command(ReassignReferral, self.reassign)
        self.host.command(AddNeed, self._on_need(self._decide_add))
        self.host.command(RemoveNeed, self._on_need(self._decide_remove))
        self.host.command(ReferNeed, self._on_need(self._decide_refer))
        self.host.consume(consumer("referral-on-identification"), self.on_identification)
        self.host.consume(consumer("referral-on-need"), self.on_need_referred)
        self.host.consume(consumer("referral-on-decline"), self.on_declined)
        self.host.consume(consumer("referral-on-close"), self.on_case_closed)
        self.host.consume(consumer("referral-on-placement"), self.on_placement)
        self.host.consume(consumer("referral-feed"), self.on_followed_event)
        self.host.needs_bucket(REFERRAL_DEADLINES_BUCKET)
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

    # --- the case plan -------------------------------------------------------------------

    def store(self) -> EventStore:
        assert self.runtime.store is not None, "not connected"
        return self.runtime.store

    async def _case(self, case_id: str) -> Case | None:
        return fold_case([e.event for e in (await self.store().load("case", case_id)).events])

    async def _referrals(self, case_id: str) -> dict[Any, Referral]:
        return (await read_case_plan(self.store(), case_id)).referrals()

    def _decide_add(self, case: Case | None, need: Need | None, command: AddNeed) -> list[Event]:
        agency = self.runtime.registry.get(command.agency_id)
        return list(
            plan.decide_add_need(
                case, need, agency, self.runtime.registry, command, self.runtime.clock()
            )
        )

    def _decide_remove(
        self, case: Case | None, need: Need | None, command: RemoveNeed
    ) -> list[Event]:
        agency = self.runtime.registry.get(command.agency_id)
        return list(plan.decide_remove_need(case, need, agency, command, self.runtime.clock()))

    def _decide_refer(
        self, case: Case | None, need: Need | None, command: ReferNeed
    ) -> list[Event]:
        agency = self.runtime.registry.get(command.agency_id)
        return list(
            plan.decide_refer_need(
                case, need, agency, self.runtime.registry, command, self.runtime.clock()
            )
        )

    def _on_need(
        self, decide: Callable[[Case | None, Need | None, Any], list[Event]]
    ) -> Callable[[Any], Awaitable[tuple[str, Outcome]]]:
        """A command on one need of a case: the case and the need's referrals read first,
        the need's own history decided on (optimistic concurrency on the need)."""

        async def handle(command: Any) -> tuple[str, Outcome]:
            case_id, service = str(command.case_id), command.service
            case = await self._case(case_id)
            referrals = await self._referrals(case_id)
            need_id = str(need_id_for(case_id, service))

            def decide_on(history: History) -> list[Event]:
                events = [e.event for e in history.events]
                return decide(case, fold_need(command.case_id, service, events, referrals), command)

            outcome = await self.runtime.writer(SERVICE).execute(
                "need",
                need_id,
                cause=str(command.command_id),
                correlation=str(command.command_id),
                decide=decide_on,
            )
            return need_id, outcome

        return handle

    async def revoke(self, command: RevokeReferral) -> tuple[str, Outcome]:
        """The referrer, the case's owner or the coordinating body revokes a referral."""
        referral_id = str(command.referral_id)
        known = _referral(await self.store().load("referral", referral_id))
        case = await self._case(str(known.request.case_id)) if known else None
        agency = self.runtime.registry.get(command.agency_id)
        outcome = await self.runtime.writer(SERVICE).execute(
            "referral",
            referral_id,
            cause=str(command.command_id),
            correlation=str(command.command_id),
            decide=lambda history: domain.decide_revoke(_referral(history), case, agency, command),
        )
        return referral_id, outcome

    async def reassign(self, command: ReassignReferral) -> tuple[str, Outcome]:
        """Revoke the referral (reason reassigned), then refer its need. Both writes are
        caused by the command: a retry after a crash in between finishes the second."""
        referral_id, cause = str(command.referral_id), str(command.command_id)
        registry, writer = self.runtime.registry, self.runtime.writer(SERVICE)
        known = _referral(await self.store().load("referral", referral_id))
        case = await self._case(str(known.request.case_id)) if known else None
        agency = registry.get(command.agency_id)
        revoked_outcome = await writer.execute(
            "referral",
            referral_id,
            cause=cause,
            correlation=cause,
            decide=lambda history: plan.decide_reassign(
                _referral(history), case, agency, registry, command
            ),
        )
        revoked = _referral(await self.store().load("referral", referral_id))
        if revoked is None or case is None:  # unreachable: decide_reassign refused them
            return referral_id, revoked_outcome
        request, now = revoked.request, self.runtime.clock()
        referrals = await self._referrals(str(request.case_id))
        referred_outcome = await writer.execute(
            "need",
            str(need_id_for(request.case_id, request.service)),
            cause=cause,
            correlation=cause,
            decide=lambda history: plan.decide_reassigned_need(
                case,
                fold_need(
                    request.case_id, request.service, [e.event for e in history.events], referrals
                ),
                revoked,
                registry,
                command,
                now,
            ),
        )
        return referral_id, Outcome(
            revoked_outcome.event_ids + referred_outcome.event_ids,
            duplicate=revoked_outcome.duplicate,
        )

    async def on_need_referred(self, delivery: Delivery) -> None:
        """A `need.referred` becomes the referral request it orders (once: the referral id
        is in the order, and a referral is requested only on an empty history)."""
        envelope, event = delivery.envelope, delivery.event
        if not isinstance(event, NeedReferred):
            return
        case = await self._case(str(event.case_id))
        if case is None:
            return
        settings = self.runtime.settings
        requested = plan.request_for(
            case,
            event,
            self.runtime.registry,
            self.runtime.clock(),
            dt.timedelta(seconds=settings.referral_response_seconds),
        )
        if requested is None:
            log.info("need.referred.skipped", need_id=str(event.need_id))
            return
        await self.runtime.writer(SERVICE).execute(
            "referral",
            str(event.referral_id),
            cause=envelope.id,
            correlation=envelope.correlationid,
            decide=_unless_exists(requested),
        )

    async def on_declined(self, delivery: Delivery) -> None:
        """After a decline the hub refers the need to the next provider that has not
        declined it, or records it unmet (no_capacity / all_declined)."""
        envelope, event = delivery.envelope, delivery.event
        if not isinstance(event, ReferralDeclined):
            return
        declined = _referral(await self.store().load("referral", str(event.referral_id)))
        if declined is None:
            return
        case_id, service = str(event.case_id), declined.request.service
        case = await self._case(case_id)
        referrals = await self._referrals(case_id)
        now = self.runtime.clock()
        outcome = await self.runtime.writer(SERVICE).execute(
            "need",
            str(need_id_for(case_id, service)),
            cause=envelope.id,
            correlation=envelope.correlationid,
            decide=lambda history: plan.decide_after_decline(
                case,
                fold_need(event.case_id, service, [e.event for e in history.events], referrals),
                event.referral_id,
                self.runtime.registry,
                now,
            ),
        )
        if outcome.event_ids and not outcome.duplicate:
            log.info("need.re_referred", case_id=case_id, service=service.value)

    async def on_case_closed(self, delivery: Delivery) -> None:
        """Revoke (reason case_closed) the referrals the closing agency named, if still
        active; one write per referral, each caused by the closure."""
        envelope, event = delivery.envelope, delivery.event
        if not isinstance(event, CaseClosed):
            return
        for referral_id in event.revoked_referrals:
            await self.runtime.writer(SERVICE).execute(
                "referral",
                str(referral_id),
                cause=envelope.id,
                correlation=envelope.correlationid,
                decide=lambda history: _revoke_for_closure(_referral(history), event),
            )

    # --- identification ---------------------------------------------------------------------

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
        writer = self.runtime.writer(SERVICE)

        async def request(referral_id: UUID, requested: ReferralRequested) -> None:
            await writer.execute(
                "referral",
                str(referral_id),
                cause=envelope.id,
                correlation=envelope.correlationid,
                decide=_unless_exists(requested),
            )

        async def record_unmet(need: NeedUnmet) -> None:
            # Once per need and cause: a redelivered identification finds it recorded.
            outcome = await writer.execute(
                "need",
                str(need.need_id),
                cause=envelope.id,
                correlation=envelope.correlationid,
                decide=_unless_exists(need),
            )
            if outcome.event_ids and not outcome.duplicate:
                log.info("need.unmet", case_id=str(need.case_id), service=need.service.value)

        # Each referral and unmet need is its own aggregate with an id derived from the case:
        # written side by side, the shelter hears of its referral after one append, not k.
        # Each write runs to its end; any failure fails the delivery, which is redelivered,
        # and what was written is found by its cause. Not a TaskGroup: on Python 3.11 a
        # failed child leaves the consumer loop's task marked as cancelling, which the loop
        # reads as a stop (`stop_if_cancelled`), so one failed write ended the consumer.
        written = await asyncio.gather(
            *(request(referral_id, requested) for referral_id, requested in plan),
            *(record_unmet(need) for need in unmet),
            return_exceptions=True,
        )
        for result in written:
            if isinstance(result, BaseException) and not isinstance(result, Exception):
                raise result  # a write cancelled on its own: as the loop would be
        failed = [result for result in written if isinstance(result, Exception)]
        if failed:
            raise ExceptionGroup("the plan was not written whole", failed)

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

    async def on_followed_event(self, delivery: Delivery) -> None:
        """The `referral-feed` durable: each event copied to the agencies' feeds, and the
        deadline projection kept, side by side. Both run to their end before the delivery is
        settled (no half left running after a nak); either failing fails the delivery, which
        is retried whole (both are idempotent)."""
        done = await asyncio.gather(
            self.feed.copy(delivery), self.on_referral_event(delivery), return_exceptions=True
        )
        for result in done:
            if isinstance(result, BaseException):
                raise result

    async def on_referral_event(self, delivery: Delivery) -> None:
        """Keeps the projection of open, not yet escalated referrals and their deadlines."""
        event = delivery.event
        if not isinstance(event, ReferralEvent):
            return
        bucket = await self.deadlines()
        key = str(event.referral_id)
        if isinstance(event, ReferralRequested):
            await bucket.put(key, _deadline(event.respond_by, EscalationCause.NO_ANSWER))
            return
        if isinstance(event, ReferralWaitlisted):
            # Waiting is allowed for so long from when it was recorded, then escalated.
            limit = dt.timedelta(seconds=self.runtime.settings.waitlist_escalation_seconds)
            due = delivery.envelope.time + limit
            await bucket.put(key, _deadline(due, EscalationCause.WAITLISTED_TOO_LONG))
            return
        with contextlib.suppress(KeyNotFound):
            await bucket.delete(key)

    async def escalate_overdue(self) -> int:
        """One sweep: escalate every referral past its deadline (no answer, or waiting too
        long). Returns how many. Each referral on its own: one that fails is logged and
        retried at the next sweep, the others go on. An entry whose referral can never be
        escalated for its cause (escalated for it before, or gone) is dropped, unless it was
        written again since it was read."""
        bucket = await self.deadlines()
        now = self.runtime.clock()
        escalated = 0
        for entry in await bucket.entries():
            if not entry.value:
                continue
            watched = json.loads(entry.value)
            respond_by = dt.datetime.fromisoformat(watched["respond_by"])
            cause = EscalationCause(watched.get("cause", EscalationCause.NO_ANSWER))
            if respond_by > now:
                continue
            try:
                if await self._escalate(entry, now, cause, respond_by):
                    escalated += 1
            except Exception as exc:
                log.warning(
                    "deadline_sweep.referral_failed",
                    referral_id=entry.key,
                    error=type(exc).__name__,
                )
        return escalated

    async def _escalate(
        self, entry: Entry, now: dt.datetime, cause: EscalationCause, due: dt.datetime
    ) -> bool:
        key = entry.key
        settled = False  # as the last decision found the referral
        body = self.runtime.registry.coordinating_body

        def decide(history: History) -> Sequence[Event]:
            nonlocal settled
            referral = _referral(history)
            settled = domain.escalation_settled(referral, cause)
            return domain.decide_escalation(referral, now, body, cause, due)

        outcome = await self.runtime.writer(SERVICE).execute(
            "referral",
            key,
            # Entries written before causes existed are no_answer ones: same cause key.
            cause=f"escalation/{key}"
            if cause is EscalationCause.NO_ANSWER
            else f"escalation/{cause.value}/{key}",
            correlation=None,
            decide=decide,
        )
        if outcome.event_ids and not outcome.duplicate:
            log.info("referral.escalated", referral_id=key)
            return True
        if outcome.duplicate or settled:
            # Its own escalation event drops it too, once the projection takes it.
            try:
                await (await self.deadlines()).delete(key, last=entry.revision)
                log.info("deadline_sweep.dropped", referral_id=key)
            except WrongRevision:
                pass  # written again since it was read: kept
        return False

    async def run_deadline_sweeps(self) -> None:
        while True:
            try:
                await self.escalate_overdue()
            except Exception as exc:  # a failed sweep is retried at the next tick
                log.warning("deadline_sweep.failed", error=type(exc).__name__)
            await asyncio.sleep(self.runtime.settings.deadline_sweep_seconds)
