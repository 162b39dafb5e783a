"""The identifying agency follows its case: the answers to the referrals it made reach its
own feed (NRM_FEEDS, read as the agency reads it), with nothing personal in them."""

from __future__ import annotations

import uuid

import pytest
from nats.aio.client import Client

from contracts.commands import (
    AcceptCaseTransfer,
    AcceptReferral,
    DeclineReferral,
    RequestCaseTransfer,
)
from contracts.events import (
    CaseTransferRequested,
    Event,
    ReferralAccepted,
    ReferralDeclined,
    ReferralRequested,
)
from contracts.public_key_sealing import generate_private_key
from contracts.vocabulary import DeclineReason, Service, TransferReason
from services.case.ids import referral_id_for
from services.client import AgencyClient, HubClient
from services.runtime.settings import Settings
from services.runtime.stored_messages import read_feed
from tests.integration.hub_reads import CANARIES, screening, wait_until

pytestmark = pytest.mark.integration
IDENTIFIER = "kg-mia-osh"  # identifies in Osh and provides nothing: its feed is its cases'
LEGAL_CLINIC = "kg-ngo-osh-legal-clinic"
CRISIS_CENTRE = "kg-ngo-osh-crisis-centre"  # psychological support in Osh
SOCIAL_OFFICE = "kg-social-osh"  # takes cases over; provides no legal aid


async def test_the_identifying_agency_sees_the_answers_to_its_referrals(
    hub: Settings, client: HubClient, nc: Client
) -> None:
    reply = await client.send(
        screening(IDENTIFIER, needs=frozenset({Service.LEGAL_AID, Service.PSYCHOLOGICAL}))
    )
    assert reply["status"] == "accepted", reply
    case_id = uuid.UUID(reply["aggregate_id"])
    identifier = AgencyClient(nc, IDENTIFIER, generate_private_key())

    async def requested() -> list[ReferralRequested]:
        found = [e for e in await identifier.feed() if isinstance(e, ReferralRequested)]
        return found if len(found) == 2 else []

    providers = {e.provider_id for e in await wait_until(requested, timeout=30)}
    assert providers == {LEGAL_CLINIC, CRISIS_CENTRE}
    assert await identifier.referrals() == []  # none addressed to it as a provider

    legal_ref = referral_id_for(case_id, Service.LEGAL_AID)
    psych_ref = referral_id_for(case_id, Service.PSYCHOLOGICAL)
    accept = AcceptReferral(command_id=uuid.uuid4(), agency_id=LEGAL_CLINIC, referral_id=legal_ref)
    assert (await client.send(accept))["status"] == "accepted"
    decline = DeclineReferral(
        command_id=uuid.uuid4(),
        agency_id=CRISIS_CENTRE,
        referral_id=psych_ref,
        reason=DeclineReason.NO_CAPACITY,
    )
    assert (await client.send(decline))["status"] == "accepted"

    async def answered() -> list[Event]:
        found = [
            e
            for e in await identifier.feed()
            if isinstance(e, ReferralAccepted | ReferralDeclined) and e.case_id == case_id
        ]
        return found if len(found) == 2 else []

    accepted, declined = sorted(
        await wait_until(answered, timeout=30), key=lambda e: isinstance(e, ReferralDeclined)
    )
    assert isinstance(accepted, ReferralAccepted) and accepted.referral_id == legal_ref
    assert isinstance(declined, ReferralDeclined) and declined.referral_id == psych_ref
    assert declined.reason is DeclineReason.NO_CAPACITY

    # Nothing personal in what the identifying agency's feed holds, subjects included.
    for message in await read_feed(nc, IDENTIFIER):
        assert message.subject.startswith(f"nrm.feed.{IDENTIFIER}.")
        for canary in CANARIES:
            assert canary not in message.subject and canary.encode() not in message.data


async def test_a_transfer_reaches_the_receiving_agency_and_its_referrals_follow_the_owner(
    hub: Settings, client: HubClient, nc: Client
) -> None:
    """The agency asked to take a case over learns it from its feed; once it owns the case,
    the answers to the case's referrals reach it too."""
    reply = await client.send(screening(IDENTIFIER, needs=frozenset({Service.LEGAL_AID})))
    assert reply["status"] == "accepted", reply
    case_id = uuid.UUID(reply["aggregate_id"])
    social = AgencyClient(nc, SOCIAL_OFFICE, generate_private_key())
    ask = RequestCaseTransfer(
        command_id=uuid.uuid4(),
        agency_id=IDENTIFIER,
        case_id=case_id,
        to_agency=SOCIAL_OFFICE,
        reason=TransferReason.PERSON_RELOCATED,
    )
    assert (await client.send(ask))["status"] == "accepted"

    async def asked() -> list[Event]:
        return [e for e in await social.feed() if isinstance(e, CaseTransferRequested)]

    [request] = await wait_until(asked, timeout=30)
    assert request.case_id == case_id and request.from_agency == IDENTIFIER
    take = AcceptCaseTransfer(command_id=uuid.uuid4(), agency_id=SOCIAL_OFFICE, case_id=case_id)
    assert (await client.send(take))["status"] == "accepted"
    accept = AcceptReferral(
        command_id=uuid.uuid4(),
        agency_id=LEGAL_CLINIC,
        referral_id=referral_id_for(case_id, Service.LEGAL_AID),
    )
    assert (await client.send(accept))["status"] == "accepted"

    async def answered() -> list[Event]:
        return [e for e in await social.feed() if isinstance(e, ReferralAccepted)]

    [accepted] = await wait_until(answered, timeout=30)
    assert accepted.case_id == case_id
