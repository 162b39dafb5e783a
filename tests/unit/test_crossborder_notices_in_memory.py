"""The outbox's notices of consent changes, on an in-memory event store: a change of a case
sent abroad is noticed on each of its cross-border referrals stored before it, whether or not
this process took that referral itself (a restart), and the stream is read only from where
the previous change's read ended, never again from its start (docs/PERFORMANCE.md, item 18).
No nats-server: a change's notice is written by the writer, not published."""

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
from services.referral.link import CrossBorderLink
from services.runtime.eventstore import StoredEvent
from services.runtime.in_memory import InMemoryEventStore
from services.runtime.messaging import Delivery, Runtime
from services.runtime.settings import Settings
from tests.unit.test_crossborder_rules import CASE, IDENTIFIER, registry, requested


class ReadsCounted(InMemoryEventStore):
    """The in-memory store, noting where each read started."""

    def __init__(self) -> None:
        super().__init__()
        self.starts: list[int] = []

    async def read(self, *filters: str, start: int = 1) -> tuple[StoredEvent, ...]:
        self.starts.append(start)
        return await super().read(*filters, start=start)


async def stored(runtime: Runtime, aggregate: str, aggregate_id: str, event: Event) -> Delivery:
    """`event` appended to its aggregate, as the consumer loop would hand it over."""
    await runtime.writer("test").execute(
        aggregate, aggregate_id, cause=str(uuid.uuid4()), correlation=None, decide=lambda _: [event]
    )
    assert runtime.store is not None
    last = (await runtime.store.load(aggregate, aggregate_id)).events[-1]
    return Delivery(last.envelope, last.event, last.envelope.to_bytes(), last.stream_sequence)


async def notices(runtime: Runtime, referral: ReferralCrossBorderRequested) -> list[NoticeKind]:
    assert runtime.store is not None
    history = await runtime.store.load("referral", str(referral.referral_id))
    return [
        e.event.notice for e in history.events if isinstance(e.event, ReferralCrossBorderNoticeSent)
    ]


async def test_a_change_is_noticed_on_referrals_sent_before_it_reading_only_what_is_new(
    tmp_path: Path,
) -> None:
    store = ReadsCounted()
    runtime = Runtime(settings=Settings(data_dir=tmp_path), registry=registry(), store=store)
    sent = requested()
    assert sent.case_id == CASE
    await stored(runtime, "referral", str(sent.referral_id), sent)
    # Stored before this process started: it never took the referral itself.
    outbox = CrossBorderLink(runtime)
    withdrawn = await stored(
        runtime, "case", str(CASE), ConsentWithdrawn(case_id=CASE, withdrawn_by=IDENTIFIER)
    )
    await outbox.on_event(withdrawn)
    assert await notices(runtime, sent) == [NoticeKind.WITHDRAWN]
    assert store.starts[-1] == 1  # the first change reads the stream once from its start

    # A later referral abroad of the same case, and an erasure after it: both referrals
    # hear of it, and the read starts where the withdrawal's ended.
    later = requested()
    await stored(runtime, "referral", str(later.referral_id), later)
    erased = await stored(
        runtime,
        "case",
        str(CASE),
        CaseErased(case_id=CASE, erased_by=IDENTIFIER, reason=ErasureReason.ERASURE_REQUEST),
    )
    await outbox.on_event(erased)
    assert store.starts[-1] == withdrawn.stream_sequence
    assert await notices(runtime, sent) == [NoticeKind.WITHDRAWN, NoticeKind.ERASED]
    assert await notices(runtime, later) == [NoticeKind.ERASED]

    # The withdrawal redelivered: nothing read, nothing new, and the later referral, sent
    # after it, is not noticed of it.
    reads = len(store.starts)
    await outbox.on_event(withdrawn)
    assert len(store.starts) == reads
    assert await notices(runtime, sent) == [NoticeKind.WITHDRAWN, NoticeKind.ERASED]
    assert await notices(runtime, later) == [NoticeKind.ERASED]


async def test_a_change_of_a_case_never_sent_abroad_writes_nothing(tmp_path: Path) -> None:
    store = ReadsCounted()
    runtime = Runtime(settings=Settings(data_dir=tmp_path), registry=registry(), store=store)
    sent = requested()
    await stored(runtime, "referral", str(sent.referral_id), sent)
    local = uuid.uuid4()
    change = await stored(
        runtime, "case", str(local), ConsentWithdrawn(case_id=local, withdrawn_by=IDENTIFIER)
    )
    before = await store.read("nrm.evt.>")
    await CrossBorderLink(runtime).on_event(change)
    assert await store.read("nrm.evt.>") == before
