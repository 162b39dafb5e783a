"""Referrals as more than one service sees them: how a referral request is built (whom to,
for which bed category, by when), and a referral's state from its events.

The referral service builds requests on identification and on reception from abroad;
custody grants data to the provider of an active referral; the audit replay rebuilds states.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Protocol
from uuid import UUID

from contracts.events import (
    Event,
    ReferralAccepted,
    ReferralCompleted,
    ReferralDeclined,
    ReferralEscalated,
    ReferralRequested,
    ReferralRevoked,
    ReferralWaitlisted,
)
from contracts.vocabulary import (
    AgeBand,
    DeclineReason,
    EscalationCause,
    PersonalField,
    Region,
    Service,
    Sex,
    ShelterCategory,
)
from services.agencies.registry import Agency, AgencyRegistry

# --- building a request ----------------------------------------------------------------------


def placement_category(is_child: bool, sex: Sex) -> ShelterCategory:
    if is_child:
        return ShelterCategory.CHILDREN
    return ShelterCategory.WOMEN if sex is Sex.FEMALE else ShelterCategory.MEN


def choose_provider(
    registry: AgencyRegistry,
    service: Service,
    region: Region,
    category: ShelterCategory | None,
    excluding: frozenset[str] = frozenset(),
) -> Agency | None:
    """Nearest provider of the service: same region first, then the capital, then any.
    For shelters only those taking the person's category (a child only where children are).
    Never one in `excluding` (e.g. those that declined this need already)."""
    candidates = [
        a
        for a in registry.providers_of(service)
        if (category is None or category in a.shelter_categories) and a.id not in excluding
    ]
    candidates.sort(key=lambda a: (a.region != region, a.region != Region.BISHKEK_CITY, a.id))
    return candidates[0] if candidates else None


class Person(Protocol):
    """The non-identifying profile a referral carries (bed category, statistics): a
    screening record's or a cross-border package's."""

    @property
    def sex(self) -> Sex: ...

    @property
    def age_band(self) -> AgeBand: ...

    @property
    def is_child(self) -> bool: ...


def referral_request(
    registry: AgencyRegistry,
    *,
    referral_id: UUID,
    case_id: UUID,
    service: Service,
    referrer_id: str,
    region: Region,
    person: Person,
    shared_fields: tuple[PersonalField, ...],
    now: dt.datetime,
    response_window: dt.timedelta,
    fallback: Agency | None = None,
    provider: Agency | None = None,
    attempt: int = 0,
) -> ReferralRequested | None:
    """The request to `provider`, or if none is given to the provider nearest `region`
    (`fallback` if the registry has none), to answer within `response_window`; None when
    nobody can take it."""
    category = (
        placement_category(person.is_child, person.sex) if service is Service.SHELTER else None
    )
    if provider is None:
        provider = choose_provider(registry, service, region, category) or fallback
    if provider is None:
        return None
    return ReferralRequested(
        referral_id=referral_id,
        case_id=case_id,
        service=service,
        provider_id=provider.id,
        referrer_id=referrer_id,
        region=region,
        sex=person.sex,
        age_band=person.age_band,
        is_child=person.is_child,
        placement_category=category,
        shared_fields=shared_fields,
        requested_at=now,
        respond_by=now + response_window,
        attempt=attempt,
    )


# --- a referral's state ----------------------------------------------------------------------


class Status(StrEnum):
    REQUESTED = "requested"
    WAITLISTED = "waitlisted"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    COMPLETED = "completed"
    REVOKED = "revoked"


OPEN = frozenset({Status.REQUESTED, Status.WAITLISTED})
ACTIVE = OPEN | {Status.ACCEPTED}


@dataclass(frozen=True)
class Referral:
    request: ReferralRequested
    status: Status
    escalated: bool
    accepted_at: dt.datetime | None
    escalations: frozenset[EscalationCause] = field(default=frozenset())
    decline_reason: DeclineReason | None = None

    @property
    def ids(self) -> dict[str, object]:
        return {"referral_id": self.request.referral_id, "case_id": self.request.case_id}


def fold_referral(events: Sequence[Event]) -> Referral | None:
    """Current state of one referral from its events."""
    state: Referral | None = None
    for event in events:
        if isinstance(event, ReferralRequested):
            state = Referral(event, Status.REQUESTED, escalated=False, accepted_at=None)
            continue
        if state is None:
            continue
        match event:
            case ReferralAccepted():
                state = _with(state, Status.ACCEPTED, accepted_at=event.accepted_at)
            case ReferralWaitlisted():
                state = _with(state, Status.WAITLISTED)
            case ReferralDeclined():
                state = replace(_with(state, Status.DECLINED), decline_reason=event.reason)
            case ReferralCompleted():
                state = _with(state, Status.COMPLETED)
            case ReferralRevoked():
                state = _with(state, Status.REVOKED)
            case ReferralEscalated():
                state = replace(
                    state, escalated=True, escalations=state.escalations | {event.cause}
                )
    return state


def _with(state: Referral, status: Status, accepted_at: dt.datetime | None = None) -> Referral:
    return replace(state, status=status, accepted_at=accepted_at or state.accepted_at)
