"""One meaning per command id, on a real hub: a reused id with another body, for the same or
another command, is a `conflict` and changes nothing; a true retry is a duplicate; a replayed
screening id cannot probe or pollute the duplicate index."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from typing import Any

import pytest
from nats.aio.client import Client

from contracts.commands import (
    DischargeFromShelter,
    RegisterShelter,
    WithdrawConsent,
)
from contracts.subjects import EVENTS_STREAM, agency_command_subject
from contracts.vocabulary import DischargeReason, ShelterCategory
from services.client import HubClient
from services.runtime.settings import Settings
from services.runtime.topology import BLIND_INDEX_BUCKET
from tests.integration.hub_reads import events, screening

pytestmark = pytest.mark.integration

SHELTER = "kg-ngo-bishkek-mens-shelter"
IDENTIFIER = "kg-ngo-osh-crisis-centre"


async def _stored(nc: Client) -> int:
    return (await nc.jetstream().stream_info(EVENTS_STREAM)).state.messages


async def _caused_by(nc: Client, command_id: uuid.UUID) -> list[str]:
    """The events a command wrote (consumers keep writing their own after it)."""
    return [e.id for e in await events(nc.jetstream()) if e.causationid == str(command_id)]


def _codes(reply: dict[str, Any]) -> list[tuple[str, str]]:
    return [(e["field"], e["code"]) for e in reply.get("errors", [])]


async def test_a_reused_command_id_with_another_body_is_a_conflict(
    hub: Settings, client: HubClient, nc: Client
) -> None:
    command_id = uuid.uuid4()
    first = RegisterShelter(
        command_id=command_id, agency_id=SHELTER, capacity={ShelterCategory.MEN: 2}
    )
    assert (await client.send(first))["status"] == "accepted"
    before = await _stored(nc)

    retry = await client.send(first)
    assert retry["status"] == "accepted" and retry["duplicate"] is True

    other_beds = first.model_copy(update={"capacity": {ShelterCategory.MEN: 7}})
    discharge = DischargeFromShelter(
        command_id=command_id,
        agency_id=SHELTER,
        referral_id=uuid.uuid4(),
        reason=DischargeReason.LEFT_VOLUNTARILY,
    )
    for reused in (other_beds, discharge):
        reply = await client.send(reused)
        assert reply["status"] == "rejected", reply
        assert _codes(reply) == [("command_id", "conflict")]
    assert await _stored(nc) == before


async def test_a_screening_id_reused_for_a_consent_withdrawal_is_a_conflict(
    hub: Settings, client: HubClient, nc: Client
) -> None:
    submitted = screening(IDENTIFIER)
    accepted = await client.send(submitted)
    assert accepted["status"] == "accepted"
    before = await _caused_by(nc, submitted.command_id)
    withdraw = WithdrawConsent(
        command_id=submitted.command_id,
        agency_id=IDENTIFIER,
        case_id=uuid.UUID(accepted["aggregate_id"]),
    )
    reply = await client.send(withdraw)
    assert _codes(reply) == [("command_id", "conflict")]
    assert await _caused_by(nc, submitted.command_id) == before
    assert not [e for e in await events(nc.jetstream()) if e.type == "consent.withdrawn"]


async def test_a_replayed_screening_id_with_a_guessed_person_learns_and_writes_nothing(
    hub: Settings, client: HubClient, nc: Client
) -> None:
    """The attack: an agency resends one of its own old screening ids with a guessed name
    and birth date to learn whether another agency's case of that person exists."""
    born = dt.date(1990, 5, 17)
    victim = screening("kg-health-osh")
    victim = victim.model_copy(
        update={
            "age": None,
            "personal_data": victim.personal_data.model_copy(update={"date_of_birth": born}),
        }
    )
    assert (await client.send(victim))["status"] == "accepted"

    own_old = screening(IDENTIFIER)
    assert (await client.send(own_old))["status"] == "accepted"
    index = await nc.jetstream().key_value(BLIND_INDEX_BUCKET)
    keys_before = sorted(await index.keys())
    written_before = await _caused_by(nc, own_old.command_id)

    guess = own_old.model_copy(
        update={"age": None, "personal_data": victim.personal_data}  # the guessed person
    )
    reply = await client.send(guess)
    assert reply["status"] == "rejected"
    assert _codes(reply) == [("command_id", "conflict")]
    assert "likely_duplicate_of" not in reply
    assert sorted(await index.keys()) == keys_before  # the guess was not indexed
    assert await _caused_by(nc, own_old.command_id) == written_before

    # A true retry (re-sealed, so other ciphertext) is still the same command: a duplicate,
    # answered from the record.
    again = await client.send(own_old)
    assert again["status"] == "accepted" and again["duplicate"] is True
    assert again["likely_duplicate_of"] == []


async def test_concurrent_bodies_under_one_id_give_one_command(
    hub: Settings, client: HubClient, nc: Client
) -> None:
    command_id = uuid.uuid4()
    bodies = [
        RegisterShelter(
            command_id=command_id, agency_id=SHELTER, capacity={ShelterCategory.MEN: beds}
        )
        for beds in range(1, 9)
    ]
    replies = await asyncio.gather(*(client.send(b) for b in bodies))
    accepted = [r for r in replies if r["status"] == "accepted"]
    conflicts = [r for r in replies if _codes(r) == [("command_id", "conflict")]]
    assert len(accepted) == 1 and len(conflicts) == len(bodies) - 1, replies


async def test_key_order_and_whitespace_do_not_change_a_commands_meaning(
    hub: Settings, nc: Client
) -> None:
    command_id = str(uuid.uuid4())
    subject = agency_command_subject(RegisterShelter, SHELTER)
    body = {"command_id": command_id, "agency_id": SHELTER, "capacity": {"men": 3}}
    first = json.loads((await nc.request(subject, json.dumps(body).encode(), timeout=5)).data)
    reordered = json.dumps(dict(reversed(list(body.items()))), indent=2).encode()
    second = json.loads((await nc.request(subject, reordered, timeout=5)).data)
    assert first["data"]["status"] == "accepted"
    assert second["data"]["status"] == "accepted" and second["data"]["duplicate"] is True
