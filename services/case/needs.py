"""The case plan: one need per case and service, folded from its own events (`need.*`) and the
states of its referrals, one per attempt.

A need referred at identification has no need event: its first referral is
`referral_id_for(case, service)` (attempt 0). Every later referral is named by a
`need.referred`. Only the latest attempt can be active: a need is re-referred only once the
earlier referral was declined or revoked. A `need.referred` whose referral is not yet
requested (the referral service writes it next) counts as requested.

Pure: the referral service decides on it, custody and the identifier find a case's referrals
through `case_referral_ids`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from uuid import UUID

from contracts.events import Event, NeedAdded, NeedReferred, NeedRemoved, NeedUnmet
from contracts.vocabulary import DeclineReason, NeedRemovalReason, Service, UnmetReason
from services.case.ids import need_id_for, referral_id_for
from services.case.referrals import ACTIVE, OPEN, Referral, Status


class NeedStatus(StrEnum):
    OPEN = "open"  # on the plan, no referral active (declined or revoked, not yet re-referred)
    REFERRED = "referred"  # a referral is requested or waitlisted
    BEING_SERVED = "being_served"  # a provider accepted it
    MET = "met"  # the latest referral was completed
    UNMET = "unmet"  # nobody could be asked (need.unmet since the last referral)
    DECLINED_BY_PERSON = "declined_by_person"  # removed: the person declined it
    REMOVED = "removed"  # removed: no longer needed


ON_THE_PLAN = frozenset(
    {NeedStatus.OPEN, NeedStatus.REFERRED, NeedStatus.BEING_SERVED, NeedStatus.UNMET}
)


@dataclass(frozen=True)
class Attempt:
    referral_id: UUID
    provider_id: str
    attempt: int
    status: Status  # REQUESTED while the order is not yet a referral
    decline_reason: DeclineReason | None = None


@dataclass(frozen=True)
class Need:
    need_id: UUID
    case_id: UUID
    service: Service
    status: NeedStatus
    attempts: tuple[Attempt, ...]
    unmet_reason: UnmetReason | None = None

    @property
    def declined_by(self) -> frozenset[str]:
        """Providers that declined this need (on any attempt)."""
        return frozenset(a.provider_id for a in self.attempts if a.status is Status.DECLINED)

    @property
    def active(self) -> Attempt | None:
        return next((a for a in reversed(self.attempts) if a.status in ACTIVE), None)

    @property
    def latest(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    @property
    def next_attempt(self) -> int:
        return max((a.attempt for a in self.attempts), default=-1) + 1


def fold_need(
    case_id: UUID,
    service: Service,
    need_events: Sequence[Event],
    referrals: Mapping[UUID, Referral],
) -> Need | None:
    """The need as its events and its referrals' states tell it; None when the case never
    had it (no event, no referral at identification)."""
    attempts: list[tuple[UUID, str, int]] = []
    first = referral_id_for(case_id, service)
    if first in referrals:  # referred at identification, with no need event
        attempts.append((first, referrals[first].request.provider_id, 0))
    exists = bool(attempts)
    unmet: UnmetReason | None = None
    removed: NeedRemovalReason | None = None
    for event in need_events:
        if isinstance(event, NeedAdded):
            exists, unmet, removed = True, None, None
        elif isinstance(event, NeedReferred):
            if all(event.referral_id != a[0] for a in attempts):
                attempts.append((event.referral_id, event.provider_id, event.attempt))
            exists, unmet, removed = True, None, None
        elif isinstance(event, NeedUnmet):
            exists, unmet = True, event.reason
        elif isinstance(event, NeedRemoved):
            removed = event.reason
    if not exists:
        return None
    folded = tuple(
        Attempt(
            referral_id,
            provider,
            number,
            referrals[referral_id].status if referral_id in referrals else Status.REQUESTED,
            referrals[referral_id].decline_reason if referral_id in referrals else None,
        )
        for referral_id, provider, number in attempts
    )
    return Need(
        need_id_for(case_id, service),
        case_id,
        service,
        _status(folded, unmet, removed),
        folded,
        unmet,
    )


def _status(
    attempts: tuple[Attempt, ...], unmet: UnmetReason | None, removed: NeedRemovalReason | None
) -> NeedStatus:
    if removed is NeedRemovalReason.DECLINED_BY_PERSON:
        return NeedStatus.DECLINED_BY_PERSON
    if removed is not None:
        return NeedStatus.REMOVED
    if unmet is not None:
        return NeedStatus.UNMET
    if not attempts:
        return NeedStatus.OPEN
    latest = attempts[-1].status
    if latest in OPEN:
        return NeedStatus.REFERRED
    if latest is Status.ACCEPTED:
        return NeedStatus.BEING_SERVED
    if latest is Status.COMPLETED:
        return NeedStatus.MET
    return NeedStatus.OPEN  # declined or revoked: waiting for the next referral


def unmet_reason(need: Need) -> UnmetReason:
    """Why nobody is left for a need: nobody offers it at all, every provider that declined
    it had no room, or they declined it for other reasons too."""
    reasons = [a.decline_reason for a in need.attempts if a.status is Status.DECLINED]
    if not reasons:
        return UnmetReason.NO_PROVIDER
    if all(r is DeclineReason.NO_CAPACITY for r in reasons):
        return UnmetReason.NO_CAPACITY
    return UnmetReason.ALL_DECLINED


def case_referral_ids(case_id: UUID | str, need_events: Iterable[Event]) -> list[UUID]:
    """Every referral id a case can have: the attempt-0 id of every service, and every id a
    `need.referred` of the case named. Custody and the identifier read the referrals so."""
    ids = [referral_id_for(case_id, service) for service in Service]
    for event in need_events:
        if isinstance(event, NeedReferred) and event.referral_id not in ids:
            ids.append(event.referral_id)
    return ids


def need_ids(case_id: UUID | str) -> list[UUID]:
    """The need aggregate of every service of a case."""
    return [need_id_for(case_id, service) for service in Service]
