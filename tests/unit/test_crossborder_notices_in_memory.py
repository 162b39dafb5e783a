"""The outbox's notices of consent changes, on an in-memory event store: a change of a case
sent abroad is noticed on each of its cross-border referrals stored before it, whether or not
this process took that referral itself (a restart, another instance). The outbox learns
which cases crossed a border from what it takes, and reads the stream only when a delivery
does not directly follow the last one it took, and then only from where it knew everything
(docs/PERFORMANCE.md, item 18). No nats-server: a change's notice is written by the writer,
not published."""

from __future__ import annotations

import uuid
from pathlib import Path

from contracts.crossborder import NoticeKind
from contracts.events import (
    CaseErased,
    ConsentWithdrawn,
    Event,
    ReferralCrossBorderNoticeSent,
    ReferralCrossBorderRequested,
)
from contracts.vocabulary import ErasureReason
from services.referral.link import CasesAcrossBorders, CrossBorderLink
from services.runtime.eventstore import StoredEvent
from services.runtime.in_memory import InMemoryEventStore
from services.runtime.messaging import Delivery, Runtime
from services.runtime.settings import Settings
from tests.unit.test_crossborder_rules import CASE, IDENTIFIER, registry, requested


class ReadsCounted(InMemoryEventStore):
    """The in-memory store, noting where each read of what crossed a border started (loads
    of one aggregate are not noted)."""

    def __init__(self) -> None:
        super().__init__()
        self.starts: list[int] = []

    async def read(self, *filters: str, start: int = 1) -> tuple[StoredEvent, ...]:
        if filters == CasesAcrossBorders.FILTERS:
            self.starts.append(start)
        return await super().read(*filters, start=start)


async def stored(
    runtime: Runtime,
    aggregate: str,
    aggregate_id: str,
    event: Event,
    consumer_sequence: int | None = None,
) -> Delivery:
    """`event` appended to its aggregate, as the consumer loop would hand it over (as
    delivery `consumer_sequence` of the durable; None: as `nrm dlq retry` hands it)."""
    await runtime.writer("test").execute(
        aggregate, aggregate_id, cause=str(uuid.uuid4()), correlation=None, decide=lambda _: [event]
    )
    assert runtime.store is not None
    last = (await runtime.store.load(aggregate, aggregate_id)).events[-1]
    data = last.envelope.to_bytes()
    return Delivery(last.envelope, last.event, data, last.stream_sequence, consumer_sequence)


def outbox_hub(tmp_path: Path) -> tuple[ReadsCounted, Runtime]:
    store = ReadsCounted()
    return store, Runtime(settings=Settings(data_dir=tmp_path), registry=registry(), store=store)


async def sent_abroad(runtime: Runtime) -> ReferralCrossBorderRequested:
    """A referral of CASE abroad, stored (not taken by any outbox)."""
    referral = requested()
    await stored(runtime, "referral", str(referral.referral_id), referral)
    return referral


async def withdrawn(
    runtime: Runtime, case_id: uuid.UUID = CASE, consumer_sequence: int | None = None
) -> Delivery:
    change = ConsentWithdrawn(case_id=case_id, withdrawn_by=IDENTIFIER)
    return await stored(runtime, "case", str(case_id), change, consumer_sequence)


async def erased(runtime: Runtime, consumer_sequence: int | None = None) -> Delivery:
    erasure = CaseErased(case_id=CASE, erased_by=IDENTIFIER, reason=ErasureReason.ERASURE_REQUEST)
    return await stored(runtime, "case", str(CASE), erasure, consumer_sequence)


async def notices(runtime: Runtime, referral: ReferralCrossBorderRequested) -> list[NoticeKind]:
    assert runtime.store is not None
    history = await runtime.store.load("referral", str(referral.referral_id))
    return [
        e.event.notice for e in history.events if isinstance(e.event, ReferralCrossBorderNoticeSent)
    ]


async def test_a_change_is_noticed_on_referrals_sent_before_it_that_it_did_not_take(
    tmp_path: Path,
) -> None:
    store, runtime = outbox_hub(tmp_path)
    sent = await sent_abroad(runtime)
    assert sent.case_id == CASE
    # Stored before this process started: it never took the referral itself.
    outbox = CrossBorderLink(runtime)
    withdrawal = await withdrawn(runtime)
    await outbox.on_event(withdrawal)
    assert await notices(runtime, sent) == [NoticeKind.WITHDRAWN]
    assert store.starts[-1] == 1  # the first change reads the stream once from its start

    # A later referral abroad of the same case, and an erasure after it: both referrals
    # hear of it, and the read starts where the withdrawal's ended.
    later = await sent_abroad(runtime)
    erasure = await erased(runtime)
    await outbox.on_event(erasure)
    assert store.starts[-1] == withdrawal.stream_sequence + 1  # what it knew: up to the last
    assert await notices(runtime, sent) == [NoticeKind.WITHDRAWN, NoticeKind.ERASED]
    assert await notices(runtime, later) == [NoticeKind.ERASED]

    # The withdrawal again (`nrm dlq retry`): only what came after the erasure is read;
    # nothing new is written, and the later referral, sent after it, is not noticed of it.
    await outbox.on_event(withdrawal)
    assert store.starts[-1] == erasure.stream_sequence + 1
    assert await notices(runtime, sent) == [NoticeKind.WITHDRAWN, NoticeKind.ERASED]
    assert await notices(runtime, later) == [NoticeKind.ERASED]


async def test_a_change_of_a_case_never_sent_abroad_writes_nothing(tmp_path: Path) -> None:
    store, runtime = outbox_hub(tmp_path)
    await sent_abroad(runtime)
    change = await withdrawn(runtime, uuid.uuid4())
    before = await store.read("nrm.evt.>")
    await CrossBorderLink(runtime).on_event(change)
    assert await store.read("nrm.evt.>") == before


async def test_deliveries_in_a_row_are_taken_without_a_read(tmp_path: Path) -> None:
    """What the outbox takes one after another it learns from; a gap in the durable's
    delivery count (another process took the ones between) makes it read what it missed."""
    store, runtime = outbox_hub(tmp_path)
    sent = await sent_abroad(runtime)
    outbox = CrossBorderLink(runtime)
    await outbox.on_event(await withdrawn(runtime, uuid.uuid4(), consumer_sequence=1))
    assert store.starts == [1]  # its first delivery: it cannot know what came before

    withdrawal = await withdrawn(runtime, consumer_sequence=2)
    await outbox.on_event(withdrawal)
    assert store.starts == [1]  # in a row: nothing read
    assert await notices(runtime, sent) == [NoticeKind.WITHDRAWN]

    # Deliveries 3 and 4 went to another process: one of them a referral abroad.
    later = await sent_abroad(runtime)
    await outbox.on_event(await erased(runtime, consumer_sequence=5))
    assert store.starts == [1, withdrawal.stream_sequence + 1]
    assert await notices(runtime, later) == [NoticeKind.ERASED]
    assert await notices(runtime, sent) == [NoticeKind.WITHDRAWN, NoticeKind.ERASED]
