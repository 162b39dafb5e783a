"""Cross-border referral on the secured deployment: three country hubs (kg, kz, uz), each a
nats-server running deploy/nats/hub.conf with TLS, its own CA, and the accounts, per-user
permissions and leaf configuration `services/runtime/permissions.py` generates from that
country's registry; Kazakhstan and Uzbekistan dial Kyrgyzstan's leaf port with the
certificate Kyrgyzstan issued them (each lands in its own pair account there). Every service
and every agency connects as its own user.

Kyrgyzstan's coordinating body sends a Kazakh national home with her consent; Kazakhstan's
receiving authority accepts, refers her to a local shelter and closes the case; her
withdrawal in Kyrgyzstan, made while the link is cut, reaches Kazakhstan when it returns,
once, and Kazakhstan's custody refuses every release after it; each hub's audit log
verifies and holds its side; no permission is violated anywhere."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client

from contracts.commands import (
    AcceptReferral,
    AddNeed,
    CloseCase,
    Consent,
    CriteriaAnswers,
    PersonalData,
    RegisterShelter,
    RequestCrossBorderReferral,
    ScreeningInterview,
    WithdrawConsent,
)
from contracts.envelope import Envelope
from contracts.public_key_sealing import generate_private_key, public_key_b64, read_private_key
from contracts.vocabulary import (
    Act,
    ClosureReason,
    DataPurpose,
    FormOfExploitation,
    Means,
    PersonalField,
    Purpose,
    Region,
    Service,
    Sex,
    ShelterCategory,
)
from services.agencies.registry import load_registry
from services.audit.bundle import LEAVES_FILE, verify_bundle
from services.audit.cli import export
from services.bootstrap import RunningService, bootstrap, start_service
from services.client import AccessRefusedError, AgencyClient, HubClient
from services.runtime.case_keys import create_hub_keys
from services.runtime.connection import connect_options
from services.runtime.embedded import free_port
from services.runtime.permissions import hub_auth, rendered
from services.runtime.service_table import SERVICES
from services.runtime.settings import Settings, nats_servers
from tests.integration.hub_reads import events, wait_until
from tests.integration.link_proxy import LinkProxy
from tests.integration.secured_hub import NATS_CONFIGS, ROOT, SecuredCluster

pytestmark = pytest.mark.integration
COUNTRIES = ("kg", "kz", "uz")
CENTRE = "kg"  # accepts leaf connections; the others dial it (crossborder_nats.DEPLOYMENT)
NAME = "Aigerim Canarybekova"


@dataclass
class SecuredCountry:
    country: str
    cluster: SecuredCluster
    data_dir: Path  # one per hub: its services share its keys
    registry: Path  # with the partners' public keys, as exchanged out of band
    services: list[RunningService] = field(default_factory=list)

    def settings(self, role: str, **overrides: object) -> Settings:
        return self.cluster.settings(
            role,
            self.data_dir,
            country=self.country,
            agency_registry=self.registry,
            **overrides,
        )


def _config_dir(base: Path, country: str) -> Path:
    """hub.conf with this country's generated accounts, leaf users and leaf remotes."""
    directory = base / "nats-config"
    directory.mkdir(parents=True)
    shutil.copy(NATS_CONFIGS / "hub.conf", directory / "hub.conf")
    for name, text in rendered(hub_auth(load_registry(country=country))).items():
        (directory / name).write_text(text)
    return directory


def _prepare(base: Path, kz_dial_port: int) -> dict[str, SecuredCountry]:
    data = {c: base / c / "data" for c in COUNTRIES}
    keys = {}
    for country, data_dir in data.items():
        settings = Settings(country=country, data_dir=data_dir)
        create_hub_keys(settings)
        private = read_private_key(settings.intake_private_key_file)
        keys[country] = public_key_b64(private.public_key())
    hubs: dict[str, SecuredCountry] = {}
    for country in (CENTRE, *(c for c in COUNTRIES if c != CENTRE)):
        registry = load_registry(country=country).model_dump(mode="json")
        registry["peers"] = [
            {**peer, "public_key": keys[peer["country"]]} for peer in registry["peers"]
        ]
        registry_file = base / country / "registry.json"
        registry_file.write_text(json.dumps(registry, indent=2))
        extra_env = {}
        if country != CENTRE:
            centre = hubs[CENTRE].cluster
            port = kz_dial_port if country == "kz" else centre.nodes[0].leaf_port
            extra_env = {
                "XB_KG_LEAF_URLS": f"[tls://127.0.0.1:{port}]",
                "XB_KG_CA_FILE": str(centre.certs / "ca.pem"),
                # The certificate Kyrgyzstan issued this country for the link.
                "XB_KG_LEAF_CERT_FILE": str(centre.certs / "users" / f"leaf-{country}.pem"),
                "XB_KG_LEAF_KEY_FILE": str(centre.certs / "users" / f"leaf-{country}-key.pem"),
            }
        cluster = SecuredCluster(
            base / country,
            size=3,
            country=country,
            registry=ROOT / "services" / "agencies" / f"{country}.json",
            config_dir=_config_dir(base / country, country),
            extra_env=extra_env,
        )
        hubs[country] = SecuredCountry(country, cluster, data[country], registry_file)
    return hubs


@contextlib.asynccontextmanager
async def secured_world(base: Path, kz_dial_port: int) -> AsyncIterator[dict[str, SecuredCountry]]:
    hubs = _prepare(base, kz_dial_port)
    try:
        for hub in hubs.values():
            hub.cluster.start()
        for hub in hubs.values():
            await bootstrap(hub.cluster.url, hub.settings("admin"))
        for hub in hubs.values():
            for name in SERVICES:
                settings = hub.settings(name, max_deliver=3, retry_backoff_seconds=(0.05, 0.1))
                hub.services.append(await start_service(name, hub.cluster.url, settings))
        yield hubs
    finally:
        for hub in hubs.values():
            for service in hub.services:
                with contextlib.suppress(Exception):
                    await service.stop()
        for hub in hubs.values():
            hub.cluster.stop()


@contextlib.asynccontextmanager
async def as_role(hub: SecuredCountry, role: str) -> AsyncIterator[Client]:
    options = connect_options(hub.settings(role), role)
    nc = await nats.connect(nats_servers(hub.cluster.url), allow_reconnect=False, **options)
    try:
        yield nc
    finally:
        await nc.close()


async def send(hub: SecuredCountry, role: str, command: object) -> dict[str, object]:
    async with as_role(hub, role) as nc:
        reply: dict[str, object] = await HubClient(nc, timeout=10.0).send(command)  # type: ignore[arg-type]
        return reply


async def of_type(hub: SecuredCountry, event_type: str) -> list[Envelope]:
    async with as_role(hub, "admin") as nc:
        return [e for e in await events(nc.jetstream()) if e.type == event_type]


async def count(hub: SecuredCountry, event_type: str, n: int) -> list[Envelope] | None:
    found = await of_type(hub, event_type)
    return found if len(found) >= n else None


def kazakh_woman() -> ScreeningInterview:
    return ScreeningInterview(
        command_id=uuid.uuid4(),
        agency_id="kg-mia-bishkek",
        interviewed_on=dt.date(2026, 11, 20),
        region=Region.BISHKEK_CITY,
        sex=Sex.FEMALE,
        citizenship="KZ",
        country_of_exploitation="KG",
        criteria=CriteriaAnswers(
            acts=frozenset({Act.RECRUITMENT}),
            means=frozenset({Means.DECEPTION}),
            purposes=frozenset({Purpose.FORCED_LABOUR}),
        ),
        forms_of_exploitation=frozenset({FormOfExploitation.FORCED_LABOUR}),
        needs=frozenset({Service.SHELTER}),
        consent=Consent(
            purposes=frozenset({DataPurpose.ASSISTANCE, DataPurpose.REPATRIATION}),
            recipient_countries=frozenset({"KZ"}),
        ),
        personal_data=PersonalData(
            full_name=NAME, date_of_birth=dt.date(1996, 4, 9), document_number="CANARY-KZ-1"
        ),
    )


async def audit_verifies(hub: SecuredCountry, out: Path, *actions: str) -> None:
    """Export the hub's audit log as its operators would and verify it offline; it holds
    an entry for each of `actions`."""

    async def exported() -> bool:
        shutil.rmtree(out, ignore_errors=True)
        async with as_role(hub, "admin") as nc:
            await export(nc, out, hub.settings("admin"))
        report = verify_bundle(out)
        assert report.failure is None, report.failure
        leaves = (out / LEAVES_FILE).read_text()
        return all(f'"{action}"' in leaves for action in actions)

    await wait_until(exported, timeout=30)


@pytest.fixture
def proxy_port() -> Iterator[int]:
    yield free_port()


async def test_consent_withdrawal_crosses_secured_hubs_once_through_a_cut_link(
    tmp_path: Path, proxy_port: int
) -> None:
    async with secured_world(tmp_path, proxy_port) as hubs:
        kg, kz, uz = (hubs[c] for c in COUNTRIES)
        proxy = LinkProxy(proxy_port, kg.cluster.nodes[0].leaf_port)
        await proxy.restore()
        identified = await send(kg, "kg-mia-bishkek", kazakh_woman())
        assert identified["status"] == "accepted", identified
        case_id = str(identified["aggregate_id"])
        # The coordinating body sends her home: its user may publish the command (generated).
        refer = RequestCrossBorderReferral(
            command_id=uuid.uuid4(),
            agency_id="kg-coordinating-body",
            case_id=uuid.UUID(case_id),
            destination="KZ",
            purpose=DataPurpose.REPATRIATION,
            service=Service.REPATRIATION,
        )
        reply = await send(kg, "kg-coordinating-body", refer)
        assert reply["status"] == "accepted", reply
        referral_id = str(reply["aggregate_id"])

        received = (await wait_until(lambda: count(kz, "case.received_from_abroad", 1), 60))[0]
        local_case = str(received.data["case_id"])
        assert received.data["agency_id"] == "kz-coordinating-body"
        requested = await wait_until(lambda: count(kz, "referral.requested", 1), timeout=30)
        provider = str(requested[0].data["provider_id"])
        accept = AcceptReferral(
            command_id=uuid.uuid4(),
            agency_id=provider,
            referral_id=requested[0].data["referral_id"],
        )
        assert (await send(kz, provider, accept))["status"] == "accepted"
        shelter = RegisterShelter(
            command_id=uuid.uuid4(),
            agency_id="kz-ngo-almaty-shelter",
            capacity={ShelterCategory.WOMEN: 2},
        )
        assert (await send(kz, "kz-ngo-almaty-shelter", shelter))["status"] == "accepted"
        add = AddNeed(
            command_id=uuid.uuid4(),
            agency_id="kz-coordinating-body",
            case_id=uuid.UUID(local_case),
            service=Service.SHELTER,
            provider_id="kz-ngo-almaty-shelter",
        )
        added = await send(kz, "kz-coordinating-body", add)
        assert added["status"] == "accepted", added
        await wait_until(lambda: count(kz, "shelter.admitted", 1), timeout=30)

        agency_key = generate_private_key()
        async with as_role(kz, "kz-coordinating-body") as nc:
            registered = await HubClient(nc).register_agency_key(
                "kz-coordinating-body", provider, agency_key.public_key()
            )
            assert registered["status"] == "accepted", registered

        async def release() -> str:
            async with as_role(kz, provider) as nc:
                agency = AgencyClient(nc, provider, agency_key)
                try:
                    opened = await agency.open_fields(uuid.UUID(local_case), DataPurpose.ASSISTANCE)
                except AccessRefusedError as refused:
                    return str(refused)
                assert opened[PersonalField.FULL_NAME] == NAME
                return "released"

        assert await release() == "released"

        # The link is cut; she withdraws her consent in Kyrgyzstan.
        await proxy.cut()
        withdraw = WithdrawConsent(
            command_id=uuid.uuid4(), agency_id="kg-mia-bishkek", case_id=uuid.UUID(case_id)
        )
        assert (await send(kg, "kg-mia-bishkek", withdraw))["status"] == "accepted"
        await wait_until(lambda: count(kg, "referral.cross_border_notice_sent", 1), 30)
        await asyncio.sleep(3.0)  # the relay retries against the cut link
        assert not await of_type(kz, "consent.withdrawn")
        assert await release() == "released"

        await proxy.restore()
        await wait_until(lambda: count(kg, "referral.cross_border_notice_applied", 1), 90)
        assert [e.data["case_id"] for e in await of_type(kz, "consent.withdrawn")] == [local_case]
        assert await release() == "consent_withdrawn"

        # Kazakhstan closes the case: Kyrgyzstan hears `closed`, nothing more.
        active = [
            e.data["referral_id"]
            for e in await of_type(kz, "referral.requested")
            if e.data["case_id"] == local_case
        ]
        close = CloseCase(
            command_id=uuid.uuid4(),
            agency_id="kz-coordinating-body",
            case_id=uuid.UUID(local_case),
            reason=ClosureReason.REPATRIATED,
            revoke_referrals=tuple(active),
        )
        closed = await send(kz, "kz-coordinating-body", close)
        assert closed["status"] == "accepted", closed
        await wait_until(lambda: count(kg, "referral.cross_border_closed", 1), 30)

        await asyncio.sleep(2.0)  # nothing arrives, nor is applied, twice
        assert len(await of_type(kz, "case.received_from_abroad")) == 1
        assert len(await of_type(kz, "case.cross_border_notice_applied")) == 1
        assert [
            e.type for e in await of_type_all(kg) if e.data.get("referral_id") == referral_id
        ] == [
            "referral.cross_border_requested",
            "referral.cross_border_received",
            "referral.cross_border_accepted",
            "referral.cross_border_notice_sent",
            "referral.cross_border_notice_applied",
            "referral.cross_border_closed",
        ]
        # Uzbekistan, linked to Kyrgyzstan too, received nothing of this.
        assert not await of_type(uz, "case.received_from_abroad")
        # Each hub's event stream holds only its own events: none crossed, only packages did.
        for hub in hubs.values():
            sources = {e.source.split(":")[2] for e in await of_type_all(hub)}
            assert sources <= {hub.country}, (hub.country, sources)

        await audit_verifies(
            kg,
            tmp_path / "audit-kg",
            "referral.cross_border_requested",
            "referral.cross_border_notice_sent",
            "referral.cross_border_notice_applied",
        )
        await audit_verifies(
            kz,
            tmp_path / "audit-kz",
            "case.received_from_abroad",
            "case.cross_border_notice_applied",
        )
        await audit_verifies(uz, tmp_path / "audit-uz")
        await proxy.cut()
    for hub in hubs.values():
        assert hub.cluster.violations() == "", hub.country


async def of_type_all(hub: SecuredCountry) -> list[Envelope]:
    async with as_role(hub, "admin") as nc:
        return list(await events(nc.jetstream()))
