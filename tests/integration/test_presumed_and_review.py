"""Presumed victims and the review of a non-identification on a real hub (nats-server,
the services running): what is referred when, who may ask for a review, and that a retry
writes nothing."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import pytest
from nats.aio.client import Client

from contracts.commands import (
    CriteriaAnswers,
    DecideIdentificationReview,
    DecideScreening,
    RequestIdentificationReview,
)
from contracts.envelope import Envelope
from contracts.vocabulary import Act, Means, Purpose, ReviewGrounds, ReviewOutcome, Service
from services.case.ids import review_id_for_command
from services.client import HubClient
from services.runtime.settings import Settings
from tests.integration.hub_reads import CANARIES, events, screening, wait_until

pytestmark = pytest.mark.integration
IDENTIFIER = "kg-ngo-osh-crisis-centre"
POLICE = "kg-mia-osh"
LEGAL_CLINIC = "kg-ngo-osh-legal-clinic"  # an NGO: speaks for the person
COORDINATING_BODY = "kg-coordinating-body"
MET = CriteriaAnswers(
    acts=frozenset({Act.RECRUITMENT}),
    means=frozenset({Means.DECEPTION}),
    purposes=frozenset({Purpose.FORCED_LABOUR}),
)
URGENT = {Service.SHELTER.value, Service.MEDICAL.value, Service.PSYCHOLOGICAL.value}


async def case_history(nc: Client, case_id: str) -> list[Envelope]:
    """Every event about the case: its own (subject: the case id) and its referrals'."""
    return [e for e in await events(nc.jetstream()) if e.data.get("case_id") == case_id]


async def referred(nc: Client, case_id: str) -> Counter[str]:
    """How many first referrals (attempt 0) per service the case has. A shelter that is not
    registered refuses, and the hub re-refers the need to the next shelter: later attempts
    are the case plan's business, not the identification's."""
    return Counter(
        e.data["service"]
        for e in await case_history(nc, case_id)
        if e.type == "referral.requested" and e.data.get("attempt", 0) == 0
    )


def accepted(reply: dict[str, Any]) -> dict[str, Any]:
    assert reply["status"] == "accepted", reply
    return reply


async def test_a_presumed_victim_is_referred_urgently_then_fully_once_identified(
    hub: Settings, client: HubClient, nc: Client
) -> None:
    needs = frozenset({Service.SHELTER, Service.MEDICAL, Service.PSYCHOLOGICAL, Service.LEGAL_AID})
    interview = screening(IDENTIFIER, needs=needs).model_copy(update={"presumed": True})
    case_id = accepted(await client.send(interview))["aggregate_id"]

    async def urgent_referred() -> Counter[str]:
        found = await referred(nc, case_id)
        return found if set(found) == URGENT else Counter()

    # The three urgent referrals come from one event: legal aid would have come with them.
    assert await wait_until(urgent_referred, timeout=30) == Counter(dict.fromkeys(URGENT, 1))
    types = [e.type for e in await case_history(nc, case_id)]
    assert "victim.presumed" in types and "victim.identified" not in types

    decide = DecideScreening(
        command_id=uuid.uuid4(), agency_id=IDENTIFIER, case_id=case_id, criteria=MET
    )
    first = accepted(await client.send(decide))
    again = accepted(await client.send(decide))
    assert again["duplicate"] and again["event_ids"] == first["event_ids"]

    async def fully_referred() -> Counter[str]:
        found = await referred(nc, case_id)
        return found if Service.LEGAL_AID.value in found else Counter()

    expected = Counter(dict.fromkeys(URGENT | {Service.LEGAL_AID.value}, 1))
    assert await wait_until(fully_referred, timeout=30) == expected  # none made twice
    history = [e.type for e in await case_history(nc, case_id) if e.subject == case_id]
    assert history == ["victim.presumed", "consent.recorded", "victim.identified"]


async def test_an_ngo_review_overturns_a_non_identification_and_police_may_not_ask(
    hub: Settings, client: HubClient, nc: Client
) -> None:
    interview = screening(IDENTIFIER, means=frozenset(), needs=frozenset({Service.SHELTER}))
    case_id = accepted(await client.send(interview))["aggregate_id"]

    def ask(by: str) -> RequestIdentificationReview:
        return RequestIdentificationReview(
            command_id=uuid.uuid4(),
            agency_id=by,
            case_id=case_id,
            grounds=ReviewGrounds.NEW_INFORMATION,
        )

    refused = await client.send(ask(POLICE))
    assert refused["status"] == "rejected"
    assert [(e["field"], e["code"]) for e in refused["errors"]] == [("agency_id", "not_authorised")]
    request = ask(LEGAL_CLINIC)
    asked = accepted(await client.send(request))
    asked_again = accepted(await client.send(request))
    assert asked_again["duplicate"] and asked_again["event_ids"] == asked["event_ids"]

    overturn = DecideIdentificationReview(
        command_id=uuid.uuid4(),
        agency_id=COORDINATING_BODY,
        case_id=case_id,
        review_id=review_id_for_command(request.command_id),
        outcome=ReviewOutcome.OVERTURNED,
        criteria=MET,
        needs=frozenset({Service.SHELTER, Service.LEGAL_AID}),
    )
    decided = accepted(await client.send(overturn))
    assert len(decided["event_ids"]) == 2  # case.review_decided, victim.identified

    async def referrals_made() -> Counter[str]:
        found = await referred(nc, case_id)
        return found if len(found) == 2 else Counter()

    assert await wait_until(referrals_made, timeout=30) == Counter(
        {Service.SHELTER.value: 1, Service.LEGAL_AID.value: 1}
    )
    # The retry writes nothing on the case (what the hub does after a referral, e.g. a
    # shelter that is not registered refusing and the need recorded unmet, goes on meanwhile).
    before = [e for e in await case_history(nc, case_id) if e.subject == case_id]
    retried = accepted(await client.send(overturn))
    assert retried["duplicate"] and retried["event_ids"] == decided["event_ids"]
    assert [e for e in await case_history(nc, case_id) if e.subject == case_id] == before
    case_types = [e.type for e in before]  # the case aggregate's
    assert case_types == [
        "victim.not_identified",
        "consent.recorded",
        "case.review_requested",
        "case.review_decided",
        "victim.identified",
    ]
    # Ids and codes only in the review's events and the replies.
    for e in before:
        if e.type.startswith("case.review"):
            assert not any(c in e.to_bytes().decode() for c in CANARIES)
    assert not any(c in str(r) for r in (refused, asked, decided) for c in CANARIES)
