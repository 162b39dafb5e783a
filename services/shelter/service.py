"""shelter service: registers shelters, places shelter referrals, discharges residents."""

from __future__ import annotations

from uuid import UUID

import services.shelter.domain as domain
from contracts.commands import DischargeFromShelter, RegisterShelter
from contracts.events import ReferralDeclined, ReferralRequested, ReferralRevoked, ShelterEvent
from contracts.subjects import aggregate_filter
from contracts.vocabulary import Service
from services.case.referrals import OPEN, fold_referral
from services.case.shelter_beds import fold_shelter
from services.runtime.eventstore import History
from services.runtime.messaging import Delivery, ServiceHost
from services.runtime.service_table import consumer
from services.runtime.writer import Outcome

SERVICE = "shelter"


def register(host: ServiceHost) -> None:
    runtime = host.runtime

    async def ended_on_list(shelter_id: str) -> frozenset[UUID]:
        """The referrals on the shelter's waiting list that were declined or revoked since:
        the shelter hears of it through its consumer, which may lag behind a discharge a
        moment later; a free bed must not go to someone whose referral has ended. Read only
        when someone is waiting (one batched read)."""
        assert runtime.store is not None
        history = await runtime.store.load("shelter", shelter_id)
        waiting = fold_shelter(shelter_id, [e.event for e in history.events]).waiting
        if not waiting:
            return frozenset()
        ids = [str(stay.referral_id) for stay in waiting]
        stored = await runtime.store.read(*(aggregate_filter("referral", r) for r in ids))
        ended = set()
        for referral_id in ids:
            referral = fold_referral(
                [e.event for e in stored if e.event.aggregate_id() == referral_id]
            )
            if referral is not None and referral.status not in OPEN:
                ended.add(referral.request.referral_id)
        return frozenset(ended)

    async def register_shelter(command: RegisterShelter) -> tuple[str, Outcome]:
        agency = runtime.registry.get(command.agency_id)
        ended = await ended_on_list(command.agency_id)
        outcome = await runtime.writer(SERVICE).execute(
            "shelter",
            command.agency_id,
            cause=str(command.command_id),
            correlation=str(command.command_id),
            decide=lambda history: domain.decide_register(
                agency,
                fold_shelter(command.agency_id, [e.event for e in history.events]),
                command,
                ended,
            ),
        )
        return command.agency_id, outcome

    async def discharge(command: DischargeFromShelter) -> tuple[str, Outcome]:
        ended = await ended_on_list(command.agency_id)
        outcome = await runtime.writer(SERVICE).execute(
            "shelter",
            command.agency_id,
            cause=str(command.command_id),
            correlation=str(command.command_id),
            decide=lambda history: domain.decide_discharge(
                fold_shelter(command.agency_id, [e.event for e in history.events]), command, ended
            ),
        )
        return command.agency_id, outcome

    async def on_referral(delivery: Delivery) -> None:
        envelope, event = delivery.envelope, delivery.event
        if isinstance(event, ReferralRequested) and event.service is Service.SHELTER:
            shelter_id = event.provider_id
            placement = event
            ended = await ended_on_list(shelter_id)

            def decide(history: History) -> list[ShelterEvent]:
                shelter = fold_shelter(shelter_id, [e.event for e in history.events])
                return domain.decide_placement(shelter, placement, ended)

        elif isinstance(event, ReferralRevoked | ReferralDeclined):
            addressed_to = await provider_of(str(event.referral_id))
            if addressed_to is None:
                return
            shelter_id = addressed_to
            revoked = event

            def decide(history: History) -> list[ShelterEvent]:
                shelter = fold_shelter(shelter_id, [e.event for e in history.events])
                return domain.decide_revocation(shelter, revoked)

        else:
            return
        await runtime.writer(SERVICE).execute(
            "shelter",
            shelter_id,
            cause=envelope.id,
            correlation=envelope.correlationid,
            decide=decide,
        )

    async def provider_of(referral_id: str) -> str | None:
        """The shelter a referral was addressed to, if it was a shelter referral."""
        assert runtime.store is not None
        history = await runtime.store.load("referral", referral_id)
        first = history.events[0].event if history.events else None
        if isinstance(first, ReferralRequested) and first.service is Service.SHELTER:
            return first.provider_id
        return None

    host.command(RegisterShelter, register_shelter)
    host.command(DischargeFromShelter, discharge)
    host.consume(consumer("shelter-on-referral"), on_referral)
