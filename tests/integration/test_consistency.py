"""Optimistic concurrency, idempotency, retries and dead letters on a real JetStream."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid

import pytest
from cloudevents.core.formats.json import JSONFormat
from nats.aio.client import Client

from contracts.commands import AcceptReferral, DeclineReferral, RegisterShelter
from contracts.envelope import Envelope, unwrap_event, wrap_event
from contracts.events import ShelterRegistered
from contracts.subjects import DLQ_STREAM, EVENTS_STREAM
from contracts.vocabulary import DeclineReason, Region, Service, ShelterCategory
from services.agencies.registry import load_registry
from services.bootstrap import bootstrap, running_services
from services.client import HubClient
from services.referral.service import ReferralService
from services.runtime.eventstore import ConcurrencyConflict
from services.runtime.eventstore_jetstream import JetStreamEventStore
from services.runtime.messaging import Delivery, Runtime, ServiceHost
from services.runtime.settings import Settings
from services.runtime.writer import utc_now
from tests.integration.hub_reads import (
    audit_leaves,
    events,
    screening,
    stream_messages,
    wait_until,
)

pytestmark = pytest.mark.integration
SHELTER = "kg-ngo-osh-crisis-centre"


async def test_two_concurrent_writers_to_one_aggregate_never_both_succeed(
    hub: Settings, nc: Client
) -> None:
    store = JetStreamEventStore(nc, nc.jetstream())
    for round_ in range(5):
        history = await store.load("shelter", SHELTER)
        envelopes = [_registered_envelope(round_, side) for side in ("left", "right")]
        results = await asyncio.gather(
            *(store.append("shelter", SHELTER, history.last_sequence, [e]) for e in envelopes),
            return_exceptions=True,
        )
        conflicts = [r for r in results if isinstance(r, ConcurrencyConflict)]
        successes = [r for r in results if isinstance(r, int)]
        assert len(successes) == 1 and len(conflicts) == 1, results
    assert len((await store.load("shelter", SHELTER)).events) == 5


def _registered_envelope(round_: int, side: str) -> Envelope:
    event = ShelterRegistered(
        shelter_id=SHELTER, region=Region.OSH_CITY, capacity={ShelterCategory.WOMEN: round_ + 1}
    )
    return wrap_event(
        event,
        event_id=uuid.uuid4(),
        source="urn:test",
        time=utc_now(),
        correlation_id=side,
        causation_id=f"{side}-{round_}",
    )


async def test_concurrent_accept_and_decline_exactly_one_wins(
    hub: Settings, client: HubClient, nc: Client
) -> None:
    js = nc.jetstream()
    cases = [await client.send(screening(needs=frozenset({Service.LEGAL_AID}))) for _ in range(5)]

    async def referrals() -> list[Envelope]:
        found = [e for e in await events(js) if e.type == "referral.requested"]
        return found if len(found) == len(cases) else []

    for requested in await wait_until(referrals):
        referral_id = uuid.UUID(requested.data["referral_id"])
        provider = requested.data["provider_id"]
        accept = AcceptReferral(
            command_id=uuid.uuid4(), agency_id=provider, referral_id=referral_id
        )
        decline = DeclineReferral(
            command_id=uuid.uuid4(),
            agency_id=provider,
            referral_id=referral_id,
            reason=DeclineReason.NO_CAPACITY,
        )
        replies = await asyncio.gather(client.send(accept), client.send(decline))
        statuses = sorted(r["status"] for r in replies)
        assert statuses == ["accepted", "rejected"], replies
        loser = next(r for r in replies if r["status"] == "rejected")
        assert loser["errors"][0]["code"] == "invalid_state"


async def test_a_retried_command_and_a_redelivered_event_change_nothing(
    hub: Settings, client: HubClient, nc: Client
) -> None:
    js = nc.jetstream()
    command = screening(needs=frozenset({Service.LEGAL_AID, Service.MEDICAL}))
    first = await client.send(command)

    async def settled() -> list[Envelope]:
        found = [e for e in await events(js) if e.correlationid == str(command.command_id)]
        return found if len(found) == 4 else []  # identified, consent, two referrals

    await wait_until(settled)
    again = await client.send(command)  # the agency retries with the same command_id
    assert again["status"] == "accepted" and again["duplicate"] is True
    assert again["event_ids"] == first["event_ids"]

    last_seq = (await js.stream_info(EVENTS_STREAM)).state.last_seq
    identified = next(e for e in await events(js) if e.type == "victim.identified")
    raw = next(
        m
        for m in await stream_messages(js, EVENTS_STREAM)
        if json.loads(m.data or b"")["id"] == identified.id
    )
    # Deliver the same stored event to a second referral service instance, twice.
    runtime = Runtime(settings=hub, registry=load_registry())
    runtime.connected(nc)
    referral = ReferralService(ServiceHost("referral", runtime, hub.nats_url or ""))
    delivery = Delivery(identified, unwrap_event(identified), raw.data or b"", raw.seq or 0)
    await referral.on_identification(delivery)
    await referral.on_identification(delivery)
    await asyncio.sleep(0.5)
    assert (await js.stream_info(EVENTS_STREAM)).state.last_seq == last_seq


async def test_a_poison_event_is_retried_then_dead_lettered_and_consumers_go_on(
    hub: Settings, client: HubClient, nc: Client
) -> None:
    js = nc.jetstream()
    poison_subject = f"nrm.evt.case.{uuid.uuid4()}.victim.identified"
    await js.publish(poison_subject, b"{not json", headers={"Nats-Msg-Id": "poison-1"})

    async def dead_letters() -> list[dict[str, object]]:
        ours = [
            m for m in await stream_messages(js, DLQ_STREAM) if m.subject.startswith("nrm.dlq.")
        ]
        for message in ours:  # dead letters are CloudEvents like everything the hub emits
            JSONFormat().read(None, message.data or b"")
        letters = [json.loads(m.data or b"") for m in ours]
        found = [x["data"] for x in letters if x.get("type") == "dead_letter.recorded"]
        consumers = {d["consumer"] for d in found}
        return found if "referral-on-identification" in consumers else []

    letters = await wait_until(dead_letters)
    # The audit log never gives up on a message: the poison one is a leaf, by its hash.
    unreadable = [leaf for leaf in await audit_leaves(js) if leaf["action"] == "unreadable"]
    assert [leaf["source"]["sha256"] for leaf in unreadable] == [
        hashlib.sha256(b"{not json").hexdigest()
    ]
    for letter in letters:
        assert letter["subject"] == poison_subject
        assert letter["attempts"] == hub.max_deliver
        assert "ValidationError" in str(letter["reason"])
    # The consumers keep going: a valid case after the poison one is still referred.
    reply = await client.send(screening(needs=frozenset({Service.MEDICAL})))

    async def referred() -> bool:
        return any(
            e.type == "referral.requested" and e.data["case_id"] == reply["aggregate_id"]
            for e in await events(js)
        )

    await wait_until(referred)


async def test_a_referral_nobody_answers_is_escalated_once(nc: Client, settings: Settings) -> None:
    quick = settings.model_copy(update={"referral_response_seconds": 0.5})
    assert quick.nats_url is not None
    await bootstrap(quick.nats_url, quick)
    js = nc.jetstream()
    async with running_services(quick.nats_url, quick):
        client = HubClient(nc)
        await client.send(screening(needs=frozenset({Service.LEGAL_AID})))

        async def escalated() -> list[Envelope]:
            return [e for e in await events(js) if e.type == "referral.escalated"]

        [event] = await wait_until(escalated)
        assert event.data["escalated_to"] == load_registry().coordinating_body
        await asyncio.sleep(1.0)  # several more sweeps
        assert len(await escalated()) == 1


async def test_shelter_registration_names_the_owner(hub: Settings, client: HubClient) -> None:
    reply = await client.send(
        RegisterShelter(
            command_id=uuid.uuid4(), agency_id="kg-mia-osh", capacity={ShelterCategory.WOMEN: 2}
        )
    )
    assert reply["status"] == "rejected"
    assert reply["errors"][0]["field"] == "agency_id"


async def test_a_duplicate_publish_of_an_event_is_not_a_second_fact(
    hub: Settings, client: HubClient, nc: Client
) -> None:
    js = nc.jetstream()
    await client.send(screening(needs=frozenset()))
    stored, *_consent = await stream_messages(js, EVENTS_STREAM)
    before = (await js.stream_info(EVENTS_STREAM)).state.messages
    envelope = Envelope.from_bytes(stored.data or b"")
    ack = await js.publish(
        stored.subject or "", stored.data or b"", headers={"Nats-Msg-Id": envelope.id}
    )
    assert ack.duplicate is True
    assert (await js.stream_info(EVENTS_STREAM)).state.messages == before


async def test_the_same_screening_sent_concurrently_opens_one_case(
    settings: Settings, nc: Client
) -> None:
    assert settings.nats_url is not None
    await bootstrap(settings.nats_url, settings)
    command = screening(needs=frozenset())
    async with running_services(settings.nats_url, settings, ("identifier",) * 3):
        clients = [HubClient(nc) for _ in range(8)]
        replies = await asyncio.gather(*(c.send(command) for c in clients))
    assert all(r["status"] == "accepted" for r in replies)
    assert len({r["aggregate_id"] for r in replies}) == 1
    assert sum(1 for r in replies if not r["duplicate"]) == 1
    found = [e for e in await events(nc.jetstream()) if e.type == "victim.identified"]
    assert len(found) == 1
