"""shelter service: registers shelters, places shelter referrals, discharges residents."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from uuid import UUID

import services.shelter.domain as domain
from contracts.commands import DischargeFromShelter, RegisterShelter
from contracts.events import (
    ReferralDeclined,
    ReferralRequested,
    ReferralRevoked,
    ShelterAdmitted,
    ShelterEvent,
)
from contracts.replies import CommandRejection
from contracts.subjects import aggregate_filter
from contracts.vocabulary import Service
from services.case.referrals import OPEN, fold_referral
from services.case.shelter_beds import Shelter, apply
from services.runtime.eventstore import History
from services.runtime.messaging import Delivery, ServiceHost
from services.runtime.service_table import consumer
from services.runtime.snapshots import Snapshots
from services.runtime.writer import Outcome

SERVICE = "shelter"


def register(host: ServiceHost) -> None:
    runtime = host.runtime
    # A shelter's history grows with every placement: decide on its kept fold, not a new one.
    shelters: Snapshots[Shelter] = Snapshots(Shelter, apply, Shelter.copy)

    def state_of(shelter_id: str, history: History) -> Shelter:
        return shelters.state(shelter_id, history)

    async def ended_among_admitted(
        shelter_id: str, decide: Callable[[Shelter, frozenset[UUID]], Sequence[ShelterEvent]]
    ) -> frozenset[UUID]:
        """The referrals, among those this decision would admit from the waiting list, that
        were declined or revoked since they were wait-listed: the shelter hears of it through
        its consumer, which may lag behind a discharge a moment later, and a free bed must
        not go to someone whose referral has ended. Only the people a bed would go to are
        read, so the check costs nothing while nobody is admitted from the list."""
        assert runtime.store is not None
        shelter = state_of(shelter_id, await runtime.store.load("shelter", shelter_id))
        ended: frozenset[UUID] = frozenset()
        checked: set[UUID] = set()
        while True:
            admitted = [
                event.referral_id
                for event in decide(shelter, ended)
                if isinstance(event, ShelterAdmitted)
                and event.from_waiting_list
                and event.referral_id not in checked
            ]
            if not admitted:
                return ended
            checked.update(admitted)
            newly = await ended_referrals(admitted)
            if not newly:
                return ended
            ended |= newly  # those leave the list; the next in line may get the bed instead

    async def ended_referrals(referral_ids: Sequence[UUID]) -> frozenset[UUID]:
        assert runtime.store is not None
        ids = [str(r) for r in referral_ids]
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

        def decide(shelter: Shelter, ended: frozenset[UUID]) -> list[ShelterEvent]:
            return domain.decide_register(agency, shelter, command, ended)

        return command.agency_id, await execute(
            command.agency_id, str(command.command_id), str(command.command_id), decide
        )

    async def discharge(command: DischargeFromShelter) -> tuple[str, Outcome]:
        def decide(shelter: Shelter, ended: frozenset[UUID]) -> list[ShelterEvent]:
            return domain.decide_discharge(shelter, command, ended)

        return command.agency_id, await execute(
            command.agency_id, str(command.command_id), str(command.command_id), decide
        )

    async def execute(
        shelter_id: str,
        cause: str,
        correlation: str | None,
        decide: Callable[[Shelter, frozenset[UUID]], Sequence[ShelterEvent]],
    ) -> Outcome:
        try:
            ended = await ended_among_admitted(shelter_id, decide)
        except CommandRejection:
            ended = frozenset()  # the writer decides again and answers with the rejection
        return await runtime.writer(SERVICE).execute(
            "shelter",
            shelter_id,
            cause=cause,
            correlation=correlation,
            decide=lambda history: decide(state_of(shelter_id, history), ended),
        )

    async def on_referral(delivery: Delivery) -> None:
        envelope, event = delivery.envelope, delivery.event
        if isinstance(event, ReferralRequested) and event.service is Service.SHELTER:
            placement = event
            await execute(
                event.provider_id,
                envelope.id,
                envelope.correlationid,
                lambda shelter, ended: domain.decide_placement(shelter, placement, ended),
            )
        elif isinstance(event, ReferralRevoked | ReferralDeclined):
            shelter_id = await provider_of(str(event.referral_id))
            if shelter_id is None:
                return
            revoked = event
            await execute(
                shelter_id,
                envelope.id,
                envelope.correlationid,
                lambda shelter, _ended: domain.decide_revocation(shelter, revoked),
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
