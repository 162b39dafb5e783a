"""shelter service: registers shelters, places shelter referrals, discharges residents."""

from __future__ import annotations

from contracts.commands import DischargeFromShelter, RegisterShelter
from contracts.events import ReferralRequested
from contracts.vocabulary import Service
from services.runtime.messaging import Delivery, ServiceHost
from services.runtime.topology import consumer
from services.runtime.writer import Outcome
from services.shelter import domain

SERVICE = "shelter"


def register(host: ServiceHost) -> None:
    runtime = host.runtime

    async def register_shelter(command: RegisterShelter) -> tuple[str, Outcome]:
        agency = runtime.registry.get(command.agency_id)
        outcome = await runtime.writer(SERVICE).execute(
            "shelter",
            command.agency_id,
            cause=str(command.command_id),
            correlation=str(command.command_id),
            decide=lambda _history: domain.decide_register(agency, command),
        )
        return command.agency_id, outcome

    async def discharge(command: DischargeFromShelter) -> tuple[str, Outcome]:
        outcome = await runtime.writer(SERVICE).execute(
            "shelter",
            command.agency_id,
            cause=str(command.command_id),
            correlation=str(command.command_id),
            decide=lambda history: domain.decide_discharge(
                domain.fold(command.agency_id, [e.event for e in history.events]), command
            ),
        )
        return command.agency_id, outcome

    async def on_referral(delivery: Delivery) -> None:
        envelope, event = delivery.envelope, delivery.event
        if not isinstance(event, ReferralRequested) or event.service is not Service.SHELTER:
            return
        shelter_id = event.provider_id
        await runtime.writer(SERVICE).execute(
            "shelter",
            shelter_id,
            cause=envelope.id,
            correlation=envelope.correlationid,
            decide=lambda history: domain.decide_placement(
                domain.fold(shelter_id, [e.event for e in history.events]), event
            ),
        )

    host.command(RegisterShelter, register_shelter)
    host.command(DischargeFromShelter, discharge)
    host.consume(consumer("shelter-on-referral"), on_referral)
