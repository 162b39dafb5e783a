"""Nobody acts in another agency's name, on the secured cluster (deploy/nats, TLS client
certificates, per-user permissions) with the five services running as their own users.

Who sent a command is the agency in its subject (`nrm.cmd.<command>.<agency id>`), which only
that agency's NATS user may publish to. A body naming another agency is rejected
`not_authorised` on `agency_id`, writes nothing to NRM_EVENTS, and leaves a rejection notice
naming the authenticated sender and the agency it claimed to be. Publishing on another
agency's subject is refused by the server itself (a permissions violation: no reply).

The (agency, command) pairs come from the registry and the generated permissions; the
expected outcomes are written here by hand."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext

from contracts.commands import (
    ALL_COMMANDS,
    CloseCase,
    Command,
    Consent,
    DeclineReferral,
    EraseCase,
    RecordConsent,
    RegisterShelter,
    RequestCaseTransfer,
    SubmitScreening,
)
from contracts.envelope import Envelope
from contracts.public_key_sealing import generate_private_key
from contracts.subjects import (
    EVENTS_STREAM,
    REJECTIONS_STREAM,
    agency_command_subject,
    command_subject,
)
from contracts.vocabulary import (
    AgencyKind,
    ClosureReason,
    DataPurpose,
    DeclineReason,
    ErasureReason,
    PersonalField,
    Service,
    TransferReason,
)
from services.agencies.registry import load_registry
from services.audit.domain import COMMAND_REJECTED
from services.bootstrap import RunningService, bootstrap, start_service
from services.client import AccessRefusedError, AgencyClient, HubClient
from services.runtime.case_keys import create_hub_keys
from services.runtime.connection import connect_options
from services.runtime.permissions import agency_user
from services.runtime.settings import nats_servers
from tests.integration.hub_reads import (
    CANARIES,
    CANARY_NAME,
    SHELTER_AND_LEGAL_AID,
    audit_leaves,
    events,
    outcomes_by_case,
    screening,
    stream_messages,
    wait_until,
)
from tests.integration.secured_hub import SecuredCluster

pytestmark = pytest.mark.integration

REGISTRY = load_registry()
COORD = "kg-coordinating-body"
POLICE = "kg-mia-osh"  # internal affairs, identifies
CRISIS = "kg-ngo-osh-crisis-centre"  # identifies, runs a shelter in Osh
CLINIC = "kg-ngo-osh-legal-clinic"  # provides legal aid in Osh, does not identify
SERVICES = ("identifier", "referral", "shelter", "audit", "custody")
EXAMPLES = Path(__file__).resolve().parents[2] / "contracts" / "examples"
NOT_AUTHORISED = [("agency_id", "not_authorised")]


def test_the_registry_still_has_the_agencies_these_tests_need() -> None:
    """The attacks below rely on these roles; say so plainly if the registry changes."""
    assert REGISTRY.coordinating_body == COORD
    police, crisis, clinic = (REGISTRY.get(a) for a in (POLICE, CRISIS, CLINIC))
    assert police is not None and police.kind is AgencyKind.INTERNAL_AFFAIRS
    assert police.may_identify
    assert crisis is not None and crisis.may_identify and Service.SHELTER in crisis.services
    assert clinic is not None and not clinic.may_identify
    assert Service.LEGAL_AID in clinic.services


def senders() -> dict[type[Command], list[str]]:
    """Every command type and the agencies whose NATS user may publish it (on its own
    subject), from the registry and the generated permissions."""
    found: dict[type[Command], list[str]] = {}
    for agency in REGISTRY.agencies:
        publish = agency_user(agency.id, REGISTRY).permissions.publish
        for command in ALL_COMMANDS:
            if agency_command_subject(command, agency.id) in publish:
                found.setdefault(command, []).append(agency.id)
    return found


async def valid_body(command: type[Command], agency_id: str, sender: Client) -> dict[str, Any]:
    """A valid body of `command` in `agency_id`'s name: a screening sealed to the hub's
    intake key (asked over the sender's connection), else the contracts/examples/ one."""
    if command is SubmitScreening:
        sealed = await HubClient(sender).sealed(screening(agency_id))
        body: dict[str, Any] = json.loads(sealed.model_dump_json())
        return body
    return example_body(command, agency_id)


def example_body(command: type[Command], agency_id: str) -> dict[str, Any]:
    """A valid body of `command` (from contracts/examples/) in `agency_id`'s name, with a
    fresh command id: valid, so the identity check (after parsing) is what decides."""
    for path in sorted(EXAMPLES.glob("*.json")):
        example = json.loads(path.read_text("utf-8"))
        if example["subject"] == f"nrm.cmd.{command.NAME}":
            body: dict[str, Any] = {
                **example["payload"],
                "command_id": str(uuid.uuid4()),
                "agency_id": agency_id,
            }
            command.model_validate(body)  # the hub parses it before checking the sender
            return body
    raise AssertionError(f"no example for {command.NAME} in {EXAMPLES}")


def victim_of(command: type[Command], sender: str, allowed: list[str]) -> str:
    """Whom `sender` pretends to be: the coordinating body (the name worth the most), else
    another agency that may send the command, else any other agency."""
    if sender != COORD:
        return COORD
    others = [a for a in allowed if a != sender]
    return others[0] if others else next(a.id for a in REGISTRY.agencies if a.id != sender)


@dataclass
class Agent:
    """One role's connection, recording replies and the server's permission violations."""

    role: str
    nc: Client
    errors: list[str] = field(default_factory=list)
    replies: list[bytes] = field(default_factory=list)

    async def request(self, subject: str, body: dict[str, Any], timeout: float = 5.0) -> Any:
        reply = await self.nc.request(subject, json.dumps(body).encode(), timeout=timeout)
        self.replies.append(reply.data)
        return json.loads(reply.data)["data"]

    def violated(self, subject: str) -> bool:
        wanted = f'permissions violation for publish to "{subject}"'
        return any(wanted in e.lower() for e in self.errors)


@contextlib.asynccontextmanager
async def connected(cluster: SecuredCluster, role: str) -> AsyncIterator[Agent]:
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    options = connect_options(cluster.settings(role, cluster.base), role)
    nc = await nats.connect(
        nats_servers(cluster.url), error_cb=on_error, allow_reconnect=False, **options
    )
    try:
        yield Agent(role, nc, errors)
    finally:
        await nc.close()


@dataclass
class Hub:
    cluster: SecuredCluster
    admin: Agent
    replies: list[bytes] = field(default_factory=list)

    @property
    def js(self) -> JetStreamContext:
        return self.admin.nc.jetstream()

    async def last_event(self) -> int:
        return int((await self.js.stream_info(EVENTS_STREAM)).state.last_seq)

    async def rejections(self) -> list[dict[str, Any]]:
        return [
            Envelope.from_bytes(m.data or b"").data
            for m in await stream_messages(self.js, REJECTIONS_STREAM)
        ]

    async def notice(self, command_id: str) -> dict[str, Any]:
        async def found() -> dict[str, Any] | None:
            return next((n for n in await self.rejections() if n["command_id"] == command_id), None)

        notice: dict[str, Any] = await wait_until(found, timeout=15)
        return notice

    async def leaf(self, command_id: str) -> dict[str, Any]:
        async def found() -> dict[str, Any] | None:
            return next(
                (
                    leaf
                    for leaf in await audit_leaves(self.js)
                    if leaf["action"] == COMMAND_REJECTED
                    and leaf["ids"].get("command_id") == command_id
                ),
                None,
            )

        leaf: dict[str, Any] = await wait_until(found, timeout=30)
        return leaf

    async def assert_no_canary(self) -> None:
        """No personal-data canary in any reply this test saw, any rejection notice or any
        audit leaf."""
        seen = [
            *self.replies,
            *(m.data or b"" for m in await stream_messages(self.js, REJECTIONS_STREAM)),
            *(json.dumps(leaf).encode() for leaf in await audit_leaves(self.js)),
        ]
        for canary in CANARIES:
            assert not any(canary.encode() in data for data in seen), canary


class RecordingAgencyClient(AgencyClient):
    """An AgencyClient that keeps every raw reply, for the canary check."""

    def __init__(self, agent: Agent, key: Any, sink: list[bytes]) -> None:
        super().__init__(agent.nc, agent.role, key)
        self._sink = sink

    async def send_raw(self, subject: str, body: bytes, nc: Client | None = None) -> Any:
        envelope = await super().send_raw(subject, body, nc)
        self._sink.append(json.dumps(envelope).encode())
        return envelope


@contextlib.asynccontextmanager
async def secured_hub(tmp_path: Path, services: tuple[str, ...] = SERVICES) -> AsyncIterator[Hub]:
    """A fresh secured cluster, bootstrapped, with `services` running as their own users."""
    cluster = SecuredCluster(tmp_path / "hub")
    cluster.start()
    running: list[RunningService] = []
    try:
        await bootstrap(cluster.url, cluster.settings("admin", tmp_path))
        shared_kek = tmp_path / "kek"  # identifier and custody share the case-key ring
        for name in services:
            settings = cluster.settings(
                name,
                tmp_path / name,
                max_deliver=3,
                retry_backoff_seconds=(0.05, 0.1),
                kek_file=shared_kek,
                checkpoint_interval_seconds=0.5,
            )
            create_hub_keys(settings)
            running.append(await start_service(name, cluster.url, settings))
        async with connected(cluster, "admin") as admin:
            hub = Hub(cluster, admin)
            yield hub
            await hub.assert_no_canary()
    finally:
        for service in running:
            await service.stop()
        cluster.stop()


async def test_every_command_in_another_agencys_name_is_refused_for_who_sent_it(
    tmp_path: Path,
) -> None:
    pairs = senders()
    # Every command has at least one agency that may send it.
    assert set(pairs) == set(ALL_COMMANDS)
    assert COORD in [a for c, agencies in pairs.items() if c.NAME == "case.erase" for a in agencies]
    assert POLICE in [
        a for c, agencies in pairs.items() if c.NAME == "consent.record" for a in agencies
    ]
    async with secured_hub(tmp_path) as hub, contextlib.AsyncExitStack() as stack:
        agents = {
            agency: await stack.enter_async_context(connected(hub.cluster, agency))
            for agency in sorted({a for agencies in pairs.values() for a in agencies})
        }
        before = await hub.last_event()
        sent: list[tuple[str, str, str, str]] = []  # command, sender, victim, command_id

        async def impersonate(command: type[Command], sender: str, victim: str) -> None:
            body = await valid_body(command, victim, agents[sender].nc)
            reply = await agents[sender].request(agency_command_subject(command, sender), body)
            hub.replies.append(json.dumps(reply).encode())
            assert reply["status"] == "rejected", (command.NAME, sender, reply)
            got = [(e["field"], e["code"]) for e in reply["errors"]]
            assert got == NOT_AUTHORISED, (command.NAME, sender, victim, got)
            sent.append((command.NAME, sender, victim, body["command_id"]))

        await asyncio.gather(
            *(
                impersonate(command, sender, victim_of(command, sender, allowed))
                for command, allowed in pairs.items()
                for sender in allowed
            )
        )
        assert len(sent) == sum(len(a) for a in pairs.values()) > len(ALL_COMMANDS)
        assert await hub.last_event() == before  # nothing written, by anyone

        notices = {n["command_id"]: n for n in await wait_until(hub.rejections, timeout=15)}

        async def all_noted() -> bool:
            notices.update({n["command_id"]: n for n in await hub.rejections()})
            return all(command_id in notices for *_, command_id in sent)

        await wait_until(all_noted, timeout=15)
        for command, sender, victim, command_id in sent:
            notice = notices[command_id]
            assert notice["command"] == command
            assert notice["agency_id"] == sender, notice
            assert notice["authenticated"] is True, notice
            assert notice["claimed_agency_id"] == victim, notice
            assert [(e["field"], e["code"]) for e in notice["errors"]] == NOT_AUTHORISED
        # The audit log says who tried it and whom they claimed to be (one leaf suffices to
        # show the path; every notice is the same shape).
        command, sender, victim, command_id = sent[0]
        leaf = await hub.leaf(command_id)
        assert leaf["actor"]["agency"] == sender
        assert leaf["detail"]["impersonated"] == victim
        assert leaf["detail"]["authenticated"] == "yes"
        assert leaf["detail"]["errors"] == ["agency_id:not_authorised"]
        assert await hub.last_event() == before
        assert hub.cluster.violations() == ""  # own subjects only: the server let them through


async def test_publishing_on_another_agencys_subject_is_a_permissions_violation(
    tmp_path: Path,
) -> None:
    pairs = senders()
    async with secured_hub(tmp_path) as hub, contextlib.AsyncExitStack() as stack:
        agents = {
            agency: await stack.enter_async_context(connected(hub.cluster, agency))
            for agency in sorted({a for agencies in pairs.values() for a in agencies})
        }
        before_events = await hub.last_event()
        before_rejections = len(await hub.rejections())
        attempts: list[tuple[str, str]] = []  # sender, subject

        planned: list[tuple[str, str, dict[str, Any]]] = []  # sender, subject, body
        for command, allowed in pairs.items():
            for sender in allowed:
                victim = victim_of(command, sender, allowed)
                nc = agents[sender].nc
                body = await valid_body(command, victim, nc)
                planned.append((sender, agency_command_subject(command, victim), body))
                # The open subject (no sender in it) is not theirs either, even in their
                # own name.
                own = await valid_body(command, sender, nc)
                planned.append((sender, command_subject(command), own))

        async def on_subject(sender: str, subject: str, body: dict[str, Any]) -> None:
            attempts.append((sender, subject))
            with pytest.raises((NatsTimeoutError, NoRespondersError)):
                await agents[sender].request(subject, body, 2.0)

        await asyncio.gather(*(on_subject(*attempt) for attempt in planned))

        def let_through() -> list[tuple[str, str]]:
            return [(s, subject) for s, subject in attempts if not agents[s].violated(subject)]

        async def all_refused() -> bool:
            return not let_through()

        with contextlib.suppress(AssertionError):
            await wait_until(all_refused, timeout=5)
        assert let_through() == [], "the server let these through"
        logged = hub.cluster.violations()
        for sender, subject in attempts:
            assert f'"{subject}"' in logged, (sender, subject)
        assert await hub.last_event() == before_events
        assert len(await hub.rejections()) == before_rejections  # no service even saw them


async def _identified_case(hub: Hub, crisis: Agent) -> uuid.UUID:
    """A case the crisis centre identified (shelter and legal aid), with the centre and the
    police holding registered keys; returns once the hub has finished with it."""
    client = HubClient(crisis.nc)
    shelter = RegisterShelter(command_id=uuid.uuid4(), agency_id=CRISIS, capacity={"women": 2})
    assert (await client.send(shelter))["status"] == "accepted"
    identified = await client.send(screening(CRISIS))
    hub.replies.append(json.dumps(identified).encode())
    assert identified["status"] == "accepted", identified
    case_id = identified["aggregate_id"]

    async def settled() -> bool:
        per_case = outcomes_by_case(await events(hub.js), [case_id])
        return per_case[case_id] == SHELTER_AND_LEGAL_AID

    await wait_until(settled, timeout=30)
    return uuid.UUID(case_id)


async def test_police_cannot_record_consent_as_the_coordinating_body(tmp_path: Path) -> None:
    """Attack (a): the police send consent.record in the coordinating body's name, granting
    `investigation` to internal affairs, to open the person's data themselves."""
    async with (
        secured_hub(tmp_path) as hub,
        connected(hub.cluster, CRISIS) as crisis,
        connected(hub.cluster, POLICE) as police,
        connected(hub.cluster, COORD) as coord,
    ):
        police_key = generate_private_key()
        registered = await HubClient(coord.nc).register_agency_key(
            COORD, POLICE, police_key.public_key()
        )
        assert registered["status"] == "accepted"
        case_id = await _identified_case(hub, crisis)
        officer = RecordingAgencyClient(police, police_key, hub.replies)
        with pytest.raises(AccessRefusedError):  # the person consented to assistance only
            await officer.open_fields(case_id, DataPurpose.INVESTIGATION)

        grant = RecordConsent(
            command_id=uuid.uuid4(),
            agency_id=COORD,  # the lie
            case_id=case_id,
            given_on=dt.date(2026, 11, 21),
            consent=Consent(
                purposes=frozenset({DataPurpose.ASSISTANCE, DataPurpose.INVESTIGATION}),
                recipient_kinds=frozenset({AgencyKind.INTERNAL_AFFAIRS}),
            ),
        )
        before = await hub.last_event()
        body = json.loads(grant.model_dump_json())
        reply = await police.request(agency_command_subject(RecordConsent, POLICE), body)
        hub.replies.append(json.dumps(reply).encode())
        assert reply["status"] == "rejected"
        assert [(e["field"], e["code"]) for e in reply["errors"]] == NOT_AUTHORISED
        assert await hub.last_event() == before
        notice = await hub.notice(str(grant.command_id))
        assert (notice["agency_id"], notice["claimed_agency_id"]) == (POLICE, COORD)
        leaf = await hub.leaf(str(grant.command_id))
        assert leaf["actor"]["agency"] == POLICE and leaf["detail"]["impersonated"] == COORD

        with pytest.raises(AccessRefusedError):
            await officer.open_fields(case_id, DataPurpose.INVESTIGATION)

        # The refusal was about who sent it: the same consent, from the coordinating body
        # itself, is accepted and then opens the data to the police.
        genuine = grant.model_copy(update={"command_id": uuid.uuid4()})
        assert (await HubClient(coord.nc).send(genuine))["status"] == "accepted"
        opened = await officer.open_fields(case_id, DataPurpose.INVESTIGATION)
        assert opened[PersonalField.FULL_NAME] == CANARY_NAME


async def test_a_clinic_cannot_decline_the_crisis_centres_referral(tmp_path: Path) -> None:
    """Attack (b): the legal clinic declines a shelter referral in the crisis centre's name
    while it still waits for an answer. The shelter service is not started, so the
    referral stays `requested` (a running shelter would admit or wait-list it at once)."""
    without_shelter = tuple(s for s in SERVICES if s != "shelter")
    async with (
        secured_hub(tmp_path, without_shelter) as hub,
        connected(hub.cluster, CRISIS) as crisis,
        connected(hub.cluster, CLINIC) as clinic,
    ):
        identified = await HubClient(crisis.nc).send(screening(CRISIS))
        assert identified["status"] == "accepted"

        async def shelter_referral() -> dict[str, Any] | None:
            return next(
                (
                    e.data
                    for e in await events(hub.js)
                    if e.type == "referral.requested" and e.data["service"] == "shelter"
                ),
                None,
            )

        requested = await wait_until(shelter_referral, timeout=30)
        assert requested["provider_id"] == CRISIS  # the one shelter in Osh
        referral_id = requested["referral_id"]

        async def referral_events() -> list[str]:
            return [
                e.type for e in await events(hub.js) if e.data.get("referral_id") == referral_id
            ]

        assert await referral_events() == ["referral.requested"]
        decline = DeclineReferral(
            command_id=uuid.uuid4(),
            agency_id=CRISIS,  # the lie
            referral_id=uuid.UUID(referral_id),
            reason=DeclineReason.NO_CAPACITY,
        )
        before = await hub.last_event()
        body = json.loads(decline.model_dump_json())
        reply = await clinic.request(agency_command_subject(DeclineReferral, CLINIC), body)
        hub.replies.append(json.dumps(reply).encode())
        assert reply["status"] == "rejected"
        assert [(e["field"], e["code"]) for e in reply["errors"]] == NOT_AUTHORISED
        assert await hub.last_event() == before
        assert await referral_events() == ["referral.requested"]  # still waiting
        notice = await hub.notice(str(decline.command_id))
        assert (notice["agency_id"], notice["claimed_agency_id"]) == (CLINIC, CRISIS)
        assert notice["authenticated"] is True

        # The crisis centre itself may decline it: the body was fine, the sender was not.
        genuine = decline.model_copy(update={"command_id": uuid.uuid4()})
        assert (await HubClient(crisis.nc).send(genuine))["status"] == "accepted"
        assert await referral_events() == ["referral.requested", "referral.declined"]


async def test_police_cannot_erase_a_case_as_the_coordinating_body(tmp_path: Path) -> None:
    """Attack (c): the police erase the case "as the coordinating body"."""
    async with (
        secured_hub(tmp_path) as hub,
        connected(hub.cluster, CRISIS) as crisis,
        connected(hub.cluster, POLICE) as police,
        connected(hub.cluster, COORD) as coord,
    ):
        centre_key = generate_private_key()
        registered = await HubClient(coord.nc).register_agency_key(
            COORD, CRISIS, centre_key.public_key()
        )
        assert registered["status"] == "accepted"
        case_id = await _identified_case(hub, crisis)
        erase = EraseCase(
            command_id=uuid.uuid4(),
            agency_id=COORD,  # the lie
            case_id=case_id,
            reason=ErasureReason.ERASURE_REQUEST,
        )
        before = await hub.last_event()
        body = json.loads(erase.model_dump_json())
        reply = await police.request(agency_command_subject(EraseCase, POLICE), body)
        hub.replies.append(json.dumps(reply).encode())
        assert reply["status"] == "rejected"
        assert [(e["field"], e["code"]) for e in reply["errors"]] == NOT_AUTHORISED
        assert await hub.last_event() == before
        assert not [e for e in await events(hub.js) if e.type == "case.erased"], (
            "the case was erased"
        )
        notice = await hub.notice(str(erase.command_id))
        assert (notice["agency_id"], notice["claimed_agency_id"]) == (POLICE, COORD)
        leaf = await hub.leaf(str(erase.command_id))
        assert leaf["actor"]["agency"] == POLICE and leaf["detail"]["impersonated"] == COORD

        # The person's data still opens for the agency entitled to it.
        centre = RecordingAgencyClient(crisis, centre_key, hub.replies)
        opened = await centre.open_fields(case_id, DataPurpose.ASSISTANCE)
        assert opened[PersonalField.FULL_NAME] == CANARY_NAME


async def test_an_agency_that_does_not_own_the_case_cannot_transfer_or_close_it(
    tmp_path: Path,
) -> None:
    """Attack (d): the police, an identifying agency but not the case's owner, try to hand
    the crisis centre's case to themselves and to close it, in their own name and then in
    the owner's. No referral service runs, so no referral keeps the case from closing."""
    async with (
        secured_hub(tmp_path, ("identifier", "audit")) as hub,
        connected(hub.cluster, CRISIS) as crisis,
        connected(hub.cluster, POLICE) as police,
    ):
        identified = await HubClient(crisis.nc).send(screening(CRISIS, needs=frozenset()))
        hub.replies.append(json.dumps(identified).encode())
        assert identified["status"] == "accepted", identified
        case_id = uuid.UUID(identified["aggregate_id"])
        take = RequestCaseTransfer(
            command_id=uuid.uuid4(),
            agency_id=POLICE,
            case_id=case_id,
            to_agency=POLICE,
            reason=TransferReason.OTHER,
        )
        close = CloseCase(
            command_id=uuid.uuid4(),
            agency_id=POLICE,
            case_id=case_id,
            reason=ClosureReason.LOST_CONTACT,
        )
        as_owner = close.model_copy(update={"command_id": uuid.uuid4(), "agency_id": CRISIS})
        before = await hub.last_event()
        for command in (take, close, as_owner):
            body = json.loads(command.model_dump_json())
            reply = await police.request(agency_command_subject(type(command), POLICE), body)
            hub.replies.append(json.dumps(reply).encode())
            assert reply["status"] == "rejected", command
            assert [(e["field"], e["code"]) for e in reply["errors"]] == NOT_AUTHORISED
        assert await hub.last_event() == before
        lifecycle = ("case.transfer_requested", "case.closed")
        assert not [e for e in await events(hub.js) if e.type in lifecycle]
        notice = await hub.notice(str(as_owner.command_id))
        assert (notice["agency_id"], notice["claimed_agency_id"]) == (POLICE, CRISIS)

        # The owner itself may close it: the body was fine, the sender was not.
        genuine = as_owner.model_copy(update={"command_id": uuid.uuid4()})
        assert (await HubClient(crisis.nc).send(genuine))["status"] == "accepted"
        assert [e.type for e in await events(hub.js) if e.type in lifecycle] == ["case.closed"]
