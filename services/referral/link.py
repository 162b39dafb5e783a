"""The cross-border link's I/O: egress (the `referral.cross_border` command), the outbox, the
relay to each partner hub, the receiver, and ingress. Rules are in `crossborder.py`.

    event  --xb-outbox-->  NRM_XB_OUT nrm.xb.outbox.<dest>.<package id>
           --relay (one at a time, until acknowledged)-->  nrm.xb.<me>.<dest>.pkg  (leaf link)
    peer's receiver: stores in its NRM_XB_IN (Nats-Msg-Id = package id), then acknowledges
           on nrm.xb.<dest>.<me>.ack;  its ingress applies each package once, in order.

After a transfer, a withdrawal, narrowing or expiry of the case's consent, or its erasure,
is recorded on each referral that went abroad as `referral.cross_border_notice_sent` (the
notice inside) and travels the same way; the destination applies it to the case it received
and answers `notice_applied`.

A link that is down only delays: the relay keeps the package and retries with backoff; a
package sent twice (lost acknowledgement) is dropped by the receiver's deduplication, and
acknowledged again.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import json
import uuid
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from pydantic import ValidationError

import services.referral.crossborder as crossborder
from contracts.commands import RequestCrossBorderReferral
from contracts.crossborder import (
    AnswerPackage,
    AnyPackage,
    NoticeAppliedPackage,
    NoticePackage,
    PackageAck,
    ReferralPackage,
    ack_subject,
    package_info,
    parse_package,
    pkg_subject,
)
from contracts.events import (
    CaseErased,
    CaseReceivedFromAbroad,
    ConsentRecorded,
    ConsentWithdrawn,
    Event,
    ReferralCrossBorderNoticeSent,
    ReferralCrossBorderRefused,
    ReferralCrossBorderRequested,
)
from contracts.public_key_sealing import (
    PublicKeySealingError,
    open_sealed_to,
    public_key_from_b64,
    read_private_key,
    seal_to,
)
from contracts.replies import ErrorCode, TransferRefused, reject
from contracts.sealed import SealedValue, open_sealed, seal
from contracts.subjects import EVENT_PREFIX, aggregate_filter
from contracts.vocabulary import PersonalField, TransferRefusal
from services.case.case import fold_case
from services.case.ids import derived_id, referral_id_for
from services.runtime.case_keys import CaseKeys
from services.runtime.eventstore import EventStore, History, StoredEvent
from services.runtime.logging import get_logger
from services.runtime.loops import stop_if_cancelled
from services.runtime.messaging import Delivery, Pull, Runtime, Taken, consume
from services.runtime.topology import (
    CASE_KEYS_BUCKET,
    XB_INBOX_PREFIX,
    XB_INBOX_STREAM,
    XB_INGRESS_DURABLE,
    XB_OUTBOX_PREFIX,
    XB_OUTBOX_STREAM,
    xb_relay_durable,
)
from services.runtime.writer import Outcome

SERVICE = "referral"
log = get_logger("nrm.crossborder")
ACK_TIMEOUT_SECONDS = 2.0
MAX_BACKOFF_SECONDS = 5.0


class CasesAcrossBorders:
    """What the outbox must know of every case to turn its events into packages: which of
    its referrals went abroad (and at which stream sequence), for notices of a consent change
    or an erasure; and whether it came from abroad, for answers. Both are events the outbox
    itself takes, in stream order, before any event that needs them; so it learns them from
    what it takes, and reads the stream only for what it may not have taken: from
    `complete_through + 1` on. Before, each consent change read every cross-border request
    the country ever stored (a cost growing with that history) and each answer-bearing event
    made a read (docs/PERFORMANCE.md, item 18). A fact once stored stays true, so nothing
    here is ever invalidated; it holds one entry per case that crossed a border."""

    FILTERS = (
        f"{EVENT_PREFIX}.referral.*.{ReferralCrossBorderRequested.NAME}",
        f"{EVENT_PREFIX}.{CaseReceivedFromAbroad.AGGREGATE}.*.{CaseReceivedFromAbroad.NAME}",
    )

    def __init__(self) -> None:
        self._sent: dict[str, dict[str, int]] = {}  # case -> its referral abroad -> sequence
        self._received: dict[str, CaseReceivedFromAbroad] = {}
        self.complete_through = 0  # every such event at or below this sequence is known
        self.last_taken: int | None = None  # the consumer sequence of the last one taken

    def unknown_from(self, delivery: Delivery) -> int | None:
        """Where a read must start so that nothing stored before this delivery is unknown;
        None when it directly follows the last one taken (then no other process took anything
        of the durable in between). Its first delivery, one after another process took some,
        and a `nrm dlq retry` each read from where everything was last known."""
        taken = delivery.consumer_sequence
        if taken is not None and self.last_taken is not None and taken == self.last_taken + 1:
            return None
        return self.complete_through + 1

    def learned(self, delivery: Delivery, read: Iterable[StoredEvent] = ()) -> None:
        """What a delivery teaches, with what was read before it (`unknown_from`)."""
        for stored in read:
            self._note(stored.event, stored.stream_sequence)
        self._note(delivery.event, delivery.stream_sequence)
        self.complete_through = max(self.complete_through, delivery.stream_sequence)
        self.last_taken = delivery.consumer_sequence

    def _note(self, event: Event, stream_sequence: int) -> None:
        if isinstance(event, ReferralCrossBorderRequested):
            referrals = self._sent.setdefault(str(event.case_id), {})
            referrals[str(event.referral_id)] = stream_sequence
        elif isinstance(event, CaseReceivedFromAbroad):
            self._received[str(event.case_id)] = event

    def sent_before(self, case_id: str, stream_sequence: int) -> list[str]:
        """The case's referrals sent abroad before `stream_sequence`, in stream order."""
        referrals = self._sent.get(case_id, {})
        return [r for r, s in sorted(referrals.items(), key=lambda i: i[1]) if s < stream_sequence]

    def received(self, case_id: str) -> CaseReceivedFromAbroad | None:
        return self._received.get(case_id)


class CrossBorderLink:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.here = runtime.settings.country
        self._keys: CaseKeys | None = None
        self._across = CasesAcrossBorders()
        self._learning = asyncio.Lock()  # the outbox and a `nrm dlq retry` may overlap

    @property
    def store(self) -> EventStore:
        assert self.runtime.store is not None, "not connected"
        return self.runtime.store

    async def case_keys(self) -> CaseKeys:
        if self._keys is None:
            bucket = await self.runtime.bucket(CASE_KEYS_BUCKET)
            self._keys = CaseKeys(bucket, self.runtime.settings.key_encryption_key_file)
        return self._keys

    # --- egress ---------------------------------------------------------------------------

    async def request(
        self, command: RequestCrossBorderReferral
    ) -> tuple[str, Outcome] | TransferRefused:
        registry = self.runtime.registry
        requester = registry.get(command.agency_id)
        if requester is None:
            raise reject("agency_id", ErrorCode.UNKNOWN_AGENCY, "the agency is not in the registry")
        if command.destination.lower() == self.here:
            raise reject("destination", ErrorCode.INVALID_FIELD, "is this hub's own country")
        case_id = str(command.case_id)
        referral_id = derived_id("xb-referral", str(command.command_id))
        cause = str(command.command_id)
        history = await self.store.load("referral", str(referral_id))
        duplicate = bool(history.caused_by(cause))
        if not duplicate:
            now = self.runtime.clock()
            stored = await self.store.read(aggregate_filter("case", case_id))
            case = fold_case([e.event for e in stored])
            decision = crossborder.decide_transfer(case, requester, registry, command, now)
            event: Event
            if isinstance(decision, crossborder.Transfer):
                event = await self._package(decision, command, referral_id, now)
            else:
                event = crossborder.refused_event(referral_id, command, decision)
            await self.runtime.writer(SERVICE).execute(
                "referral",
                str(referral_id),
                cause=cause,
                correlation=cause,
                decide=lambda _history: [event],
            )
            history = await self.store.load("referral", str(referral_id))
        recorded = history.caused_by(cause)
        outcome = Outcome(tuple(uuid.UUID(e.envelope.id) for e in recorded), duplicate)
        first = recorded[0].event
        if isinstance(first, ReferralCrossBorderRefused):
            log.info(
                "cross_border.refused", destination=first.destination, reason=first.reason.value
            )
            return TransferRefused(
                command_id=command.command_id,
                referral_id=referral_id,
                reason=first.reason,
                event_ids=outcome.event_ids,
            )
        return str(referral_id), outcome

    async def _package(
        self,
        transfer: crossborder.Transfer,
        command: RequestCrossBorderReferral,
        referral_id: uuid.UUID,
        now: dt.datetime,
    ) -> ReferralCrossBorderRequested | ReferralCrossBorderRefused:
        """Open only the minimal fields under the case key, re-seal them to the peer."""
        case_id = str(command.case_id)
        case_key = await (await self.case_keys()).existing_key(case_id)
        if case_key is None:  # shredded after the events said otherwise
            return crossborder.refused_event(referral_id, command, TransferRefusal.CASE_ERASED)
        _, key = case_key
        values = {
            f.value: open_sealed(key, case_id, f.value, transfer.record.personal_data[f])
            for f in transfer.fields
        }
        package_id = derived_id("xb-package", str(referral_id))
        assert transfer.peer.public_key is not None  # decide_transfer refuses without one
        sealed = seal_to(
            public_key_from_b64(transfer.peer.public_key),
            package_info(str(package_id), self.here.upper(), transfer.peer.code),
            json.dumps(values).encode(),
        )
        package = crossborder.referral_package(
            transfer, command, self.here, referral_id, package_id, sealed, now
        )
        return crossborder.requested_event(command, package)

    # --- outbox: cross-border events become packages queued per destination ----------------

    async def on_event(self, delivery: Delivery) -> None:
        await self._learn(delivery)
        event = delivery.event
        package: AnyPackage | None = None
        if isinstance(event, ConsentWithdrawn | ConsentRecorded | CaseErased):
            await self._notify(delivery, event)
            return
        if isinstance(event, ReferralCrossBorderRequested | ReferralCrossBorderNoticeSent):
            package = event.package
        elif isinstance(event, CaseReceivedFromAbroad):
            package = crossborder.answer_for(
                event, event, uuid.UUID(delivery.envelope.id), self.here, delivery.envelope.time
            )
        else:
            case_id = str(getattr(event, "case_id"))  # noqa: B009  (every answered event has one)
            received = self._across.received(case_id)
            if received is None:
                return  # a local referral: nothing to tell anyone abroad
            package = crossborder.answer_for(
                event, received, uuid.UUID(delivery.envelope.id), self.here, delivery.envelope.time
            )
        if package is None:
            return
        subject = f"{XB_OUTBOX_PREFIX}.{package.destination.lower()}.{package.package_id}"
        await self.runtime.jetstream.publish(
            subject,
            package.model_dump_json().encode(),
            headers={"Nats-Msg-Id": str(package.package_id)},
        )

    async def _learn(self, delivery: Delivery) -> None:
        """Know every case that crossed a border up to this delivery (`CasesAcrossBorders`)."""
        across = self._across
        async with self._learning:
            start = across.unknown_from(delivery)
            read = [] if start is None else await self.store.read(*across.FILTERS, start=start)
            across.learned(delivery, read)

    async def _notify(
        self, delivery: Delivery, change: ConsentWithdrawn | ConsentRecorded | CaseErased
    ) -> None:
        """A consent change or erasure of a case sent abroad: a notice on each of its
        cross-border referrals requested before it (the notice is queued when the outbox
        reads that event, in order after the referral package). A local case, nearly every
        one, has none: nothing read, nothing written."""
        # Before the change only: a redelivered older change notifies no later referral.
        referral_ids = self._across.sent_before(str(change.case_id), delivery.stream_sequence)
        cause = delivery.envelope.id
        for referral_id in referral_ids:
            package_id = derived_id("xb-notice", cause, referral_id)

            def decide(history: History, package_id: uuid.UUID = package_id) -> list[Event]:
                referral = crossborder.fold([e.event for e in history.events])
                now = delivery.envelope.time
                return crossborder.decide_notice(referral, change, package_id, self.here, now)

            await self.runtime.writer(SERVICE).execute(
                "referral",
                referral_id,
                cause=cause,
                correlation=delivery.envelope.correlationid or cause,
                decide=decide,
            )

    # --- relay: one package at a time to one peer, until acknowledged ---------------------

    async def relay(self, peer: str) -> None:
        nc = self.runtime.nc
        assert nc is not None
        durable = xb_relay_durable(peer)  # created by the bootstrap, like every durable
        acked: dict[str, asyncio.Event] = {}

        async def on_ack(msg: Msg) -> None:
            try:
                package_id = str(PackageAck.model_validate_json(msg.data).package_id)
            except ValidationError:
                return
            waiting = acked.get(package_id)
            if waiting is not None:
                waiting.set()

        ack_sub = await nc.subscribe(ack_subject(peer, self.here), cb=on_ack)
        try:
            # One package at a time (max_ack_pending 1, batch 1): the next only after the
            # peer acknowledged this one and the outbox has the ack.
            pull = Pull(XB_OUTBOX_STREAM, durable, 1)
            send = functools.partial(self._send_until_acknowledged, peer, acked)
            await consume(self.runtime, SERVICE, pull, send)
        finally:
            with contextlib.suppress(NatsError):  # the connection may be closing already
                await ack_sub.unsubscribe()

    async def _send_until_acknowledged(
        self, peer: str, acked: dict[str, asyncio.Event], message: Taken
    ) -> None:
        nc = self.runtime.nc
        assert nc is not None
        package_id = message.headers.get("Nats-Msg-Id", "")
        done = acked.setdefault(package_id, asyncio.Event())
        delay = 0.2
        try:
            while True:
                try:
                    await nc.publish(
                        pkg_subject(self.here, peer),
                        message.data,
                        headers={"Nats-Msg-Id": package_id},
                    )
                    await asyncio.wait_for(done.wait(), ACK_TIMEOUT_SECONDS)
                    break
                except (TimeoutError, NatsError) as exc:
                    stop_if_cancelled()
                    log.info(
                        "xb.relay.waiting", peer=peer, error=type(exc).__name__, retry_in=delay
                    )
                    await message.still_working()  # still ours: not redelivered meanwhile
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, MAX_BACKOFF_SECONDS)
        finally:
            acked.pop(package_id, None)
        log.info("xb.relay.sent", peer=peer, package_id=package_id)

    # --- receiver: store, then acknowledge --------------------------------------------------

    async def receive(self) -> None:
        nc = self.runtime.nc
        assert nc is not None

        async def on_package(msg: Msg) -> None:
            origin = msg.subject.split(".")[2]
            if self.runtime.registry.peer(origin) is None:
                log.warning("xb.package_from_unknown_peer", origin=origin)
                return
            try:
                package = parse_package(msg.data)
            except (ValidationError, ValueError):
                # Never valid, never will be: acknowledged so the link does not block on it.
                log.warning("xb.package_invalid", origin=origin)
                await nc.publish(ack_subject(self.here, origin), _ack_of(msg))
                return
            if package.origin.lower() != origin or package.destination.lower() != self.here:
                log.warning("xb.package_misrouted", origin=origin)
                await nc.publish(ack_subject(self.here, origin), _ack_of(msg))
                return
            try:
                await self.runtime.jetstream.publish(
                    f"{XB_INBOX_PREFIX}.{origin}.{package.package_id}",
                    msg.data,
                    headers={"Nats-Msg-Id": str(package.package_id)},
                )
            except NatsError as exc:
                log.warning("xb.store_failed", origin=origin, error=type(exc).__name__)
                return  # not acknowledged: the sender tries again
            ack = PackageAck(package_id=package.package_id)
            await nc.publish(ack_subject(self.here, origin), ack.model_dump_json().encode())

        sub = await nc.subscribe(f"nrm.xb.*.{self.here}.pkg", queue="xb-receivers", cb=on_package)
        try:
            await asyncio.Event().wait()  # until the service stops
        finally:
            # Left subscribed, the broker's drain on stop would wait for it.
            with contextlib.suppress(NatsError):
                await sub.unsubscribe()

    # --- ingress: apply each stored package once, in order ----------------------------------

    async def ingress(self) -> None:
        # Retried, never dropped (no max_deliver); one at a time, in the order received.
        pull = Pull(XB_INBOX_STREAM, XB_INGRESS_DURABLE, 1)
        await consume(self.runtime, SERVICE, pull, self._apply_once)

    async def _apply_once(self, message: Taken) -> None:
        await self.apply(parse_package(message.data))

    async def apply(self, package: AnyPackage) -> None:
        writer = self.runtime.writer(SERVICE)
        cause = str(package.package_id)
        if isinstance(package, NoticePackage):
            await self._apply_notice(package)
            return
        if isinstance(package, NoticeAppliedPackage):
            await writer.execute(
                "referral",
                str(package.referral_id),
                cause=cause,
                correlation=cause,
                decide=lambda history: crossborder.decide_notice_applied(
                    crossborder.fold([e.event for e in history.events]), package
                ),
            )
            return
        if isinstance(package, AnswerPackage):
            await writer.execute(
                "referral",
                str(package.referral_id),
                cause=cause,
                correlation=cause,
                decide=lambda history: crossborder.decide_answer(
                    crossborder.fold([e.event for e in history.events]), package
                ),
            )
            return
        problem = crossborder.reception_problem(package, self.runtime.registry)
        if problem is not None:
            log.warning("xb.package_not_applied", origin=package.origin, problem=problem)
            return
        case_id = derived_id("case", "xb", package.origin, cause)
        sealed = await self._reseal(package, str(case_id))
        if sealed is None:
            return
        settings = self.runtime.settings
        referral_id = referral_id_for(case_id, package.service)
        case_events, requested = crossborder.plan_reception(
            package,
            self.runtime.registry,
            case_id,
            derived_id("consent", "xb", cause),
            referral_id,
            sealed,
            self.runtime.clock(),
            dt.timedelta(seconds=settings.referral_response_seconds),
        )
        await writer.execute(
            "case", str(case_id), cause=cause, correlation=cause, decide=_once(case_events)
        )
        await writer.execute(
            "referral", str(referral_id), cause=cause, correlation=cause, decide=_once([requested])
        )

    async def _apply_notice(self, notice: NoticePackage) -> None:
        """The notice applied to the case received with the origin's referral (found by the
        origin's referral id, as a partner's hub names it), once: `cause` = notice id."""
        found = await self.store.read(
            f"{EVENT_PREFIX}.{CaseReceivedFromAbroad.AGGREGATE}.*.{CaseReceivedFromAbroad.NAME}"
        )
        received = next(
            (
                e.event
                for e in found
                if isinstance(e.event, CaseReceivedFromAbroad)
                and e.event.origin == notice.origin
                and e.event.origin_referral_id == notice.referral_id
            ),
            None,
        )
        if received is None:
            # Never received (refused by this hub's allow-list, or did not open): nothing here.
            log.warning("xb.notice_for_unknown_case", origin=notice.origin)
            return
        cause = str(notice.package_id)
        case_id = str(received.case_id)

        def decide(history: History) -> list[Event]:
            case = fold_case([e.event for e in history.events])
            by = case.owner if case is not None else received.agency_id
            consent_id = derived_id("consent", "xb-notice", cause)
            return crossborder.apply_notice(case, received, notice, by, consent_id)

        await self.runtime.writer(SERVICE).execute(
            "case", case_id, cause=cause, correlation=cause, decide=decide
        )
        log.info("xb.notice_applied", origin=notice.origin, notice=notice.notice.value)

    async def _reseal(
        self, package: ReferralPackage, case_id: str
    ) -> dict[PersonalField, SealedValue] | None:
        """The minimal dataset opened with this hub's key and sealed under the local case key.
        A package that does not open, or holds other fields than it lists, is not applied."""
        private = read_private_key(self.runtime.settings.intake_private_key_file)
        info = package_info(str(package.package_id), package.origin, package.destination)
        try:
            values = json.loads(open_sealed_to(private, info, package.personal_data))
        except (PublicKeySealingError, ValueError):
            log.warning("xb.package_does_not_open", origin=package.origin)
            return None
        if not isinstance(values, dict) or set(values) != {f.value for f in package.fields}:
            log.warning("xb.package_fields_mismatch", origin=package.origin)
            return None
        version, key = await (await self.case_keys()).key_for(case_id)
        return {
            PersonalField(name): seal(key, case_id, name, version, str(value))
            for name, value in values.items()
        }

    def loops(self) -> list[Callable[[], Coroutine[Any, Any, None]]]:
        peers = [p.country for p in self.runtime.registry.peers]
        relays = [functools.partial(self.relay, peer) for peer in peers]
        return [self.receive, *relays, self.ingress] if peers else []


def _once(events: list[Event]) -> Callable[[History], list[Event]]:
    return lambda history: [] if history.events else events


def _ack_of(msg: Msg) -> bytes:
    package_id = (msg.headers or {}).get("Nats-Msg-Id", "")
    try:
        return PackageAck(package_id=uuid.UUID(package_id)).model_dump_json().encode()
    except ValueError:
        return b"{}"
