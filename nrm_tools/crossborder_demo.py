"""`nrm demo --cross-border`: three country hubs (kg, kz, uz) on loopback, each its own
nats-server, keys and registry, linked by leaf connections with one account per country pair.

1. The police in Osh identify an Uzbek man in forced labour; with his consent (repatriation,
   Uzbekistan) he is referred home. Uzbekistan's hub receives the minimal dataset sealed to
   its key, opens a local case, refers him to its migration agency, which accepts and
   completes; the answers flow back to the Kyrgyz referral.
2. The police in Almaty (Kazakhstan's hub) identify a Kyrgyz woman; with her consent
   (assistance, Kyrgyzstan) she is referred back to a shelter in Bishkek: data crosses
   kz -> kg, the Bishkek crisis centre admits her, and Kazakhstan hears "accepted".
3. A transfer without consent for the country is refused, recorded, and nothing leaves.
4. The Uzbek man withdraws his consent in Kyrgyzstan: the withdrawal crosses the border as a
   notice, Uzbekistan records it on the case it received and acknowledges it, and from then
   on Uzbekistan's custody refuses to release his data to its provider.

Prints the cross-border events as they are recorded (no personal data); exits 0 only if every
expected outcome happened.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg

from contracts.commands import (
    AcceptReferral,
    CompleteReferral,
    Consent,
    CriteriaAnswers,
    DeliveredItem,
    PersonalData,
    RegisterShelter,
    RequestCrossBorderReferral,
    ScreeningInterview,
    WithdrawConsent,
)
from contracts.envelope import Envelope
from contracts.public_key_sealing import generate_private_key
from contracts.vocabulary import (
    Act,
    DataPurpose,
    DeliveryUnit,
    FormOfExploitation,
    Means,
    Purpose,
    Region,
    Service,
    Sex,
    ShelterCategory,
)
from nrm_tools.linked_hubs import LinkedHubs
from services.client import AccessRefusedError, AgencyClient, HubClient

WAIT_SECONDS = 30.0
SHOWN = (
    "case.received_from_abroad",
    "referral.requested",
    "referral.accepted",
    "referral.completed",
    "shelter.admitted",
    "consent.withdrawn",
    "case.cross_border_notice_applied",
)


class Timeline:
    def __init__(self) -> None:
        self.started = time.monotonic()
        self.seen: list[tuple[str, Envelope]] = []

    def tap(self, country: str) -> Any:
        async def on_message(msg: Msg) -> None:
            envelope = Envelope.from_bytes(msg.data)
            self.seen.append((country, envelope))
            if envelope.type.startswith("referral.cross_border") or envelope.type in SHOWN:
                facts = {
                    k: envelope.data[k]
                    for k in (
                        "destination",
                        "origin",
                        "provider_id",
                        "reason",
                        "fields_sent",
                        "notice",
                    )
                    if k in envelope.data
                }
                elapsed = time.monotonic() - self.started
                print(f"  +{elapsed:6.2f}s  [{country}] {envelope.type:<34} {facts}")

        return on_message

    async def wait_for(self, country: str, event_type: str, **data: Any) -> Envelope | None:
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            for where, envelope in self.seen:
                if (
                    where == country
                    and envelope.type == event_type
                    and all(envelope.data.get(k) == v for k, v in data.items())
                ):
                    return envelope
            await asyncio.sleep(0.05)
        return None


def _interview(
    agency_id: str, region: Region, citizenship: str, sex: Sex, consent: Consent
) -> ScreeningInterview:
    # Fictional person; never printed.
    return ScreeningInterview(
        command_id=uuid.uuid4(),
        agency_id=agency_id,
        interviewed_on=dt.date(2026, 11, 20),
        region=region,
        sex=sex,
        citizenship=citizenship,
        country_of_exploitation="KG" if citizenship == "UZ" else "KZ",
        criteria=CriteriaAnswers(
            acts=frozenset({Act.RECRUITMENT}),
            means=frozenset({Means.DECEPTION, Means.DOCUMENT_CONFISCATION}),
            purposes=frozenset({Purpose.FORCED_LABOUR}),
        ),
        forms_of_exploitation=frozenset({FormOfExploitation.FORCED_LABOUR}),
        consent=consent,
        personal_data=PersonalData(
            full_name="Demo Person",
            date_of_birth=dt.date(1991, 5, 17),
            document_number="DEMO-0001",
            phone="+000 000 0000",
            narrative="fictional demo narrative",
        ),
    )


def _refer(
    agency_id: str, case_id: str, destination: str, purpose: DataPurpose, service: Service
) -> RequestCrossBorderReferral:
    return RequestCrossBorderReferral(
        command_id=uuid.uuid4(),
        agency_id=agency_id,
        case_id=uuid.UUID(case_id),
        destination=destination,
        purpose=purpose,
        service=service,
    )


async def _scenario(clients: dict[str, HubClient], timeline: Timeline) -> list[str]:
    """Runs the three stories; returns what did not happen as expected."""
    kg, kz = clients["kg"], clients["kz"]
    failed: list[str] = []

    def check(ok: object, what: str) -> None:
        print(f"  {'ok  ' if ok else 'FAIL'} {what}")
        if not ok:
            failed.append(what)

    print("1. An Uzbek national identified in Osh is referred home to Uzbekistan")
    consent = Consent(
        purposes=frozenset({DataPurpose.ASSISTANCE, DataPurpose.REPATRIATION}),
        recipient_countries=frozenset({"UZ"}),
    )
    man = _interview("kg-mia-osh", Region.OSH_CITY, "UZ", Sex.MALE, consent)
    case_id = (await kg.send(man))["aggregate_id"]
    reply = await kg.send(
        _refer("kg-mia-osh", case_id, "UZ", DataPurpose.REPATRIATION, Service.REPATRIATION)
    )
    check(reply["status"] == "accepted", "kg records referral.cross_border_requested")
    referral = reply.get("aggregate_id")
    local = await timeline.wait_for("uz", "referral.requested", referrer_id="uz-coordinating-body")
    check(local is not None, "uz opens a local case and refers him to a provider")
    provider_client: AgencyClient | None = None
    if local is not None:
        provider, local_id = local.data["provider_id"], local.data["referral_id"]
        provider_client = await _provider_with_key(clients["uz"], provider)
        released = await _released(provider_client, local.data["case_id"])
        check(released == "released", "uz custody releases his data to its provider")
        await clients["uz"].send(
            AcceptReferral(command_id=uuid.uuid4(), agency_id=provider, referral_id=local_id)
        )
        await timeline.wait_for("kg", "referral.cross_border_accepted", referral_id=referral)
        await clients["uz"].send(
            CompleteReferral(
                command_id=uuid.uuid4(),
                agency_id=provider,
                referral_id=local_id,
                delivered=(
                    DeliveredItem(service=Service.REPATRIATION, quantity=1, unit=DeliveryUnit.ITEM),
                ),
            )
        )
    for answer in ("received", "accepted", "completed"):
        found = await timeline.wait_for(
            "kg", f"referral.cross_border_{answer}", referral_id=referral
        )
        check(found is not None, f"kg hears '{answer}' from uz")

    print("2. A Kyrgyz woman identified by the police in Almaty goes to a shelter in Bishkek")
    await kg.send(
        RegisterShelter(
            command_id=uuid.uuid4(),
            agency_id="kg-ngo-bishkek-crisis-centre",
            capacity={ShelterCategory.WOMEN: 4},
        )
    )
    consent = Consent(
        purposes=frozenset({DataPurpose.ASSISTANCE}), recipient_countries=frozenset({"KG"})
    )
    woman = _interview("kz-police-almaty", Region.KZ_ALMATY_CITY, "KG", Sex.FEMALE, consent)
    kz_case = (await kz.send(woman))["aggregate_id"]
    reply = await kz.send(
        _refer("kz-police-almaty", kz_case, "KG", DataPurpose.ASSISTANCE, Service.SHELTER)
    )
    check(reply["status"] == "accepted", "kz records referral.cross_border_requested")
    admitted = await timeline.wait_for(
        "kg", "shelter.admitted", shelter_id="kg-ngo-bishkek-crisis-centre"
    )
    check(admitted is not None, "kg's Bishkek crisis centre admits her")
    accepted = await timeline.wait_for(
        "kz", "referral.cross_border_accepted", referral_id=reply.get("aggregate_id")
    )
    check(accepted is not None, "kz hears 'accepted' from kg")

    print("3. Without consent for Kazakhstan, a transfer there is refused and nothing leaves")
    reply = await kg.send(
        _refer("kg-mia-osh", case_id, "KZ", DataPurpose.ASSISTANCE, Service.SHELTER)
    )
    check(
        reply.get("status") == "refused" and reply.get("reason") == "country_not_covered",
        "refused: country_not_covered (recorded as referral.cross_border_refused)",
    )
    refused = await timeline.wait_for("kg", "referral.cross_border_refused")
    check(refused is not None, "the refusal is an event (audited)")
    await asyncio.sleep(1.0)
    leaked = [e for c, e in timeline.seen if c == "kz" and e.type == "case.received_from_abroad"]
    check(not leaked, "kz received nothing")

    print("4. The Uzbek man withdraws his consent in Kyrgyzstan: the withdrawal crosses the border")
    withdraw = WithdrawConsent(command_id=uuid.uuid4(), agency_id="kg-mia-osh", case_id=case_id)
    check((await kg.send(withdraw))["status"] == "accepted", "kg records consent.withdrawn")
    notice = await timeline.wait_for(
        "kg", "referral.cross_border_notice_sent", referral_id=referral, notice="withdrawn"
    )
    check(notice is not None, "kg sends uz a withdrawal notice (ids and codes only)")
    withdrawn = await timeline.wait_for("uz", "consent.withdrawn")
    check(withdrawn is not None, "uz records the withdrawal on the case it received")
    applied = await timeline.wait_for(
        "kg", "referral.cross_border_notice_applied", referral_id=referral, notice="withdrawn"
    )
    check(applied is not None, "kg hears that uz applied the withdrawal")
    if provider_client is not None and local is not None:
        after = await _released(provider_client, local.data["case_id"])
        check(after == "consent_withdrawn", f"uz custody now refuses releases: {after}")
    return failed


async def _provider_with_key(client: HubClient, provider: str) -> AgencyClient:
    """The provider with a key registered by Uzbekistan's coordinating body."""
    key = generate_private_key()
    registered = await client.register_agency_key(
        "uz-coordinating-body", provider, key.public_key()
    )
    assert registered["status"] == "accepted", registered
    return AgencyClient(client.connection, provider, key)


async def _released(agency: AgencyClient, case_id: str) -> str:
    """'released' if custody releases the case's data for assistance, else its reason."""
    try:
        await agency.open_fields(uuid.UUID(case_id), DataPurpose.ASSISTANCE)
    except AccessRefusedError as refused:
        return str(refused)
    return "released"


async def run_crossborder_demo(base_dir: Path | None = None) -> int:
    with tempfile.TemporaryDirectory(prefix="nrm-xb-demo-") as tmp:
        root = base_dir or Path(tmp)
        print("Starting three hubs (kg, kz, uz) on loopback, linked by leaf connections ...")
        async with LinkedHubs(root) as hubs, hubs.services():
            timeline = Timeline()
            connections: list[Client] = []
            clients: dict[str, HubClient] = {}
            try:
                for country in hubs.countries:
                    nc = await nats.connect(hubs[country].url, name=f"demo-{country}")
                    connections.append(nc)
                    await nc.subscribe("nrm.evt.>", cb=timeline.tap(country))
                    clients[country] = HubClient(nc, timeout=10.0)
                failed = await _scenario(clients, timeline)
            finally:
                for nc in connections:
                    await nc.drain()
    if failed:
        print(f"cross-border demo FAILED: {len(failed)} expected outcome(s) missing")
        return 1
    print("cross-border demo ok: every expected outcome happened")
    return 0
