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
from contracts.subjects import aggregate_filter
from contracts.vocabulary import Service
from services.case.referrals import OPEN, fold_referral
from services.case.shelter_beds import Shelter, apply
from services.runtime.eventstore import History, StoredEvent
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
        """Decide on the shelter and append, with one check first for whoever a free bed
        would go to from the waiting list: that referral may have been declined or revoked
        since it was wait-listed, and the shelter hears of that through its consumer, which
        may lag behind a discharge a moment later. A decision that would admit someone from
        the list not yet checked appends nothing; their referrals are read and the decision
        is made again, without those that ended (the next in line may get the bed instead).
        So the check costs nothing while nobody is admitted from the list."""
        ended: frozenset[UUID] = frozenset()
        checked: set[UUID] = set()
        unchecked: list[UUID] = []

        def decide_checked(history: History) -> Sequence[ShelterEvent]:
            unchecked.clear()
            events = decide(state_of(shelter_id, history), ended)
            unchecked.extend(
                event.referral_id
                for event in events
                if isinstance(event, ShelterAdmitted)
                and event.from_waiting_list
                and event.referral_id not in checked
            )
            return [] if unchecked else events

        while True:
            unchecked.clear()  # a retried cause is answered without deciding
            outcome = await runtime.writer(SERVICE).execute(
                "shelter", shelter_id, cause=cause, correlation=correlation, decide=decide_checked
            )
            if not unchecked:
                return outcome
            checked.update(unchecked)
            ended = ended | await ended_referrals(unchecked)

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
            request = await shelter_request_of(str(event.referral_id))
            if request is None:
                return
            requested, revoked = request.event, event
            assert isinstance(requested, ReferralRequested)

            def decide(history: History) -> list[ShelterEvent]:
                left = domain.decide_revocation(state_of(requested.provider_id, history), revoked)
                # Nothing to revoke: the request was placed and left the list since, or it
                # is still to be placed (the placement's cause is the request's id).
                placeable = requested.placement_category is not None
                if left or not placeable or history.caused_by(request.envelope.id):
                    return left
                raise domain.RequestNotYetPlaced(f"referral {requested.referral_id}")

            await runtime.writer(SERVICE).execute(
                "shelter",
                requested.provider_id,
                cause=envelope.id,
                correlation=envelope.correlationid,
                decide=decide,
            )

    async def shelter_request_of(referral_id: str) -> StoredEvent | None:
        """The request of a referral, if it was a shelter referral."""
        assert runtime.store is not None
        history = await runtime.store.load("referral", referral_id)
        first = history.events[0] if history.events else None
        if first is None or not isinstance(first.event, ReferralRequested):
            return None
        return first if first.event.service is Service.SHELTER else None

    host.command(RegisterShelter, register_shelter)
    host.command(DischargeFromShelter, discharge)
    host.consume(consumer("shelter-on-referral"), on_referral)
