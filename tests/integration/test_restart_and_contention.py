"""A hub restarted from its file store picks up where it was; shelters never admit more
people than they have beds, even with several shelter service instances competing."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import nats
import pytest

from contracts.commands import DischargeFromShelter, RegisterShelter
from contracts.vocabulary import DischargeReason, Service, Sex, ShelterCategory
from services.bootstrap import local_hub, running_services
from services.client import HubClient
from services.runtime.case_keys import create_hub_keys
from services.runtime.settings import Settings
from tests.integration.hub_reads import events, screening, wait_until

pytestmark = pytest.mark.integration
MEN = "kg-ngo-bishkek-mens-shelter"


def _man() -> object:
    return screening("kg-mia-bishkek", sex=Sex.MALE, age=30, needs=frozenset({Service.SHELTER}))


async def test_restart_from_the_file_store_keeps_beds_and_waiting_list(tmp_path: Path) -> None:
    local = Settings(data_dir=tmp_path / "var")
    create_hub_keys(local)
    async with local_hub(local) as url, running_services(url, local):
        nc = await nats.connect(url)
        client = HubClient(nc)
        await client.send(
            RegisterShelter(
                command_id=uuid.uuid4(), agency_id=MEN, capacity={ShelterCategory.MEN: 1}
            )
        )
        first = await client.send(_man())
        second = await client.send(_man())

        async def placed() -> list[str]:
            types = [e.type for e in await events(nc.jetstream()) if e.type.startswith("shelter.")]
            return types if "shelter.waitlisted" in types else []

        await wait_until(placed)
        admitted = next(e for e in await events(nc.jetstream()) if e.type == "shelter.admitted")
        await nc.close()

    # Everything stopped (server included); start again on the same directory.
    async with local_hub(local) as url, running_services(url, local):
        nc = await nats.connect(url)
        reply = await HubClient(nc).send(
            DischargeFromShelter(
                command_id=uuid.uuid4(),
                agency_id=MEN,
                referral_id=uuid.UUID(admitted.data["referral_id"]),
                reason=DischargeReason.REHABILITATION_COMPLETED,
            )
        )
        assert reply["status"] == "accepted" and len(reply["event_ids"]) == 2

        async def second_admitted() -> bool:
            return any(
                e.type == "shelter.admitted"
                and e.data["case_id"] == second["aggregate_id"]
                and e.data["from_waiting_list"]
                for e in await events(nc.jetstream())
            )

        await wait_until(second_admitted)
        assert first["aggregate_id"] == admitted.data["case_id"]
        await nc.close()


async def test_competing_shelter_instances_never_exceed_the_beds(settings: Settings) -> None:
    assert settings.nats_url is not None
    names = ("identifier", "referral", "shelter", "shelter", "shelter", "audit")
    async with local_hub(settings) as url, running_services(url, settings, names):
        nc = await nats.connect(url)
        client = HubClient(nc, timeout=30)
        beds = 3
        await client.send(
            RegisterShelter(
                command_id=uuid.uuid4(), agency_id=MEN, capacity={ShelterCategory.MEN: beds}
            )
        )
        replies = await asyncio.gather(*(client.send(_man()) for _ in range(12)))
        assert all(r["status"] == "accepted" for r in replies)
        js = nc.jetstream()

        async def all_placed() -> list[object]:
            found = [
                e for e in await events(js) if e.type in ("shelter.admitted", "shelter.waitlisted")
            ]
            return found if len(found) == 12 else []

        placements = await wait_until(all_placed, timeout=30)
        admitted = [e for e in placements if e.type == "shelter.admitted"]
        waiting = sorted(e.data["position"] for e in placements if e.type == "shelter.waitlisted")
        assert len(admitted) == beds
        assert waiting == list(range(1, 12 - beds + 1))  # one place in line each, no gaps

        async def referrals_settled() -> dict[str, str]:
            states: dict[str, str] = {}
            for e in await events(js):
                if e.type.startswith("referral."):
                    states[e.data["referral_id"]] = e.type
            counts = list(states.values())
            done = counts.count("referral.accepted") + counts.count("referral.waitlisted")
            return states if done == 12 else {}

        states = await wait_until(referrals_settled, timeout=30)
        assert list(states.values()).count("referral.accepted") == beds
        await nc.close()


async def test_added_beds_go_to_the_waiting_list_and_beds_below_residents_are_refused(
    settings: Settings,
) -> None:
    async with local_hub(settings) as url, running_services(url, settings):
        nc = await nats.connect(url)
        client, js = HubClient(nc), nc.jetstream()

        def beds(men: int) -> RegisterShelter:
            return RegisterShelter(
                command_id=uuid.uuid4(), agency_id=MEN, capacity={ShelterCategory.MEN: men}
            )

        async def shelter_events(count: int) -> list[object]:
            found = [e for e in await events(js) if e.type.startswith("shelter.")]
            return found if len(found) >= count else []

        await client.send(beds(1))
        first = await client.send(_man())
        await wait_until(lambda: shelter_events(2))  # registered, admitted
        second = await client.send(_man())
        await wait_until(lambda: shelter_events(3))  # ... waitlisted

        # One more bed: the person waiting gets it, in the registration's own atomic append.
        reply = await client.send(beds(2))
        assert reply["status"] == "accepted" and len(reply["event_ids"]) == 2
        admitted = [e for e in await events(js) if e.type == "shelter.admitted"]
        assert [e.data["case_id"] for e in admitted] == [
            first["aggregate_id"],
            second["aggregate_id"],
        ]
        assert admitted[1].data["from_waiting_list"]

        async def referrals_accepted() -> bool:
            found = [e for e in await events(js) if e.type == "referral.accepted"]
            return len(found) == 2

        await wait_until(referrals_accepted)

        # Two residents: one bed is refused, by field and reason, and nothing is written.
        written = len(await events(js))
        refused = await client.send(beds(1))
        assert refused["status"] == "rejected"
        [error] = refused["errors"]
        assert error["field"] == "capacity.men" and error["code"] == "invalid_state"
        assert not any(ch.isdigit() for ch in error["reason"])
        await asyncio.sleep(0.3)  # anything the refusal had set off would be in by now
        assert len(await events(js)) == written
        await nc.close()
