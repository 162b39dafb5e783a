"""The case plan on a real hub: a man identified in Chuy needs shelter; the only men's shelter
is full, declines for capacity, the need is recorded unmet (no_capacity); once a bed is free
his owner re-refers it (need.refer) to the same shelter and he is admitted. A retried
need.refer writes nothing, another agency's is refused, and a met need is not re-referred.
What the owner sees comes from its own feed, as an agency reads it."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from nats.aio.client import Client

from contracts.commands import (
    CloseCase,
    DeclineReferral,
    DischargeFromShelter,
    ReferNeed,
    RegisterShelter,
)
from contracts.events import (
    Event,
    NeedUnmet,
    ReferralAccepted,
    ReferralCompleted,
    ReferralRequested,
    ReferralRevoked,
    ReferralWaitlisted,
)
from contracts.public_key_sealing import generate_private_key
from contracts.vocabulary import (
    ClosureReason,
    DataPurpose,
    DeclineReason,
    DischargeReason,
    PersonalField,
    Region,
    RevokeReason,
    Service,
    Sex,
    ShelterCategory,
    UnmetReason,
)
from services.case.ids import referral_id_for, referral_id_for_attempt
from services.client import AgencyClient, HubClient
from services.runtime.settings import Settings
from services.runtime.stored_messages import read_feed
from tests.integration.hub_reads import CANARIES, CANARY_NAME, screening, wait_until

pytestmark = pytest.mark.integration
CHUY = "kg-labour-inspectorate-chuy"  # identifies in Chuy, provides nothing
MENS_SHELTER = "kg-ngo-bishkek-mens-shelter"  # the registry's only shelter for men
OSH_POLICE = "kg-mia-osh"
COORDINATING_BODY = "kg-coordinating-body"


def accepted(reply: dict[str, Any]) -> dict[str, Any]:
    assert reply["status"] == "accepted", reply
    return reply


async def test_a_man_declined_for_capacity_is_re_referred_by_his_owner_and_admitted(
    hub: Settings, client: HubClient, nc: Client
) -> None:
    register = RegisterShelter(
        command_id=uuid.uuid4(), agency_id=MENS_SHELTER, capacity={ShelterCategory.MEN: 1}
    )
    accepted(await client.send(register))
    # The one bed is taken.
    resident = accepted(
        await client.send(screening(OSH_POLICE, sex=Sex.MALE, needs=frozenset({Service.SHELTER})))
    )
    resident_ref = referral_id_for(resident["aggregate_id"], Service.SHELTER)
    shelter = AgencyClient(nc, MENS_SHELTER, generate_private_key())
    owner = AgencyClient(nc, CHUY, generate_private_key())
    body = AgencyClient(nc, COORDINATING_BODY, generate_private_key())
    accepted(await client.register_agency_key(COORDINATING_BODY, MENS_SHELTER, shelter.public_key))

    async def events_of(agency: AgencyClient, kind: type[Event], case_id: uuid.UUID) -> list[Any]:
        return [
            e
            for e in await agency.feed()
            if isinstance(e, kind) and getattr(e, "case_id", None) == case_id
        ]

    await wait_until(
        lambda: events_of(shelter, ReferralAccepted, uuid.UUID(resident["aggregate_id"])),
        timeout=30,
    )

    interview = screening(CHUY, sex=Sex.MALE, needs=frozenset({Service.SHELTER}))
    reply = accepted(await client.send(interview.model_copy(update={"region": Region.CHUY})))
    case_id = uuid.UUID(reply["aggregate_id"])
    first = referral_id_for(case_id, Service.SHELTER)
    [waiting] = await wait_until(lambda: events_of(owner, ReferralWaitlisted, case_id), timeout=30)
    assert waiting.referral_id == first and waiting.provider_id == MENS_SHELTER

    decline = DeclineReferral(
        command_id=uuid.uuid4(),
        agency_id=MENS_SHELTER,
        referral_id=first,
        reason=DeclineReason.NO_CAPACITY,
    )
    accepted(await client.send(decline))
    # Nobody else takes men: the need is unmet for capacity, told to the owner and the body.
    [unmet] = await wait_until(lambda: events_of(owner, NeedUnmet, case_id), timeout=30)
    assert unmet.reason is UnmetReason.NO_CAPACITY and unmet.region is Region.CHUY
    assert await wait_until(lambda: events_of(body, NeedUnmet, case_id), timeout=30)

    # A bed is free; he is no longer on the waiting list, so he is not admitted by it.
    discharge = DischargeFromShelter(
        command_id=uuid.uuid4(),
        agency_id=MENS_SHELTER,
        referral_id=resident_ref,
        reason=DischargeReason.RETURNED_HOME,
    )
    accepted(await client.send(discharge))

    refer = ReferNeed(
        command_id=uuid.uuid4(),
        agency_id=CHUY,
        case_id=case_id,
        service=Service.SHELTER,
        provider_id=MENS_SHELTER,
    )
    by_another = refer.model_copy(update={"command_id": uuid.uuid4(), "agency_id": OSH_POLICE})
    refused = await client.send(by_another)
    assert refused["status"] == "rejected"
    assert [(e["field"], e["code"]) for e in refused["errors"]] == [("agency_id", "not_authorised")]
    done = accepted(await client.send(refer))
    again = accepted(await client.send(refer))  # retried: the same answer, nothing written
    assert again["duplicate"] is True and again["event_ids"] == done["event_ids"]

    second = referral_id_for_attempt(case_id, Service.SHELTER, 1)
    [admitted] = await wait_until(lambda: events_of(owner, ReferralAccepted, case_id), timeout=30)
    assert admitted.referral_id == second and admitted.provider_id == MENS_SHELTER
    [request] = [
        e for e in await events_of(shelter, ReferralRequested, case_id) if e.referral_id == second
    ]
    assert request.attempt == 1 and request.referrer_id == CHUY
    # Custody finds the second referral through the need: the shelter may open his name.
    opened = await shelter.open_fields(case_id, DataPurpose.ASSISTANCE)
    assert opened[PersonalField.FULL_NAME] == CANARY_NAME

    # He leaves, his stay completed: the need is met and is not re-referred.
    leave = DischargeFromShelter(
        command_id=uuid.uuid4(),
        agency_id=MENS_SHELTER,
        referral_id=second,
        reason=DischargeReason.REHABILITATION_COMPLETED,
    )
    accepted(await client.send(leave))
    await wait_until(lambda: events_of(owner, ReferralCompleted, case_id), timeout=30)
    met = await client.send(refer.model_copy(update={"command_id": uuid.uuid4()}))
    assert met["status"] == "rejected"
    assert [(e["field"], e["code"]) for e in met["errors"]] == [("service", "invalid_state")]

    # Nothing personal in the owner's feed, subjects included.
    for message in await read_feed(nc, CHUY):
        for canary in CANARIES:
            assert canary not in message.subject and canary.encode() not in message.data


async def test_a_case_closes_naming_its_active_referral_and_the_hub_revokes_it(
    hub: Settings, client: HubClient, nc: Client
) -> None:
    reply = accepted(await client.send(screening(OSH_POLICE, needs=frozenset({Service.LEGAL_AID}))))
    case_id = uuid.UUID(reply["aggregate_id"])
    legal = referral_id_for(case_id, Service.LEGAL_AID)
    police = AgencyClient(nc, OSH_POLICE, generate_private_key())
    await wait_until(lambda: police.feed(), timeout=30)  # the request reached its feed
    close = CloseCase(
        command_id=uuid.uuid4(),
        agency_id=OSH_POLICE,
        case_id=case_id,
        reason=ClosureReason.LOST_CONTACT,
    )
    refused = await client.send(close)
    assert [(e["field"], e["code"]) for e in refused["errors"]] == [("case_id", "invalid_state")]
    accepted(
        await client.send(
            close.model_copy(update={"command_id": uuid.uuid4(), "revoke_referrals": (legal,)})
        )
    )

    async def revoked() -> list[ReferralRevoked]:
        return [
            e
            for e in await police.feed()
            if isinstance(e, ReferralRevoked) and e.referral_id == legal
        ]

    [revocation] = await wait_until(revoked, timeout=30)
    assert revocation.reason is RevokeReason.CASE_CLOSED and revocation.revoked_by == OSH_POLICE
