"""Reading a case's plan and referrals through the event store port: the case's need
aggregates (one per service), then every referral they name (`case_referral_ids`). Two reads,
no index. The port is given (services/runtime/eventstore.py `EventStore` fits
`ReadsEvents`), so this module holds no NATS and opens nothing itself."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

from contracts.events import Event
from contracts.subjects import aggregate_filter
from contracts.vocabulary import Service
from services.case.ids import need_id_for
from services.case.needs import Need, case_referral_ids, fold_need, need_ids
from services.case.referrals import Referral, fold_referral


class HasEvent(Protocol):
    @property
    def event(self) -> Event: ...


class ReadsEvents(Protocol):
    async def read(self, *filters: str, start: int = 1) -> Sequence[HasEvent]: ...


@dataclass(frozen=True)
class CasePlan:
    """A case's need events and its referrals' events, as stored."""

    case_id: UUID
    need_events: tuple[Event, ...]
    referral_events: tuple[Event, ...]

    def referrals(self) -> dict[UUID, Referral]:
        by_id: dict[UUID, list[Event]] = {}
        for event in self.referral_events:
            by_id.setdefault(UUID(event.aggregate_id()), []).append(event)
        folded = {referral_id: fold_referral(events) for referral_id, events in by_id.items()}
        return {referral_id: r for referral_id, r in folded.items() if r is not None}

    def need(self, service: Service) -> Need | None:
        need_id = str(need_id_for(self.case_id, service))
        events = [e for e in self.need_events if e.aggregate_id() == need_id]
        return fold_need(self.case_id, service, events, self.referrals())


async def read_case_plan(store: ReadsEvents, case_id: UUID | str) -> CasePlan:
    """The case's needs, then the referrals they name."""
    need_events = await store.read(*(aggregate_filter("need", str(n)) for n in need_ids(case_id)))
    needs = tuple(e.event for e in need_events)
    referral_ids = case_referral_ids(case_id, needs)
    stored = await store.read(*(aggregate_filter("referral", str(r)) for r in referral_ids))
    return CasePlan(UUID(str(case_id)), needs, tuple(e.event for e in stored))
