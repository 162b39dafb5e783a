"""Oversight on a real hub: a woman waits for a bed in Osh past the waiting-list limit; the
hub escalates it to the coordinating body, she appears in `nrm cases overdue` and `nrm cases
waiting`, the coordinating body reassigns her referral to a shelter with a free bed, and she
is admitted there. Nobody else may reassign; a retried reassignment writes nothing; the
worklists then no longer list her. No personal data in any output."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client

from contracts.commands import ReassignReferral, RegisterShelter
from contracts.vocabulary import ReassignReason, Service, ShelterCategory
from services.case.ids import referral_id_for, referral_id_for_attempt
from services.client import HubClient
from services.runtime.settings import Settings
from tests.integration.hub_reads import events, nrm_output, screening, wait_until

pytestmark = pytest.mark.integration
OSH_SHELTER = "kg-ngo-osh-crisis-centre"
BISHKEK_SHELTER = "kg-ngo-bishkek-crisis-centre"
OSH_POLICE = "kg-mia-osh"
COORDINATING_BODY = "kg-coordinating-body"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # A waiting list is escalated after a second (14 days by default).
    return settings.model_copy(update={"waitlist_escalation_seconds": 1.0})


def accepted(reply: dict[str, Any]) -> dict[str, Any]:
    assert reply["status"] == "accepted", reply
    return reply


async def worklist(url: str, name: str, cwd: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(
        await nrm_output(url, "cases", name, "--format", "json", cwd=cwd)
    )
    return rows


async def test_a_woman_waiting_too_long_is_escalated_listed_and_reassigned(
    hub: Settings, client: HubClient, nc: Client, tmp_path: Path
) -> None:
    assert hub.nats_url is not None
    for shelter, beds in ((OSH_SHELTER, 1), (BISHKEK_SHELTER, 2)):
        register = RegisterShelter(
            command_id=uuid.uuid4(), agency_id=shelter, capacity={ShelterCategory.WOMEN: beds}
        )
        accepted(await client.send(register))
    only_shelter = frozenset({Service.SHELTER})
    first = accepted(await client.send(screening(OSH_POLICE, needs=only_shelter)))
    second = accepted(await client.send(screening(OSH_POLICE, needs=only_shelter)))
    waiting_ref = referral_id_for(second["aggregate_id"], Service.SHELTER)

    async def of_type(kind: str, **fields: Any) -> list[Any]:
        return [
            e
            for e in await events(nc.jetstream())
            if e.type == kind and all(e.data.get(k) == v for k, v in fields.items())
        ]

    assert await wait_until(
        lambda: of_type("shelter.admitted", case_id=first["aggregate_id"]), timeout=30
    )
    [escalated] = await wait_until(
        lambda: of_type("referral.escalated", referral_id=str(waiting_ref)), timeout=30
    )
    assert escalated.data["cause"] == "waitlisted_too_long"
    assert escalated.data["escalated_to"] == COORDINATING_BODY

    [overdue] = await worklist(hub.nats_url, "overdue", tmp_path)
    assert (overdue["item_id"], overdue["detail"], overdue["agency"]) == (
        str(waiting_ref),
        "waitlisted_too_long",
        OSH_SHELTER,
    )
    [waiting] = await worklist(hub.nats_url, "waiting", tmp_path)
    assert waiting["case_id"] == second["aggregate_id"] and waiting["detail"] == "position 1"

    reassign = ReassignReferral(
        command_id=uuid.uuid4(),
        agency_id=COORDINATING_BODY,
        referral_id=waiting_ref,
        provider_id=BISHKEK_SHELTER,
        reason=ReassignReason.WAITING_TOO_LONG,
    )
    by_police = reassign.model_copy(update={"command_id": uuid.uuid4(), "agency_id": OSH_POLICE})
    refused = await client.send(by_police)
    assert refused["status"] == "rejected"
    assert [(e["field"], e["code"]) for e in refused["errors"]] == [("agency_id", "not_authorised")]
    done = accepted(await client.send(reassign))
    again = accepted(await client.send(reassign))
    assert again["duplicate"] is True and again["event_ids"] == done["event_ids"]

    moved = referral_id_for_attempt(second["aggregate_id"], Service.SHELTER, 1)
    assert await wait_until(
        lambda: of_type("shelter.admitted", referral_id=str(moved), shelter_id=BISHKEK_SHELTER),
        timeout=30,
    )
    [revoked] = await of_type("referral.revoked", referral_id=str(waiting_ref))
    assert revoked.data["reason"] == "reassigned"
    assert await wait_until(
        lambda: of_type("shelter.waitlist_left", referral_id=str(waiting_ref)), timeout=30
    )
    assert await worklist(hub.nats_url, "overdue", tmp_path) == []
    assert await worklist(hub.nats_url, "waiting", tmp_path) == []
    view = json.loads(
        await nrm_output(
            hub.nats_url, "cases", "show", second["aggregate_id"], "--format", "json", cwd=tmp_path
        )
    )
    [shelter_need] = view["needs"]
    assert shelter_need["status"] == "being_served"
    assert [(r["attempt"], r["provider_id"], r["status"]) for r in shelter_need["referrals"]] == [
        (0, OSH_SHELTER, "revoked"),
        (1, BISHKEK_SHELTER, "accepted"),
    ]
    assert (view["owner"], view["status"]) == (OSH_POLICE, "active")
