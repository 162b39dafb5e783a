"""Cross-border referral between three country hubs (kg, kz, uz), each its own nats-server
with its own JetStream domain, keys and registry, linked by leaf connections with one account
per country pair. Canary personal data crosses only inside a consented referral, only the
minimal dataset, sealed; refused transfers leave nothing; a cut link delays, never loses."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import re
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from contracts.commands import (
    AcceptCaseTransfer,
    AcceptReferral,
    AddNeed,
    CloseCase,
    CompleteReferral,
    Consent,
    CriteriaAnswers,
    DeliveredItem,
    EraseCase,
    PersonalData,
    RecordConsent,
    RecordFollowUp,
    RegisterShelter,
    RequestCaseTransfer,
    RequestCrossBorderReferral,
    ScheduleFollowUp,
    ScreeningInterview,
    WithdrawConsent,
)
from contracts.crossborder import ReferralPackage, package_info
from contracts.envelope import Envelope
from contracts.public_key_sealing import (
    generate_private_key,
    open_sealed_to,
    read_private_key,
    seal_to,
)
from contracts.subjects import EVENTS_STREAM
from contracts.vocabulary import (
    Act,
    ClosureReason,
    DataPurpose,
    DeliveryUnit,
    ErasureReason,
    FollowUpOutcome,
    FollowUpPurpose,
    FormOfExploitation,
    Means,
    PersonalField,
    Purpose,
    Region,
    Service,
    Sex,
    ShelterCategory,
    TransferReason,
)
from nrm_tools.linked_hubs import LinkedHubs
from services.bootstrap import RunningService, start_service
from services.client import AccessRefusedError, AgencyClient, HubClient
from services.runtime.embedded import free_port
from services.runtime.settings import Settings
from services.runtime.topology import XB_OUTBOX_STREAM
from tests.integration.hub_reads import audit_leaves, events, screening, wait_until
from tests.integration.link_proxy import LinkProxy
from tests.integration.test_cli import NRM, _env

pytestmark = pytest.mark.integration

NAME = "Dilshod Canaryovich"
DOCUMENT = "CANARY-DOC-5521"
PHONE = "+998 90 555 0000 canary"
NARRATIVE = "canary-xb-narrative: kept on a farm near Osh"
ADDRESS = "canary-address Fergana street 9"
CANARIES = (NAME, "Canaryovich", DOCUMENT, PHONE, NARRATIVE, ADDRESS)
NOT_MINIMAL = (PHONE, NARRATIVE, ADDRESS)


@dataclass
class Tap:
    """Everything published in one hub's HUB account (a subscriber on `>`)."""

    messages: list[Msg] = field(default_factory=list)

    async def on_message(self, msg: Msg) -> None:
        self.messages.append(msg)

    def subjects(self) -> list[str]:
        return [m.subject for m in self.messages]

    def blob(self) -> bytes:
        return b"\n".join(
            m.subject.encode() + m.data + json.dumps(m.headers or {}).encode()
            for m in self.messages
        )


@dataclass
class World:
    hubs: LinkedHubs
    clients: dict[str, HubClient]
    taps: dict[str, Tap]
    services: dict[str, list[RunningService]]

    async def restart(self, country: str, name: str) -> None:
        """Stop one of a country's services and start it again (a new process would)."""
        running = self.services[country]
        [at] = [i for i, service in enumerate(running) if service.name == name]
        await running[at].stop()
        settings = self.hubs[country].settings
        assert settings.nats_url is not None
        running[at] = await start_service(name, settings.nats_url, settings)


@contextlib.asynccontextmanager
async def linked_world(
    tmp_path: Path, dial_ports: dict[str, int] | None = None
) -> AsyncIterator[World]:
    overrides = {"max_deliver": 3, "retry_backoff_seconds": (0.05, 0.1)}
    hubs = LinkedHubs(tmp_path, settings_overrides=overrides, dial_ports=dial_ports or {})
    async with hubs, hubs.services() as services:
        connections: list[Client] = []
        clients, taps = {}, {}
        for country in hubs.countries:
            nc = await nats.connect(hubs[country].url, name=f"test-{country}")
            connections.append(nc)
            taps[country] = Tap()
            await nc.subscribe(">", cb=taps[country].on_message)
            clients[country] = HubClient(nc)
        try:
            yield World(hubs, clients, taps, services)
        finally:
            for nc in connections:
                await nc.drain()


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with linked_world(tmp_path) as linked:
        yield linked


def interview(
    agency_id: str,
    region: Region,
    citizenship: str,
    countries: frozenset[str],
    sex: Sex = Sex.MALE,
    needs: frozenset[Service] = frozenset({Service.REPATRIATION}),
    **consent: object,
) -> ScreeningInterview:
    return ScreeningInterview(
        command_id=uuid.uuid4(),
        agency_id=agency_id,
        interviewed_on=dt.date(2026, 11, 20),
        region=region,
        sex=sex,
        citizenship=citizenship,
        country_of_exploitation="KG",
        criteria=CriteriaAnswers(
            acts=frozenset({Act.RECRUITMENT}),
            means=frozenset({Means.DECEPTION}),
            purposes=frozenset({Purpose.FORCED_LABOUR}),
        ),
        forms_of_exploitation=frozenset({FormOfExploitation.FORCED_LABOUR}),
        needs=needs,
        consent=Consent.model_validate(
            {
                "purposes": {DataPurpose.ASSISTANCE, DataPurpose.REPATRIATION},
                "recipient_countries": countries,
                **consent,
            }
        ),
        personal_data=PersonalData(
            full_name=NAME,
            date_of_birth=dt.date(1994, 3, 2),
            document_number=DOCUMENT,
            phone=PHONE,
            address=ADDRESS,
            narrative=NARRATIVE,
        ),
    )


async def identify(client: HubClient, screening: ScreeningInterview) -> str:
    reply = await client.send(screening)
    assert reply["status"] == "accepted", reply
    case_id: str = reply["aggregate_id"]
    return case_id


def refer(
    agency_id: str, case_id: str, destination: str, purpose: str, service: str
) -> RequestCrossBorderReferral:
    return RequestCrossBorderReferral.model_validate(
        {
            "command_id": uuid.uuid4(),
            "agency_id": agency_id,
            "case_id": case_id,
            "destination": destination,
            "purpose": purpose,
            "service": service,
        }
    )


async def of_type(client: HubClient, event_type: str) -> list[Envelope]:
    return [e for e in await events(client.connection.jetstream()) if e.type == event_type]


async def referral_events(client: HubClient, referral_id: str) -> list[str]:
    return [
        e.type
        for e in await events(client.connection.jetstream())
        if e.data.get("referral_id") == referral_id
    ]


async def test_an_uzbek_national_goes_home_and_a_kyrgyz_woman_comes_back(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    kg, kz, uz = (world.clients[c] for c in ("kg", "kz", "uz"))
    # Story 1: identified by the police in Osh, referred home to Uzbekistan.
    case_id = await identify(kg, interview("kg-mia-osh", Region.OSH_CITY, "UZ", frozenset({"UZ"})))
    reply = await kg.send(refer("kg-mia-osh", case_id, "UZ", "repatriation", "repatriation"))
    assert reply["status"] == "accepted", reply
    referral_id = reply["aggregate_id"]

    received = await wait_until(lambda: of_type(uz, "case.received_from_abroad"), timeout=30)
    local = received[0].data
    assert (local["origin"], local["origin_referral_id"]) == ("KG", referral_id)
    assert set(local["personal_data"]) == {"date_of_birth", "document_number", "full_name"}
    requested = await wait_until(lambda: of_type(uz, "referral.requested"), timeout=30)
    provider = requested[0].data["provider_id"]
    assert provider == "uz-migration-agency"
    await wait_until(lambda: _has(kg, referral_id, "referral.cross_border_received"), timeout=30)
    local_referral = requested[0].data["referral_id"]
    # Uzbekistan's provider opens what it was given with its own key, from uz's custody.
    agency_key = generate_private_key()
    registered = await uz.register_agency_key(
        "uz-coordinating-body", provider, agency_key.public_key()
    )
    assert registered["status"] == "accepted", registered
    agency = AgencyClient(uz.connection, provider, agency_key)
    opened = await agency.open_fields(uuid.UUID(local["case_id"]), DataPurpose.ASSISTANCE)
    assert opened == {
        PersonalField.FULL_NAME: NAME,
        PersonalField.DATE_OF_BIRTH: "1994-03-02",
        PersonalField.DOCUMENT_NUMBER: DOCUMENT,
    }
    accept = AcceptReferral(command_id=uuid.uuid4(), agency_id=provider, referral_id=local_referral)
    assert (await uz.send(accept))["status"] == "accepted"
    complete = CompleteReferral(
        command_id=uuid.uuid4(),
        agency_id=provider,
        referral_id=local_referral,
        delivered=(
            DeliveredItem(service=Service.REPATRIATION, quantity=1, unit=DeliveryUnit.ITEM),
        ),
    )
    assert (await uz.send(complete))["status"] == "accepted"
    await wait_until(lambda: _has(kg, referral_id, "referral.cross_border_completed"), timeout=30)
    assert await referral_events(kg, referral_id) == [
        "referral.cross_border_requested",
        "referral.cross_border_received",
        "referral.cross_border_accepted",
        "referral.cross_border_completed",
    ]

    # Story 2: a Kyrgyz woman identified by the police in Almaty, referred back to a shelter
    # in Bishkek: data crosses kz -> kg.
    shelter = RegisterShelter(
        command_id=uuid.uuid4(),
        agency_id="kg-ngo-bishkek-crisis-centre",
        capacity={ShelterCategory.WOMEN: 3},
    )
    assert (await kg.send(shelter))["status"] == "accepted"
    woman = interview(
        "kz-police-almaty",
        Region.KZ_ALMATY_CITY,
        "KG",
        frozenset({"KG"}),
        sex=Sex.FEMALE,
        needs=frozenset({Service.SHELTER}),
    )
    kz_case = await identify(kz, woman)
    reply = await kz.send(refer("kz-police-almaty", kz_case, "KG", "assistance", "shelter"))
    assert reply["status"] == "accepted", reply
    kz_referral = reply["aggregate_id"]
    await wait_until(lambda: _has(kz, kz_referral, "referral.cross_border_accepted"), timeout=30)
    admitted = await of_type(kg, "shelter.admitted")
    assert [a.data["shelter_id"] for a in admitted] == ["kg-ngo-bishkek-crisis-centre"]
    assert await referral_events(kz, kz_referral) == [
        "referral.cross_border_requested",
        "referral.cross_border_received",
        "referral.cross_border_accepted",
    ]

    # Each hub's own audit log holds its side of the transfer.
    for client, audited in (
        (kg, "referral.cross_border_requested"),
        (kg, "referral.cross_border_completed"),
        (uz, "case.received_from_abroad"),
    ):
        js = client.connection.jetstream()
        await wait_until(lambda js=js, audited=audited: _audited(js, audited), timeout=20)

    # Only the minimal dataset went, sealed to Uzbekistan's key: opened here with it.
    uz_key = read_private_key(world.hubs["uz"].settings.intake_private_key_file)
    packages = [m for m in world.taps["uz"].messages if m.subject == "nrm.xb.kg.uz.pkg"]
    assert packages
    package = ReferralPackage.model_validate_json(packages[0].data)
    info = package_info(str(package.package_id), "KG", "UZ")
    opened = json.loads(open_sealed_to(uz_key, info, package.personal_data))
    assert opened == {"date_of_birth": "1994-03-02", "document_number": DOCUMENT, "full_name": NAME}

    # Nothing in clear anywhere; of another country, only its packages and acknowledgements
    # for this one (a subscriber on `>` sees nothing else: no events, audit, keys).
    for country, tap in world.taps.items():
        assert not [c for c in CANARIES if c.encode() in tap.blob()], country
        foreign = {s for s in tap.subjects() if not _local(s, country)}
        assert foreign, country
        assert all(re.fullmatch(rf"nrm\.xb\.[a-z]{{2}}\.{country}\.(pkg|ack)", s) for s in foreign)
    assert {s for s in world.taps["uz"].subjects() if not _local(s, "uz")} == {
        "nrm.xb.kg.uz.pkg",
        "nrm.xb.kg.uz.ack",
    }
    assert case_id.encode() not in world.taps["uz"].blob()
    assert kz_case.encode() not in world.taps["kg"].blob()
    assert not [c for c in NOT_MINIMAL if c.encode() in world.taps["uz"].blob()]
    # Nor in any hub's JetStream files or server log, nor in the services' logs.
    for country in world.hubs.countries:
        for path in (world.hubs[country].settings.data_dir / "nats").rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                assert not [c for c in CANARIES if c.encode() in data], path
    logs = capsys.readouterr()
    assert not [c for c in CANARIES if c in logs.out + logs.err]


def _local(subject: str, country: str) -> bool:
    """Published in this hub itself: anything but another country's link subjects."""
    parts = subject.split(".")
    return parts[:2] != ["nrm", "xb"] or parts[2] in ("outbox", "inbox", country)


async def _audited(js: JetStreamContext, action: str) -> bool:
    """Some leaf of the hub's audit log records an event of this type."""
    return action in [leaf["action"] for leaf in await audit_leaves(js)]


async def _has(client: HubClient, referral_id: str, event_type: str) -> bool:
    return event_type in await referral_events(client, referral_id)


async def test_refused_transfers_are_recorded_and_nothing_leaves(world: World) -> None:
    kg = world.clients["kg"]
    past = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    no_country = await identify(kg, interview("kg-mia-osh", Region.OSH_CITY, "UZ", frozenset()))
    expired = await identify(
        kg, interview("kg-mia-osh", Region.OSH_CITY, "UZ", frozenset({"UZ"}), expires_at=past)
    )
    withdrawn = await identify(
        kg, interview("kg-mia-osh", Region.OSH_CITY, "UZ", frozenset({"UZ", "KZ"}))
    )
    withdraw = WithdrawConsent(command_id=uuid.uuid4(), agency_id="kg-mia-osh", case_id=withdrawn)
    assert (await kg.send(withdraw))["status"] == "accepted"
    tried = [
        (
            refer("kg-mia-osh", no_country, "UZ", "repatriation", "repatriation"),
            "country_not_covered",
        ),
        (refer("kg-mia-osh", expired, "UZ", "repatriation", "repatriation"), "consent_expired"),
        (refer("kg-mia-osh", withdrawn, "UZ", "repatriation", "repatriation"), "consent_withdrawn"),
        (refer("kg-mia-osh", withdrawn, "TJ", "repatriation", "repatriation"), "not_allow_listed"),
        (
            refer("kg-mia-osh", no_country, "UZ", "statistics", "repatriation"),
            "purpose_not_allowed",
        ),
        (refer("kg-health-osh", withdrawn, "UZ", "repatriation", "repatriation"), "not_authorised"),
    ]
    refused_ids = []
    for command, reason in tried:
        reply = await kg.send(command)
        assert (reply["status"], reply["reason"]) == ("refused", reason), reply
        refused_ids.append(reply["referral_id"])
        again = await kg.send(command)  # a retry is answered the same, recorded once
        assert (again["status"], again["event_ids"]) == ("refused", reply["event_ids"])
    unknown = refer("nobody-here", withdrawn, "UZ", "repatriation", "repatriation")
    assert (await kg.send(unknown))["status"] == "rejected"

    refusals = await of_type(kg, "referral.cross_border_refused")
    assert sorted(e.data["referral_id"] for e in refusals) == sorted(refused_ids)
    js = kg.connection.jetstream()

    async def audited() -> list[str]:
        leaves = await audit_leaves(js)
        return [
            leaf["action"] for leaf in leaves if leaf["action"] == "referral.cross_border_refused"
        ]

    await wait_until(lambda: _at_least(audited, len(tried)), timeout=20)
    assert (await js.stream_info(XB_OUTBOX_STREAM)).state.messages == 0
    await asyncio.sleep(1.0)  # what would have crossed has had time to arrive
    for country in ("kz", "uz"):
        assert not [s for s in world.taps[country].subjects() if s.startswith("nrm.xb.kg.")]
        assert not [c for c in CANARIES if c.encode() in world.taps[country].blob()]


async def _at_least(probe: object, count: int) -> bool:
    assert callable(probe)
    return len(await probe()) >= count


async def test_a_cut_link_delays_and_then_delivers_each_referral_once_in_order(
    world: World,
) -> None:
    kg, kz = world.clients["kg"], world.clients["kz"]
    cases = [
        await identify(
            kg,
            interview(
                "kg-consulate-almaty",
                Region.ABROAD,
                "KG",
                frozenset({"KZ"}),
                sex=Sex.FEMALE,
                needs=frozenset({Service.PSYCHOLOGICAL}),
            ),
        )
        for _ in range(5)
    ]
    world.hubs["kz"].server.stop()  # the link, and the whole Kazakh hub, are down
    sent = []
    for case_id in cases:
        reply = await kg.send(
            refer("kg-consulate-almaty", case_id, "KZ", "assistance", "psychological")
        )
        assert reply["status"] == "accepted", reply
        sent.append(reply["aggregate_id"])
    js = kg.connection.jetstream()

    async def queued() -> bool:
        return (await js.stream_info(XB_OUTBOX_STREAM)).state.messages == len(sent)

    await wait_until(queued, timeout=20)
    await asyncio.sleep(2.0)  # the relay is retrying against a dead link meanwhile
    assert not await of_type(kg, "referral.cross_border_received")

    await world.hubs["kz"].server.start()  # same port, same store: the link comes back

    async def all_received() -> list[Envelope] | None:
        found = await of_type(kz, "case.received_from_abroad")
        return found if len(found) >= len(sent) else None

    received = await wait_until(all_received, timeout=60)
    assert [e.data["origin_referral_id"] for e in received] == sent
    answered = await wait_until(
        lambda: _count(kg, "referral.cross_border_received", len(sent)), timeout=60
    )
    assert sorted(e.data["referral_id"] for e in answered) == sorted(sent)
    await asyncio.sleep(2.0)  # no late duplicate arrives
    assert len(await of_type(kz, "case.received_from_abroad")) == len(sent)
    assert len(await of_type(kz, "referral.requested")) == len(sent)


async def _count(client: HubClient, event_type: str, count: int) -> list[Envelope] | None:
    found = await of_type(client, event_type)
    return found if len(found) >= count else None


async def test_the_cross_border_demo_succeeds_and_prints_no_personal_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from nrm_tools.crossborder_demo import run_crossborder_demo

    assert await run_crossborder_demo(tmp_path) == 0
    out = capsys.readouterr().out
    assert "cross-border demo ok" in out
    assert "uz custody now refuses releases: consent_withdrawn" in out
    assert not [s for s in ("Demo Person", "DEMO-0001", "+000 000 0000", "fictional") if s in out]


async def test_forged_misrouted_or_unopenable_packages_are_not_applied(world: World) -> None:
    kg = world.clients["kg"]
    nc, js = kg.connection, kg.connection.jetstream()
    acks = Tap()
    await nc.subscribe("nrm.xb.kg.*.ack", cb=acks.on_message)
    good = {
        "v": 1,
        "kind": "answer",
        "package_id": str(uuid.uuid4()),
        "origin": "KZ",
        "destination": "KG",
        "referral_id": str(uuid.uuid4()),
        "sent_at": "2026-11-23T10:00:00Z",
        "status": "received",
    }
    # Not a peer of kg: ignored, not stored, not acknowledged.
    await nc.publish("nrm.xb.tj.kg.pkg", json.dumps({**good, "origin": "TJ"}).encode())
    # Says it is from Uzbekistan on Kazakhstan's subject: misrouted.
    await nc.publish("nrm.xb.kz.kg.pkg", json.dumps({**good, "origin": "UZ"}).encode())
    # Not a package at all.
    await nc.publish("nrm.xb.kz.kg.pkg", b'{"kind": "referral"}')
    # Well formed, but sealed to another key: stored, then not applied.
    stranger = generate_private_key().public_key()
    package_id = str(uuid.uuid4())
    common = {k: v for k, v in good.items() if k not in ("kind", "status")}
    forged = ReferralPackage.model_validate(
        {
            **common,
            "package_id": package_id,
            "purpose": "assistance",
            "service": "shelter",
            "authority_id": "kg-coordinating-body",
            "profile": {
                "sex": "female",
                "age_band": "25-34",
                "is_child": False,
                "citizenship": "KG",
                "forms_of_exploitation": [],
                "vulnerabilities": [],
            },
            "fields": ["full_name"],
            "personal_data": seal_to(
                stranger, package_info(package_id, "KZ", "KG"), b'{"full_name": "x"}'
            ).model_dump(),
            "consent_purposes": ["assistance"],
            "consent_expires_at": None,
        }
    )
    await nc.publish(
        "nrm.xb.kz.kg.pkg", forged.model_dump_json().encode(), headers={"Nats-Msg-Id": package_id}
    )
    await wait_until(lambda: _stored(js, 1), timeout=20)
    await wait_until(lambda: _ack_count(acks, 3), timeout=20)
    await asyncio.sleep(1.0)  # ingress has had time to (not) apply it
    # The non-peer's package is not even acknowledged; the other three are.
    assert acks.subjects() == ["nrm.xb.kg.kz.ack"] * 3
    assert (await js.stream_info("NRM_XB_IN")).state.messages == 1
    assert not await of_type(kg, "case.received_from_abroad")
    info = await js.consumer_info("NRM_XB_IN", "xb-ingress")
    assert info.num_pending == 0 and info.num_ack_pending == 0


async def _stored(js: JetStreamContext, count: int) -> bool:
    return (await js.stream_info("NRM_XB_IN")).state.messages >= count


async def _ack_count(acks: Tap, count: int) -> bool:
    return len(acks.messages) >= count


async def test_a_cut_link_between_running_hubs_delivers_both_ways_once_in_order(
    tmp_path: Path,
) -> None:
    proxy_port = free_port()
    async with linked_world(tmp_path, {"kz": proxy_port}) as world:
        proxy = LinkProxy(proxy_port, world.hubs.leaf_port)
        await proxy.restore()
        kg, kz = world.clients["kg"], world.clients["kz"]
        # The link works: one referral each way goes through first.
        first = await _consulate_case(kg)
        reply = await kg.send(
            refer("kg-consulate-almaty", first, "KZ", "assistance", "psychological")
        )
        await wait_until(lambda: _count(kz, "case.received_from_abroad", 1), timeout=30)

        await proxy.cut()  # both hubs and all their services keep running
        to_kz = []
        for _ in range(4):
            case_id = await _consulate_case(kg)
            reply = await kg.send(
                refer("kg-consulate-almaty", case_id, "KZ", "assistance", "psychological")
            )
            to_kz.append(reply["aggregate_id"])
        to_kg = []
        for _ in range(3):
            woman = interview(
                "kz-police-almaty", Region.KZ_ALMATY_CITY, "KG", frozenset({"KG"}), sex=Sex.FEMALE
            )
            case_id = await identify(kz, woman)
            reply = await kz.send(refer("kz-police-almaty", case_id, "KG", "assistance", "shelter"))
            to_kg.append(reply["aggregate_id"])
        await asyncio.sleep(3.0)  # relays retrying against a cut link
        assert len(await of_type(kz, "case.received_from_abroad")) == 1
        assert not await of_type(kg, "case.received_from_abroad")

        await proxy.restore()
        received_kz = await wait_until(
            lambda: _count(kz, "case.received_from_abroad", 5), timeout=60
        )
        received_kg = await wait_until(
            lambda: _count(kg, "case.received_from_abroad", 3), timeout=60
        )
        assert [e.data["origin_referral_id"] for e in received_kz][1:] == to_kz
        assert [e.data["origin_referral_id"] for e in received_kg] == to_kg
        await wait_until(lambda: _count(kg, "referral.cross_border_received", 5), timeout=60)
        await wait_until(lambda: _count(kz, "referral.cross_border_received", 3), timeout=60)
        await asyncio.sleep(2.0)  # nothing arrives twice
        assert len(await of_type(kz, "case.received_from_abroad")) == 5
        assert len(await of_type(kg, "case.received_from_abroad")) == 3
        assert len(await of_type(kg, "referral.cross_border_received")) == 5
        await proxy.cut()


async def _consulate_case(kg: HubClient) -> str:
    return await identify(
        kg,
        interview(
            "kg-consulate-almaty",
            Region.ABROAD,
            "KG",
            frozenset({"KZ"}),
            sex=Sex.FEMALE,
            needs=frozenset({Service.PSYCHOLOGICAL}),
        ),
    )


async def test_up_runs_the_hub_of_the_country_it_is_given(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        # Open mode: the test sends, in one connection, as a Kyrgyz agency Kazakhstan's
        # hub has never heard of (a secured hub would have no user for it at all).
        [*NRM, "up", "--insecure", "--country", "kz", "--data", str(tmp_path / "var")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=_env(tmp_path),
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.to_thread(proc.stdout.readline)
        url = line.strip().removeprefix("NRM hub ready ")
        nc = await nats.connect(url)
        client = HubClient(nc)

        def register(agency_id: str) -> RegisterShelter:
            return RegisterShelter(
                command_id=uuid.uuid4(),
                agency_id=agency_id,
                capacity={ShelterCategory.WOMEN: 2},
            )

        assert (await client.send(register("kz-ngo-almaty-shelter")))["status"] == "accepted"
        kyrgyz = await client.send(register("kg-ngo-osh-crisis-centre"))
        assert kyrgyz["errors"][0]["code"] == "unknown_agency"  # not in Kazakhstan's registry
        envelope = await of_type(client, "shelter.registered")
        assert envelope[0].source == "urn:nrm-hub:kz:shelter"
        await nc.drain()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


async def test_the_outbox_keeps_up_with_domestic_referral_answers(
    hub: Settings, client: HubClient, nc: Client
) -> None:
    """Every local referral.accepted passes through xb-outbox (it must look whether the case
    came from abroad). Thirty of them leave it with nothing pending well within the wait;
    at the old one event per fetch timeout (1 s) they would take half a minute."""
    js = nc.jetstream()
    count = 30
    cases = [client.send(screening(needs=frozenset({Service.LEGAL_AID}))) for _ in range(count)]
    await asyncio.gather(*cases)

    async def requested() -> list[Envelope]:
        found = [e for e in await events(js) if e.type == "referral.requested"]
        return found if len(found) == count else []

    accepts = [
        AcceptReferral(
            command_id=uuid.uuid4(),
            agency_id=r.data["provider_id"],
            referral_id=uuid.UUID(r.data["referral_id"]),
        )
        for r in await wait_until(requested)
    ]
    replies = await asyncio.gather(*(client.send(a) for a in accepts))
    assert all(r["status"] == "accepted" for r in replies), replies

    async def drained() -> bool:
        info = await js.consumer_info(EVENTS_STREAM, "xb-outbox")
        return info.num_pending + info.num_ack_pending == 0

    await wait_until(drained, timeout=10.0)
    assert (await js.stream_info(XB_OUTBOX_STREAM)).state.messages == 0  # nothing to send


async def test_a_withdrawal_crosses_a_cut_link_once_and_the_received_case_lives_there(
    tmp_path: Path,
) -> None:
    """Kyrgyzstan's coordinating body sends a Kazakh national home; Kazakhstan's receiving
    authority refers her on to a local shelter; her withdrawal in Kyrgyzstan, made while the
    link is cut, reaches Kazakhstan once when it returns, and Kazakhstan's custody refuses
    releases from then on; Kazakhstan closes the case (Kyrgyzstan hears `closed`, nothing
    more); Kyrgyzstan's erasure erases Kazakhstan's copy. Each hub audits its side."""
    proxy_port = free_port()
    async with linked_world(tmp_path, {"kz": proxy_port}) as world:
        proxy = LinkProxy(proxy_port, world.hubs.leaf_port)
        await proxy.restore()
        kg, kz = world.clients["kg"], world.clients["kz"]
        woman = interview(
            "kg-mia-bishkek",
            Region.BISHKEK_CITY,
            "KZ",
            frozenset({"KZ"}),
            sex=Sex.FEMALE,
            needs=frozenset({Service.SHELTER}),
        )
        case_id = await identify(kg, woman)
        reply = await kg.send(
            refer("kg-coordinating-body", case_id, "KZ", "repatriation", "repatriation")
        )
        assert reply["status"] == "accepted", reply
        referral_id = reply["aggregate_id"]
        received = (await wait_until(lambda: _count(kz, "case.received_from_abroad", 1), 30))[0]
        local_case = received.data["case_id"]
        assert received.data["agency_id"] == "kz-coordinating-body"  # the owner there
        requested = await wait_until(lambda: _count(kz, "referral.requested", 1), timeout=30)
        provider = requested[0].data["provider_id"]
        accept = AcceptReferral(
            command_id=uuid.uuid4(),
            agency_id=provider,
            referral_id=requested[0].data["referral_id"],
        )
        assert (await kz.send(accept))["status"] == "accepted"
        # The receiving authority refers her on to a local shelter, like a local case.
        shelter = RegisterShelter(
            command_id=uuid.uuid4(),
            agency_id="kz-ngo-almaty-shelter",
            capacity={ShelterCategory.WOMEN: 2},
        )
        assert (await kz.send(shelter))["status"] == "accepted"
        add = AddNeed(
            command_id=uuid.uuid4(),
            agency_id="kz-coordinating-body",
            case_id=local_case,
            service=Service.SHELTER,
            provider_id="kz-ngo-almaty-shelter",
        )
        added = await kz.send(add)
        assert added["status"] == "accepted", added
        await wait_until(lambda: _count(kz, "shelter.admitted", 1), timeout=30)
        # Transferred to the police in Almaty, who follow her up, like a local case.
        owner = "kz-police-almaty"
        for command in (
            RequestCaseTransfer(
                command_id=uuid.uuid4(),
                agency_id="kz-coordinating-body",
                case_id=local_case,
                to_agency=owner,
                reason=TransferReason.PERSON_RELOCATED,
            ),
            AcceptCaseTransfer(command_id=uuid.uuid4(), agency_id=owner, case_id=local_case),
            ScheduleFollowUp(
                command_id=uuid.uuid4(),
                agency_id=owner,
                case_id=local_case,
                due_on=dt.date(2026, 12, 20),
                purpose=FollowUpPurpose.REINTEGRATION_CHECK,
            ),
        ):
            answered = await kz.send(command)
            assert answered["status"] == "accepted", answered
        scheduled = await wait_until(lambda: _count(kz, "case.followup_scheduled", 1), 30)
        record = RecordFollowUp(
            command_id=uuid.uuid4(),
            agency_id=owner,
            case_id=local_case,
            followup_id=scheduled[0].data["followup_id"],
            outcome=FollowUpOutcome.IN_CONTACT_STABLE,
        )
        assert (await kz.send(record))["status"] == "accepted"
        agency_key = generate_private_key()
        registered = await kz.register_agency_key(
            "kz-coordinating-body", provider, agency_key.public_key()
        )
        assert registered["status"] == "accepted", registered
        agency = AgencyClient(kz.connection, provider, agency_key)
        opened = await agency.open_fields(uuid.UUID(local_case), DataPurpose.ASSISTANCE)
        assert opened[PersonalField.FULL_NAME] == NAME

        # The link is cut; she withdraws her consent in Kyrgyzstan.
        await proxy.cut()
        withdraw = WithdrawConsent(
            command_id=uuid.uuid4(), agency_id="kg-mia-bishkek", case_id=case_id
        )
        assert (await kg.send(withdraw))["status"] == "accepted"
        await wait_until(lambda: _has(kg, referral_id, "referral.cross_border_notice_sent"), 30)
        await asyncio.sleep(3.0)  # the relay retries against the cut link
        assert not await of_type(kz, "case.cross_border_notice_applied")
        assert await agency.open_fields(uuid.UUID(local_case), DataPurpose.ASSISTANCE)

        await proxy.restore()
        await wait_until(lambda: _has(kg, referral_id, "referral.cross_border_notice_applied"), 60)
        withdrawn = await of_type(kz, "consent.withdrawn")
        assert [e.data["case_id"] for e in withdrawn] == [local_case]
        with pytest.raises(AccessRefusedError, match="consent_withdrawn"):
            await agency.open_fields(uuid.UUID(local_case), DataPurpose.ASSISTANCE)

        # Kazakhstan closes the case it received: Kyrgyzstan hears `closed`, no details.
        active = [
            e.data["referral_id"]
            for e in await of_type(kz, "referral.requested")
            if e.data["case_id"] == local_case
        ]
        close = CloseCase(
            command_id=uuid.uuid4(),
            agency_id=owner,
            case_id=local_case,
            reason=ClosureReason.REPATRIATED,
            revoke_referrals=tuple(active),
        )
        closed = await kz.send(close)
        assert closed["status"] == "accepted", closed
        await wait_until(lambda: _has(kg, referral_id, "referral.cross_border_closed"), 30)

        # Erased in Kyrgyzstan: Kazakhstan erases its copy (its custody shreds the key).
        erase = EraseCase(
            command_id=uuid.uuid4(),
            agency_id="kg-mia-bishkek",
            case_id=case_id,
            reason=ErasureReason.ERASURE_REQUEST,
        )
        assert (await kg.send(erase))["status"] == "accepted"
        erased = await wait_until(lambda: _count(kz, "case.erased", 1), timeout=30)
        assert erased[0].data["reason"] == "erased_at_origin"
        await wait_until(lambda: _count(kz, "case.cross_border_notice_applied", 2), 30)

        await asyncio.sleep(2.0)  # nothing arrives, nor is applied, twice
        assert len(await of_type(kz, "consent.withdrawn")) == 1
        assert len(await of_type(kz, "case.erased")) == 1
        assert len(await of_type(kz, "case.cross_border_notice_applied")) == 2
        assert await referral_events(kg, referral_id) == [
            "referral.cross_border_requested",
            "referral.cross_border_received",
            "referral.cross_border_accepted",
            "referral.cross_border_notice_sent",
            "referral.cross_border_notice_applied",
            "referral.cross_border_closed",
            "referral.cross_border_notice_sent",
            "referral.cross_border_notice_applied",
        ]
        for client, audited in (
            (kg, "referral.cross_border_notice_sent"),
            (kg, "referral.cross_border_notice_applied"),
            (kg, "referral.cross_border_closed"),
            (kz, "case.cross_border_notice_applied"),
            (kz, "case.erased"),
        ):
            js = client.connection.jetstream()
            await wait_until(lambda js=js, audited=audited: _audited(js, audited), timeout=20)
        # Only link subjects crossed; the origin's case id never did.
        assert case_id.encode() not in world.taps["kz"].blob()
        assert not [c for c in CANARIES if c.encode() in world.taps["kz"].blob()]
        await proxy.cut()


async def test_a_narrower_consent_crosses_and_the_destination_releases_only_what_remains(
    world: World,
) -> None:
    """The man's new consent in Kyrgyzstan drops `assistance`: Uzbekistan's consent for the
    case it received narrows to `repatriation`, so its custody refuses a release for
    assistance; a same-or-wider consent afterwards sends nothing."""
    kg, uz = world.clients["kg"], world.clients["uz"]
    case_id = await identify(kg, interview("kg-mia-osh", Region.OSH_CITY, "UZ", frozenset({"UZ"})))
    reply = await kg.send(refer("kg-mia-osh", case_id, "UZ", "repatriation", "repatriation"))
    referral_id = reply["aggregate_id"]
    received = (await wait_until(lambda: _count(uz, "case.received_from_abroad", 1), 30))[0]
    local_case = received.data["case_id"]
    requested = await wait_until(lambda: _count(uz, "referral.requested", 1), timeout=30)
    provider = requested[0].data["provider_id"]
    agency_key = generate_private_key()
    registered = await uz.register_agency_key(
        "uz-coordinating-body", provider, agency_key.public_key()
    )
    assert registered["status"] == "accepted", registered
    agency = AgencyClient(uz.connection, provider, agency_key)
    assert await agency.open_fields(uuid.UUID(local_case), DataPurpose.ASSISTANCE)

    def record(purposes: set[DataPurpose]) -> RecordConsent:
        return RecordConsent.model_validate(
            {
                "command_id": uuid.uuid4(),
                "agency_id": "kg-mia-osh",
                "case_id": case_id,
                "given_on": "2026-11-25",
                "consent": {"purposes": purposes, "recipient_countries": {"UZ"}},
            }
        )

    narrower = await kg.send(record({DataPurpose.REPATRIATION}))
    assert narrower["status"] == "accepted", narrower
    await wait_until(lambda: _has(kg, referral_id, "referral.cross_border_notice_applied"), 30)
    consents = [
        e.data["purposes"]
        for e in await of_type(uz, "consent.recorded")
        if e.data["case_id"] == local_case
    ]
    assert consents == [["assistance", "repatriation"], ["repatriation"]]
    with pytest.raises(AccessRefusedError, match="purpose_not_covered"):
        await agency.open_fields(uuid.UUID(local_case), DataPurpose.ASSISTANCE)
    wider = await kg.send(record({DataPurpose.REPATRIATION, DataPurpose.ASSISTANCE}))
    assert wider["status"] == "accepted", wider
    await asyncio.sleep(2.0)  # a widening never crosses
    notices = [e for e in await referral_events(kg, referral_id) if e.endswith("notice_sent")]
    assert len(notices) == 1


async def test_after_a_restart_answers_and_notices_still_cross(world: World) -> None:
    """The outbox learns which cases crossed a border from the events it takes; a restarted
    referral service has taken none of them yet. Uzbekistan's acceptance of a case it received
    before its restart still goes back as an answer, and Kyrgyzstan's withdrawal after its
    restart still goes out as a notice on the referral it sent before."""
    kg, uz = world.clients["kg"], world.clients["uz"]
    case_id = await identify(kg, interview("kg-mia-osh", Region.OSH_CITY, "UZ", frozenset({"UZ"})))
    reply = await kg.send(refer("kg-mia-osh", case_id, "UZ", "repatriation", "repatriation"))
    assert reply["status"] == "accepted", reply
    referral_id = reply["aggregate_id"]
    await wait_until(lambda: _has(kg, referral_id, "referral.cross_border_received"), timeout=30)
    requested = await wait_until(lambda: _count(uz, "referral.requested", 1), timeout=30)

    await world.restart("uz", "referral")
    await world.restart("kg", "referral")
    accept = AcceptReferral(
        command_id=uuid.uuid4(),
        agency_id=requested[0].data["provider_id"],
        referral_id=requested[0].data["referral_id"],
    )
    assert (await uz.send(accept))["status"] == "accepted"
    await wait_until(lambda: _has(kg, referral_id, "referral.cross_border_accepted"), timeout=30)
    withdraw = WithdrawConsent(command_id=uuid.uuid4(), agency_id="kg-mia-osh", case_id=case_id)
    assert (await kg.send(withdraw))["status"] == "accepted"
    await wait_until(lambda: _has(kg, referral_id, "referral.cross_border_notice_applied"), 30)
    assert await referral_events(kg, referral_id) == [
        "referral.cross_border_requested",
        "referral.cross_border_received",
        "referral.cross_border_accepted",
        "referral.cross_border_notice_sent",
        "referral.cross_border_notice_applied",
    ]
