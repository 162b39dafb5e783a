"""Shelter rules as pure functions: beds per category, admission on a shelter referral, a
first-come waiting list when full, and every bed that becomes free (a discharge, a
re-registration with more beds) going to the next person waiting in its category.

There is no fixed length of stay (Counter-Trafficking Law art. 21.4): only a discharge ends
one. A child is placed only in a shelter that takes children. The state these rules decide
on (`Shelter`, `fold_shelter`) is in the case core, `services/case/shelter_beds.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from contracts.commands import DischargeFromShelter, RegisterShelter
from contracts.events import (
    ReferralDeclined,
    ReferralRequested,
    ReferralRevoked,
    ShelterAdmitted,
    ShelterDischarged,
    ShelterEvent,
    ShelterPlacementRefused,
    ShelterRegistered,
    ShelterWaitlisted,
    ShelterWaitlistLeft,
)
from contracts.replies import CommandRejection, ErrorCode, FieldError, reject
from contracts.vocabulary import DeclineReason, Service, ShelterCategory
from services.agencies.registry import Agency
from services.case.shelter_beds import Shelter, apply


def _after(shelter: Shelter, events: Sequence[ShelterEvent]) -> Shelter:
    """The state once `events` are applied; `shelter` itself is left as it was."""
    projected = shelter.copy()
    for event in events:
        apply(projected, event)
    return projected


def serve_waiting_list(
    shelter: Shelter, ended: frozenset[UUID] = frozenset()
) -> list[ShelterEvent]:
    """Admit people waiting, first come first served per category, while their category has
    a free bed. Every decision that frees or adds beds ends with this, in the same atomic
    append, so that no one waits while a bed of their category is free. A stay whose referral
    has `ended` (declined or revoked while the shelter had not yet heard) leaves the list
    instead of taking the bed."""
    admitted: list[ShelterEvent] = []
    free = {c: shelter.free(c) for c in ShelterCategory if shelter.waiting_in(c)}
    for stay in shelter.queue.values():
        if not ended and not any(n > 0 for n in free.values()):
            break  # nobody further down can be admitted, and nobody has to leave
        if stay.referral_id in ended:
            admitted.append(
                ShelterWaitlistLeft(
                    shelter_id=shelter.shelter_id,
                    referral_id=stay.referral_id,
                    case_id=stay.case_id,
                    category=stay.category,
                )
            )
        elif free.get(stay.category, 0) > 0:
            free[stay.category] -= 1
            admitted.append(
                ShelterAdmitted(
                    shelter_id=shelter.shelter_id,
                    referral_id=stay.referral_id,
                    case_id=stay.case_id,
                    category=stay.category,
                    from_waiting_list=True,
                )
            )
    return admitted


def decide_register(
    agency: Agency | None,
    shelter: Shelter,
    command: RegisterShelter,
    ended: frozenset[UUID] = frozenset(),
) -> list[ShelterEvent]:
    """Register a shelter or change its beds; added beds go to the waiting list first."""
    if agency is None:
        raise reject("agency_id", ErrorCode.UNKNOWN_AGENCY, "the agency is not in the registry")
    if Service.SHELTER not in agency.services:
        raise reject("agency_id", ErrorCode.NOT_AUTHORISED, "the agency does not run a shelter")
    extra = sorted(set(command.capacity) - agency.shelter_categories)
    if extra:
        raise reject(
            "capacity",
            ErrorCode.INVALID_FIELD,
            "the registry does not list every one of these categories for the shelter",
        )
    # A registration never ends a stay (only a discharge does, art. 21.4), so it may not
    # leave residents without a bed. The reason quotes no number, neither submitted nor stored.
    crowded = [
        FieldError(
            field=f"capacity.{category}",
            code=ErrorCode.INVALID_STATE,
            reason="fewer beds than current residents",
        )
        for category in ShelterCategory
        if command.capacity.get(category, 0) < shelter.occupied(category)
    ]
    if crowded:
        raise CommandRejection(*crowded)
    registered = ShelterRegistered(
        shelter_id=agency.id, region=agency.region, capacity=command.capacity
    )
    return [registered, *serve_waiting_list(_after(shelter, [registered]), ended)]


def decide_placement(
    shelter: Shelter, referral: ReferralRequested, ended: frozenset[UUID] = frozenset()
) -> list[ShelterEvent]:
    """Admit, wait-list or refuse a shelter referral addressed to this shelter."""
    category = referral.placement_category
    if category is None or shelter.knows(referral.referral_id):
        return []
    ids = {
        "shelter_id": shelter.shelter_id,
        "referral_id": referral.referral_id,
        "case_id": referral.case_id,
        "category": category,
    }
    if not shelter.registered:
        return [ShelterPlacementRefused(**ids, reason=DeclineReason.SHELTER_NOT_REGISTERED)]
    if category not in shelter.capacity:
        return [ShelterPlacementRefused(**ids, reason=DeclineReason.CATEGORY_NOT_ACCEPTED)]
    # Those already waiting come first: a free bed found here (a history written before
    # added beds were served) goes to them, and the newcomer only gets one left over.
    events = serve_waiting_list(shelter, ended)
    now = _after(shelter, events)
    if now.has_bed(category):
        return [*events, ShelterAdmitted(**ids, from_waiting_list=False)]
    position = 1 + now.waiting_in(category)
    return [*events, ShelterWaitlisted(**ids, position=position)]


def decide_discharge(
    shelter: Shelter, command: DischargeFromShelter, ended: frozenset[UUID] = frozenset()
) -> list[ShelterEvent]:
    if not shelter.registered:
        raise reject("agency_id", ErrorCode.UNKNOWN_ID, "no shelter registered for the agency")
    stay = shelter.residents.get(command.referral_id)
    if stay is None:
        raise reject(
            "referral_id",
            ErrorCode.UNKNOWN_ID,
            "no resident admitted on this referral",
        )
    discharged = ShelterDischarged(
        shelter_id=shelter.shelter_id,
        referral_id=stay.referral_id,
        case_id=stay.case_id,
        category=stay.category,
        reason=command.reason,
    )
    return [discharged, *serve_waiting_list(_after(shelter, [discharged]), ended)]


class RequestNotYetPlaced(Exception):
    """A revocation or decline reached the shelter before the request it ends was placed:
    the consumer took them out of stream order (the request retried after a failure, taken
    again after a crash, or by another instance). Raised so that it is retried after the
    placement; taken as nothing to do, the request would then give the person a bed or a
    place on the list on a referral that has ended."""


def decide_revocation(
    shelter: Shelter, revoked: ReferralRevoked | ReferralDeclined
) -> list[ShelterEvent]:
    """A revoked or declined referral leaves the waiting list (a declined person waiting
    would otherwise be admitted at the next free bed); a resident stays until discharged."""
    stay = shelter.queue.get(revoked.referral_id)
    if stay is None:
        return []
    return [
        ShelterWaitlistLeft(
            shelter_id=shelter.shelter_id,
            referral_id=stay.referral_id,
            case_id=stay.case_id,
            category=stay.category,
        )
    ]
