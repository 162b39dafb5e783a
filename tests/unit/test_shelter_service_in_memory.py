"""The shelter service's command handlers, as registered, on the in-memory event store: no
nats-server, no broker. The same handlers run on JetStream in the integration tests; the
store contract suite (tests/integration/test_event_store_contract.py) holds both stores to
the same semantics."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from contracts.commands import DischargeFromShelter, RegisterShelter
from contracts.envelope import Envelope, wrap_event
from contracts.events import (
    ReferralEvent,
    ReferralRequested,
    ReferralRevoked,
    ShelterAdmitted,
    ShelterDischarged,
    ShelterRegistered,
    ShelterWaitlisted,
    ShelterWaitlistLeft,
)
from contracts.replies import CommandRejection, ErrorCode
from contracts.vocabulary import (
    AgeBand,
    DischargeReason,
    Region,
    RevokeReason,
    Service,
    Sex,
    ShelterCategory,
)
from services.agencies.registry import load_registry
from services.runtime.in_memory import InMemoryEventStore
from services.runtime.messaging import Delivery, Runtime, ServiceHost
from services.runtime.settings import Settings
from services.runtime.writer import utc_now
from services.shelter import service as shelter
from services.shelter.domain import RequestNotYetPlaced

CRISIS = "kg-ngo-osh-crisis-centre"  # runs a shelter for women and children
CLINIC = "kg-ngo-osh-legal-clinic"  # runs none


@pytest.fixture
def store() -> InMemoryEventStore:
    return InMemoryEventStore()


@pytest.fixture
def host(tmp_path: Path, store: InMemoryEventStore) -> ServiceHost:
    runtime = Runtime(settings=Settings(data_dir=tmp_path), registry=load_registry(), store=store)
    # Never connected: the broker is built but not started.
    host = ServiceHost("shelter", runtime, "nats://127.0.0.1:1")
    shelter.register(host)
    return host


async def send(host: ServiceHost, command: Any) -> Any:
    return await host.command_handlers[type(command)](command)


def register(agency: str, **beds: int) -> RegisterShelter:
    capacity = {ShelterCategory(k): v for k, v in beds.items()}
    return RegisterShelter(command_id=uuid.uuid4(), agency_id=agency, capacity=capacity)


async def test_registering_a_shelter_writes_one_event_once(
    host: ServiceHost, store: InMemoryEventStore
) -> None:
    command = register(CRISIS, women=4)
    aggregate_id, outcome = await send(host, command)
    assert aggregate_id == CRISIS and not outcome.duplicate and len(outcome.event_ids) == 1
    history = await store.load("shelter", CRISIS)
    assert [type(e.event) for e in history.events] == [ShelterRegistered]
    assert history.events[0].envelope.id == str(outcome.event_ids[0])
    assert history.events[0].envelope.causationid == str(command.command_id)

    _, again = await send(host, command)  # a retried command changes nothing
    assert again.duplicate and again.event_ids == outcome.event_ids
    assert len((await store.load("shelter", CRISIS)).events) == 1


async def test_an_agency_without_a_shelter_is_refused_and_nothing_is_written(
    host: ServiceHost, store: InMemoryEventStore
) -> None:
    with pytest.raises(CommandRejection) as refused:
        await send(host, register(CLINIC, women=2))
    assert [e.code for e in refused.value.errors] == [ErrorCode.NOT_AUTHORISED]
    with pytest.raises(CommandRejection) as unlisted:  # the registry lists no men's beds
        await send(host, register(CRISIS, men=2))
    assert [e.field for e in unlisted.value.errors] == ["capacity"]
    assert await store.read("nrm.evt.>") == ()


async def test_a_resident_is_discharged_and_their_bed_kept_until_then(
    host: ServiceHost, store: InMemoryEventStore
) -> None:
    await send(host, register(CRISIS, women=1))
    referral, case = uuid.uuid4(), uuid.uuid4()
    admitted = ShelterAdmitted(
        shelter_id=CRISIS,
        referral_id=referral,
        case_id=case,
        category=ShelterCategory.WOMEN,
        from_waiting_list=False,
    )
    history = await store.load("shelter", CRISIS)
    envelope = wrap_event(
        admitted,
        event_id=uuid.uuid4(),
        source="urn:test",
        time=utc_now(),
        correlation_id=None,
        causation_id=str(uuid.uuid4()),
    )
    await store.append("shelter", CRISIS, history.last_sequence, [envelope])

    with pytest.raises(CommandRejection) as crowded:  # no registration ends a stay
        await send(host, register(CRISIS, women=0))
    assert [e.code for e in crowded.value.errors] == [ErrorCode.INVALID_STATE]
    unknown = DischargeFromShelter(
        command_id=uuid.uuid4(),
        agency_id=CRISIS,
        referral_id=uuid.uuid4(),
        reason=DischargeReason.RETURNED_HOME,
    )
    with pytest.raises(CommandRejection) as nobody:
        await send(host, unknown)
    assert [e.code for e in nobody.value.errors] == [ErrorCode.UNKNOWN_ID]

    discharge = unknown.model_copy(update={"command_id": uuid.uuid4(), "referral_id": referral})
    _, outcome = await send(host, discharge)
    events = [e.event for e in (await store.load("shelter", CRISIS)).events]
    assert isinstance(events[-1], ShelterDischarged) and events[-1].referral_id == referral
    assert len(outcome.event_ids) == 1 and not outcome.duplicate
    _, fewer = await send(host, register(CRISIS, women=0))  # the bed is free now
    assert not fewer.duplicate and len(fewer.event_ids) == 1


async def test_a_revocation_taken_before_its_request_waits_for_the_placement(
    host: ServiceHost, store: InMemoryEventStore
) -> None:
    """Out of stream order (the request retried after a failure, or taken again after a
    crash while the consumer went on): the revocation is refused for a retry instead of
    being taken as nothing to do, and once the request is placed it takes the person off
    the waiting list, as in order."""
    await send(host, register(CRISIS, women=0))
    referral_id, case_id = uuid.uuid4(), uuid.uuid4()
    requested = ReferralRequested(
        referral_id=referral_id,
        case_id=case_id,
        service=Service.SHELTER,
        referrer_id="kg-health-osh",
        provider_id=CRISIS,
        region=Region.OSH_CITY,
        sex=Sex.FEMALE,
        age_band=AgeBand.FROM_25_TO_34,
        is_child=False,
        placement_category=ShelterCategory.WOMEN,
        shared_fields=(),
        requested_at=utc_now(),
        respond_by=utc_now(),
    )
    revoked = ReferralRevoked(
        referral_id=referral_id,
        case_id=case_id,
        revoked_by="kg-health-osh",
        reason=RevokeReason.PERSON_WITHDREW,
    )
    stored: list[tuple[Envelope, int, ReferralEvent]] = []
    for index, event in enumerate((requested, revoked)):
        envelope = wrap_event(
            event,
            event_id=uuid.uuid4(),
            source="urn:test",
            time=utc_now(),
            correlation_id=None,
            causation_id=str(uuid.uuid4()),
        )
        last = await store.append("referral", str(referral_id), index and stored[-1][1], [envelope])
        stored.append((envelope, last, event))
    handle = host.event_handlers["shelter-on-referral"]

    def delivery(index: int) -> Delivery:
        envelope, sequence, event = stored[index]
        return Delivery(envelope, event, envelope.to_bytes(), sequence)

    with pytest.raises(RequestNotYetPlaced):
        await handle(delivery(1))  # the revocation first
    await handle(delivery(0))  # the request: no bed, so the waiting list
    await handle(delivery(1))  # the retried revocation
    kinds = [type(e.event) for e in await store.read("nrm.evt.shelter.>")]
    assert kinds == [ShelterRegistered, ShelterWaitlisted, ShelterWaitlistLeft]
