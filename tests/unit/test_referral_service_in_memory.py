"""The referral service's reactions and commands, as registered, on in-memory ports: an
identification leads to one referral.requested per needed service, to the right provider;
providers accept or decline; a shelter placement accepts the shelter referral; the deadlines
projection (KV) is kept and swept. No nats-server, no broker.

Consumers are driven by `deliver`: every stored event on a durable's filter, in stream
order, to the handler registered for it (`ServiceHost.event_handlers`), as the consumer
loop would hand them over. The agency feed's consumer (`referral-feed`) publishes copies to
NRM_FEEDS and keeps the deadline projection: only the projection is driven here
(`Hub.project_deadlines`). Who a copy goes to is `feed.addressees` (pure, tested below); the
copying itself stays with the integration tests."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from contracts.commands import (
    AcceptReferral,
    Consent,
    DeclineReferral,
    DischargeFromShelter,
    RegisterShelter,
    SubmitScreening,
)
from contracts.envelope import Envelope
from contracts.events import (
    NeedUnmet,
    ReferralAccepted,
    ReferralCompleted,
    ReferralDeclined,
    ReferralEscalated,
    ReferralRequested,
    ShelterAdmitted,
    ShelterDischarged,
)
from contracts.public_key_sealing import intake_info, read_private_key, seal_to
from contracts.replies import CommandAccepted, CommandRejection, ErrorCode
from contracts.subjects import EVENT_PREFIX
from contracts.vocabulary import (
    DeclineReason,
    DischargeReason,
    Region,
    Service,
    ShelterCategory,
    UnmetReason,
)
from services.agencies.registry import AgencyRegistry, load_registry
from services.case.ids import need_id_for, referral_id_for
from services.identifier import service as identifier
from services.referral.domain import AdmissionNotYetFollowed
from services.referral.feed import AgencyFeed, addressees
from services.referral.service import ReferralService
from services.runtime.case_keys import create_hub_keys
from services.runtime.eventstore import AppendFailed, StoredEvent
from services.runtime.in_memory import InMemoryEventStore, InMemoryKeyValue
from services.runtime.messaging import Delivery, Runtime, ServiceHost
from services.runtime.service_table import consumer
from services.runtime.settings import Settings
from services.runtime.topology import (
    BLIND_INDEX_BUCKET,
    CASE_KEYS_BUCKET,
    COMMAND_IDS_BUCKET,
    REFERRAL_DEADLINES_BUCKET,
)
from services.shelter import service as shelter
from tests.integration.hub_reads import CANARY_NAME, CANARY_NARRATIVE, CANARY_PHONE, screening

IDENTIFIER = "kg-health-osh"
SHELTER = "kg-ngo-osh-crisis-centre"  # the Osh shelter for women and children
LEGAL_AID = "kg-ngo-osh-legal-clinic"  # legal aid in Osh
COORDINATING_BODY = "kg-coordinating-body"
NOWHERE = "nats://127.0.0.1:1"  # the hosts are never connected


def delivery_of(stored: StoredEvent) -> Delivery:
    """A stored event as the consumer loop hands it to a handler."""
    envelope = stored.envelope
    return Delivery(envelope, stored.event, envelope.to_bytes(), stored.stream_sequence)


class Hub:
    """The identifier, referral and shelter services on one set of in-memory ports."""

    def __init__(self, tmp_path: Path, registry: AgencyRegistry | None = None) -> None:
        settings = Settings(data_dir=tmp_path)
        create_hub_keys(settings)
        self.store = InMemoryEventStore()
        buckets = (CASE_KEYS_BUCKET, BLIND_INDEX_BUCKET, COMMAND_IDS_BUCKET)
        self.deadlines = InMemoryKeyValue()
        self.runtime = Runtime(
            settings=settings,
            registry=registry or load_registry(),
            store=self.store,
            buckets={
                REFERRAL_DEADLINES_BUCKET: self.deadlines,
                **{name: InMemoryKeyValue() for name in buckets},
            },
        )
        self.identifier = ServiceHost("identifier", self.runtime, NOWHERE)
        identifier.register(self.identifier)
        self.referral = ServiceHost("referral", self.runtime, NOWHERE)
        self.referrals = ReferralService(self.referral)
        self.referrals.register()
        self.shelter = ServiceHost("shelter", self.runtime, NOWHERE)
        shelter.register(self.shelter)

    async def deliver(self, host: ServiceHost, durable: str) -> int:
        """Hand every stored event on `durable`'s filter to its handler, in stream order (a
        redelivery when called again). Returns how many were handed over."""
        return await self._hand_over(durable, host.event_handlers[durable])

    async def project_deadlines(self) -> int:
        """The deadline projection's half of the `referral-feed` durable, as `deliver` hands
        events over (the other half, the copies to the agencies' feeds, needs NATS: the
        integration tests drive it)."""
        return await self._hand_over("referral-feed", self.referrals.on_referral_event)

    async def _hand_over(self, durable: str, handle: Callable[[Delivery], Awaitable[None]]) -> int:
        taken = await self.store.read(*consumer(durable).filter_subjects)
        for stored in taken:
            await handle(delivery_of(stored))
        return len(taken)

    async def identify(self, **changes: Any) -> str:
        """A screening by IDENTIFIER, sealed as the agency client seals it; its case id."""
        interview = screening(IDENTIFIER, **changes)
        public = read_private_key(self.runtime.settings.intake_private_key_file).public_key()
        info = intake_info(str(interview.command_id), interview.agency_id)
        clear = interview.personal_data.model_dump_json(exclude_none=True).encode()
        facts = interview.model_dump(exclude={"personal_data"})
        command = SubmitScreening.model_validate(
            {**facts, "personal_data": seal_to(public, info, clear)}
        )
        reply = await self.identifier.execute(command)
        assert isinstance(reply, CommandAccepted) and reply.aggregate_id is not None
        return reply.aggregate_id

    async def referral_events(self, referral_id: uuid.UUID) -> list[Any]:
        return [e.event for e in (await self.store.load("referral", str(referral_id))).events]


@pytest.fixture
def hub(tmp_path: Path) -> Hub:
    return Hub(tmp_path)


async def test_an_identification_leads_to_one_referral_per_needed_service(hub: Hub) -> None:
    case_id = await hub.identify(needs=frozenset({Service.SHELTER, Service.LEGAL_AID}))
    assert await hub.deliver(hub.referral, "referral-on-identification") == 1

    shelter_ref = referral_id_for(case_id, Service.SHELTER)
    legal_ref = referral_id_for(case_id, Service.LEGAL_AID)
    [to_shelter] = await hub.referral_events(shelter_ref)
    [to_lawyer] = await hub.referral_events(legal_ref)
    assert isinstance(to_shelter, ReferralRequested) and isinstance(to_lawyer, ReferralRequested)
    assert (to_shelter.provider_id, to_shelter.referrer_id) == (SHELTER, IDENTIFIER)
    assert to_shelter.placement_category is ShelterCategory.WOMEN
    assert to_lawyer.provider_id == LEGAL_AID and to_lawyer.placement_category is None
    requested = await hub.store.read("nrm.evt.referral.*.referral.requested")
    assert len(requested) == 2

    # A redelivered identification changes nothing: one request per case and service.
    await hub.deliver(hub.referral, "referral-on-identification")
    assert await hub.store.read("nrm.evt.referral.>") == requested
    # Who the agency feed copies each request to: its provider and the identifying agency.
    assert addressees(to_shelter, []) == (SHELTER, IDENTIFIER)


async def test_a_person_who_declined_a_service_is_not_referred_to_it(hub: Hub) -> None:
    case_id = await hub.identify(
        needs=frozenset({Service.SHELTER, Service.LEGAL_AID}),
        consent=Consent(declined_services=frozenset({Service.SHELTER})),
    )
    await hub.deliver(hub.referral, "referral-on-identification")
    assert await hub.referral_events(referral_id_for(case_id, Service.SHELTER)) == []
    assert len(await hub.referral_events(referral_id_for(case_id, Service.LEGAL_AID))) == 1


async def test_the_provider_accepts_or_declines_and_no_one_else_may(hub: Hub) -> None:
    case_id = await hub.identify(needs=frozenset({Service.SHELTER, Service.LEGAL_AID}))
    await hub.deliver(hub.referral, "referral-on-identification")
    legal_ref = referral_id_for(case_id, Service.LEGAL_AID)
    shelter_ref = referral_id_for(case_id, Service.SHELTER)

    by_another = AcceptReferral(command_id=uuid.uuid4(), agency_id=SHELTER, referral_id=legal_ref)
    with pytest.raises(CommandRejection) as refused:
        await hub.referral.execute(by_another)
    assert [(e.field, e.code) for e in refused.value.errors] == [
        ("agency_id", ErrorCode.NOT_AUTHORISED)
    ]
    accept = AcceptReferral(command_id=uuid.uuid4(), agency_id=LEGAL_AID, referral_id=legal_ref)
    result = await hub.referral.execute(accept)
    assert isinstance(result, tuple) and result[0] == str(legal_ref)
    assert isinstance((await hub.referral_events(legal_ref))[-1], ReferralAccepted)

    decline = DeclineReferral(
        command_id=uuid.uuid4(),
        agency_id=SHELTER,
        referral_id=shelter_ref,
        reason=DeclineReason.NO_CAPACITY,
    )
    await hub.referral.execute(decline)
    declined = (await hub.referral_events(shelter_ref))[-1]
    assert isinstance(declined, ReferralDeclined) and declined.reason is DeclineReason.NO_CAPACITY
    unknown = accept.model_copy(update={"command_id": uuid.uuid4(), "referral_id": uuid.uuid4()})
    with pytest.raises(CommandRejection) as nothing:
        await hub.referral.execute(unknown)
    assert [e.code for e in nothing.value.errors] == [ErrorCode.UNKNOWN_ID]


async def placed_in_a_shelter(hub: Hub) -> str:
    """A shelter with one bed, a case needing one, its referral placed there; the case id."""
    register = RegisterShelter(
        command_id=uuid.uuid4(), agency_id=SHELTER, capacity={ShelterCategory.WOMEN: 1}
    )
    await hub.shelter.execute(register)
    case_id = await hub.identify(needs=frozenset({Service.SHELTER}))
    await hub.deliver(hub.referral, "referral-on-identification")
    await hub.deliver(hub.shelter, "shelter-on-referral")
    return case_id


async def test_a_shelter_placement_accepts_the_shelter_referral(hub: Hub) -> None:
    case_id = await placed_in_a_shelter(hub)
    [admitted] = [e.event for e in await hub.store.read("nrm.evt.shelter.*.shelter.admitted")]
    shelter_ref = referral_id_for(case_id, Service.SHELTER)
    assert isinstance(admitted, ShelterAdmitted) and admitted.referral_id == shelter_ref

    await hub.deliver(hub.referral, "referral-on-placement")
    accepted = (await hub.referral_events(shelter_ref))[-1]
    assert isinstance(accepted, ReferralAccepted) and accepted.provider_id == SHELTER
    await hub.deliver(hub.referral, "referral-on-placement")  # redelivered: nothing new
    assert len(await hub.referral_events(shelter_ref)) == 2


async def test_open_referrals_are_kept_with_their_deadline_and_escalated_when_overdue(
    hub: Hub,
) -> None:
    case_id = await hub.identify(needs=frozenset({Service.SHELTER, Service.LEGAL_AID}))
    await hub.deliver(hub.referral, "referral-on-identification")
    await hub.project_deadlines()
    legal_ref = referral_id_for(case_id, Service.LEGAL_AID)
    shelter_ref = referral_id_for(case_id, Service.SHELTER)
    assert sorted(await hub.deadlines.keys()) == sorted([str(legal_ref), str(shelter_ref)])
    respond_by = dt.datetime.fromisoformat(
        json.loads((await hub.deadlines.get(str(legal_ref))).value)["respond_by"]
    )

    accept = AcceptReferral(command_id=uuid.uuid4(), agency_id=LEGAL_AID, referral_id=legal_ref)
    await hub.referral.execute(accept)
    await hub.project_deadlines()
    assert await hub.deadlines.keys() == [str(shelter_ref)]  # answered: no longer watched

    assert await hub.referrals.escalate_overdue() == 0  # not due yet
    hub.runtime.clock = lambda: respond_by + dt.timedelta(seconds=1)
    assert await hub.referrals.escalate_overdue() == 1
    escalated = (await hub.referral_events(shelter_ref))[-1]
    assert isinstance(escalated, ReferralEscalated)
    assert escalated.escalated_to == COORDINATING_BODY
    assert addressees(escalated, []) == (SHELTER, COORDINATING_BODY)
    await hub.project_deadlines()
    assert await hub.deadlines.keys() == []
    assert await hub.referrals.escalate_overdue() == 0


async def test_the_feeds_durable_keeps_the_deadlines_and_fails_only_after_both_halves_ran(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`referral-feed` copies to the agencies' feeds and keeps the deadline projection. When
    the copies fail, the delivery fails (to be retried whole) only once the projection's
    write has finished: nothing of it is left running after the nak."""
    case_id = await hub.identify(needs=frozenset({Service.LEGAL_AID}))
    await hub.deliver(hub.referral, "referral-on-identification")
    [stored] = await hub.store.read(f"{EVENT_PREFIX}.referral.>")

    async def copies_fail(delivery: Delivery) -> None:
        raise TimeoutError  # NRM_FEEDS did not answer

    put = hub.deadlines.put

    async def slow_put(key: str, value: bytes) -> int:
        await asyncio.sleep(0.05)
        return await put(key, value)

    monkeypatch.setattr(hub.referrals.feed, "copy", copies_fail)
    monkeypatch.setattr(hub.deadlines, "put", slow_put)
    with pytest.raises(TimeoutError):
        await hub.referral.event_handlers["referral-feed"](delivery_of(stored))
    assert await hub.deadlines.keys() == [str(referral_id_for(case_id, Service.LEGAL_AID))]


async def test_the_sweep_drops_what_can_never_escalate_and_one_failure_stops_no_other(
    hub: Hub,
) -> None:
    """An entry whose referral was escalated for its cause before, or does not exist, would
    be read and loaded by every sweep for ever: it is dropped. A referral whose escalation
    fails is retried at the next sweep, and the sweep goes on with the others."""
    case_id = await hub.identify(needs=frozenset({Service.SHELTER, Service.LEGAL_AID}))
    await hub.deliver(hub.referral, "referral-on-identification")
    await hub.project_deadlines()
    legal_ref = referral_id_for(case_id, Service.LEGAL_AID)
    watched = json.loads((await hub.deadlines.get(str(legal_ref))).value)
    hub.runtime.clock = lambda: (
        dt.datetime.fromisoformat(watched["respond_by"]) + dt.timedelta(seconds=1)
    )
    assert await hub.referrals.escalate_overdue() == 2
    # Written again after its escalation (the projection replaying an older event), and an
    # entry for a referral that does not exist: neither can ever escalate.
    unknown = str(uuid.uuid4())
    await hub.deadlines.put(str(legal_ref), json.dumps(watched).encode())
    await hub.deadlines.put(unknown, json.dumps(watched).encode())
    assert await hub.referrals.escalate_overdue() == 0
    # And the shelter's entry: escalated by the first sweep, its event not projected yet.
    assert await hub.deadlines.keys() == []
    assert len(await hub.referral_events(legal_ref)) == 2  # requested, escalated once

    # A store that fails for one referral: the sweep escalates the others.
    second = await hub.identify(needs=frozenset({Service.LEGAL_AID, Service.MEDICAL}))
    await hub.deliver(hub.referral, "referral-on-identification")
    await hub.project_deadlines()
    failing, other = (referral_id_for(second, s) for s in (Service.LEGAL_AID, Service.MEDICAL))
    due = json.loads((await hub.deadlines.get(str(failing))).value)["respond_by"]
    hub.runtime.clock = lambda: dt.datetime.fromisoformat(due) + dt.timedelta(seconds=1)
    append = hub.store.append

    async def append_failing(aggregate: str, aggregate_id: str, *args: Any) -> int:
        if aggregate_id == str(failing):
            raise TimeoutError  # the store did not answer in time
        return await append(aggregate, aggregate_id, *args)

    hub.store.append = append_failing  # type: ignore[method-assign]
    assert await hub.referrals.escalate_overdue() == 1
    assert isinstance((await hub.referral_events(other))[-1], ReferralEscalated)
    assert len(await hub.referral_events(failing)) == 1
    assert str(failing) in await hub.deadlines.keys()  # kept for the next sweep
    hub.store.append = append  # type: ignore[method-assign]
    assert await hub.referrals.escalate_overdue() == 1
    assert isinstance((await hub.referral_events(failing))[-1], ReferralEscalated)


# --- Unmet needs (oversight: nobody falls through the cracks) --------------------------------


def _without(service: Service) -> AgencyRegistry:
    """The packaged registry with nobody offering `service`."""
    registry = load_registry()
    kept = tuple(a for a in registry.agencies if service not in a.services)
    assert len(kept) < len(registry.agencies)  # the packaged registry does offer it
    return AgencyRegistry.model_validate({**registry.model_dump(), "agencies": kept})


async def _unmet(hub: Hub) -> list[NeedUnmet]:
    found = [s.event for s in await hub.store.read("nrm.evt.need.*.need.unmet")]
    assert all(isinstance(e, NeedUnmet) for e in found)
    return [e for e in found if isinstance(e, NeedUnmet)]


async def test_a_need_no_provider_offers_is_recorded_unmet_once(tmp_path: Path) -> None:
    hub = Hub(tmp_path, _without(Service.EDUCATION))
    case_id = await hub.identify(needs=frozenset({Service.LEGAL_AID, Service.EDUCATION}))
    await hub.deliver(hub.referral, "referral-on-identification")

    [unmet] = await _unmet(hub)
    assert unmet.need_id == need_id_for(case_id, Service.EDUCATION)
    assert (str(unmet.case_id), unmet.service, unmet.reason) == (
        case_id,
        Service.EDUCATION,
        UnmetReason.NO_PROVIDER,
    )
    assert (unmet.region, unmet.category) == (Region.OSH_CITY, ShelterCategory.WOMEN)
    assert (unmet.identifying_agency, unmet.coordinating_body) == (IDENTIFIER, COORDINATING_BODY)
    # The need that has a provider is referred as before; the unmet one is not.
    assert len(await hub.referral_events(referral_id_for(case_id, Service.LEGAL_AID))) == 1
    assert await hub.referral_events(referral_id_for(case_id, Service.EDUCATION)) == []
    # Ids and codes only: nothing of the person, not even sealed.
    text = unmet.model_dump_json()
    for canary in (CANARY_NAME, CANARY_PHONE, CANARY_NARRATIVE):
        assert canary not in text
    # Who the feed tells: the coordinating body and the identifying agency.
    assert addressees(unmet, []) == (COORDINATING_BODY, IDENTIFIER)

    # A redelivered identification records nothing new.
    await hub.deliver(hub.referral, "referral-on-identification")
    assert await _unmet(hub) == [unmet]


async def test_a_child_without_a_guardianship_office_has_guardianship_unmet(
    tmp_path: Path,
) -> None:
    hub = Hub(tmp_path, _without(Service.GUARDIANSHIP))
    case_id = await hub.identify(age=15, needs=frozenset({Service.LEGAL_AID}))
    await hub.deliver(hub.referral, "referral-on-identification")
    [unmet] = await _unmet(hub)
    assert (str(unmet.case_id), unmet.service) == (case_id, Service.GUARDIANSHIP)
    assert unmet.category is ShelterCategory.CHILDREN


async def test_a_fully_served_identification_records_no_unmet_need(hub: Hub) -> None:
    await hub.identify(age=15, needs=frozenset({Service.SHELTER, Service.LEGAL_AID}))
    await hub.deliver(hub.referral, "referral-on-identification")
    assert await _unmet(hub) == []


async def test_the_identifying_agency_is_told_every_answer_to_its_referrals(hub: Hub) -> None:
    case_id = await hub.identify(needs=frozenset({Service.LEGAL_AID}))
    await hub.deliver(hub.referral, "referral-on-identification")
    legal_ref = referral_id_for(case_id, Service.LEGAL_AID)
    accept = AcceptReferral(command_id=uuid.uuid4(), agency_id=LEGAL_AID, referral_id=legal_ref)
    await hub.referral.execute(accept)
    history = await hub.referral_events(legal_ref)
    accepted = history[-1]
    assert isinstance(accepted, ReferralAccepted)
    # The answer names only the provider; the referrer comes from the referral's request.
    assert addressees(accepted, history) == (LEGAL_AID, IDENTIFIER)
    assert addressees(accepted, []) == (LEGAL_AID,)


async def test_a_discharge_taken_before_its_admission_waits_for_it(hub: Hub) -> None:
    """Out of stream order (an admission retried after a failure, or taken again after a
    crash while the consumer went on): the discharge is refused for a retry, and once the
    admission is followed it completes the referral, as in order."""
    case_id = await placed_in_a_shelter(hub)
    shelter_ref = referral_id_for(case_id, Service.SHELTER)
    await hub.shelter.execute(
        DischargeFromShelter(
            command_id=uuid.uuid4(),
            agency_id=SHELTER,
            referral_id=shelter_ref,
            reason=DischargeReason.RETURNED_HOME,
        )
    )
    placements = await hub.store.read(*consumer("referral-on-placement").filter_subjects)
    admitted, discharged = (
        next(e for e in placements if isinstance(e.event, kind))
        for kind in (ShelterAdmitted, ShelterDischarged)
    )
    handle = hub.referral.event_handlers["referral-on-placement"]

    with pytest.raises(AdmissionNotYetFollowed):
        await handle(delivery_of(discharged))
    assert len(await hub.referral_events(shelter_ref)) == 1  # still only requested
    await handle(delivery_of(admitted))
    await handle(delivery_of(discharged))  # the retry
    events = await hub.referral_events(shelter_ref)
    assert [type(e) for e in events] == [ReferralRequested, ReferralAccepted, ReferralCompleted]


async def test_a_write_of_the_plan_that_fails_leaves_the_consumer_running(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One referral's write fails (a failover): the delivery fails, to be redelivered, and
    the consumer loop's task is not left looking stopped. On Python 3.11 a TaskGroup with a
    failed child left the caller marked as cancelling, and the loop, reading that as a stop
    (`stop_if_cancelled`), ended: no victim was referred again until a restart."""
    case_id = await hub.identify(needs=frozenset({Service.SHELTER, Service.LEGAL_AID}))
    legal_ref = referral_id_for(case_id, Service.LEGAL_AID)
    append = hub.store.append
    refused: list[str] = []

    async def fails_once(
        aggregate: str, aggregate_id: str, expected: int, envelopes: Sequence[Envelope]
    ) -> int:
        if aggregate_id == str(legal_ref) and not refused:
            refused.append(aggregate_id)
            raise AppendFailed("the stream did not answer")
        return await append(aggregate, aggregate_id, expected, envelopes)

    monkeypatch.setattr(hub.store, "append", fails_once)
    with pytest.raises(ExceptionGroup) as failed:
        await hub.deliver(hub.referral, "referral-on-identification")
    assert [type(e) for e in failed.value.exceptions] == [AppendFailed]
    this = asyncio.current_task()
    assert this is not None and this.cancelling() == 0
    # Redelivered: the shelter's referral, written the first time, is found by its cause.
    await hub.deliver(hub.referral, "referral-on-identification")
    assert len(await hub.referral_events(legal_ref)) == 1
    assert len(await hub.referral_events(referral_id_for(case_id, Service.SHELTER))) == 1


async def test_the_feeds_lanes_share_a_load_under_way_and_never_a_finished_one(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The feed's lanes (one per referral, side by side) mostly ask for the same case at the
    same moment: one read serves them all. A read already finished serves nobody: the next
    batch's events may be newer than it (docs/PERFORMANCE.md item 28)."""
    case_id = await hub.identify()
    feed = AgencyFeed(hub.referral)
    reads: list[tuple[str, str]] = []
    load = hub.store.load

    async def counted(aggregate: str, aggregate_id: str) -> Any:
        reads.append((aggregate, aggregate_id))
        await asyncio.sleep(0)  # still under way when the other lanes ask
        return await load(aggregate, aggregate_id)

    monkeypatch.setattr(hub.store, "load", counted)
    key = ("case", case_id)
    lanes = await asyncio.gather(*(feed._load(key) for _ in range(3)))
    assert reads == [key]
    assert {len(history.events) for history in lanes} == {2}  # identified, consent
    assert lanes[0] is lanes[1] is lanes[2]

    later = await feed._load(key)
    assert reads == [key, key]
    assert later.events == lanes[0].events
