"""The case plan as the referral service runs it, on in-memory ports: a declined referral is
re-referred by the hub or its need recorded unmet, the owner re-refers and adds needs, the
coordinating body reassigns, a case closes naming the referrals to revoke, custody and the
identifier find later attempts, a referral waiting too long is escalated. Consumers are
driven by `Hub.deliver` (tests/unit/test_referral_service_in_memory.py)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from contracts.commands import (
    AddNeed,
    CloseCase,
    DeclineReferral,
    DischargeFromShelter,
    ReassignReferral,
    ReferNeed,
    RegisterShelter,
    RemoveNeed,
    RevokeReferral,
    SubmitScreening,
)
from contracts.envelope import Envelope, event_from_bytes, unwrap_event
from contracts.events import (
    CaseClosed,
    NeedReferred,
    NeedUnmet,
    ReferralAccepted,
    ReferralEscalated,
    ReferralRequested,
    ReferralRevoked,
)
from contracts.public_key_sealing import intake_info, read_private_key, seal_to
from contracts.replies import CommandAccepted, CommandRejection, ErrorCode
from contracts.vocabulary import (
    ClosureReason,
    DeclineReason,
    DischargeReason,
    EscalationCause,
    NeedRemovalReason,
    ReassignReason,
    Region,
    RevokeReason,
    Service,
    Sex,
    ShelterCategory,
    UnmetReason,
)
from services.case.ids import need_id_for, referral_id_for, referral_id_for_attempt
from services.case.needs import NeedStatus
from services.case.plan_reader import read_case_plan
from services.runtime.settings import Settings
from tests.integration.hub_reads import screening
from tests.unit.test_referral_service_in_memory import COORDINATING_BODY, IDENTIFIER, LEGAL_AID, Hub

CHUY = "kg-labour-inspectorate-chuy"
MENS_SHELTER = "kg-ngo-bishkek-mens-shelter"
BISHKEK_LEGAL_AID = "kg-legal-aid-bishkek"
OTHER = "kg-mia-osh"


@pytest.fixture
def hub(tmp_path: Path) -> Hub:
    return Hub(tmp_path)


async def identify(hub: Hub, agency: str = IDENTIFIER, **changes: Any) -> str:
    """A screening by `agency`, sealed as the client seals it, with `region` etc. changed."""
    region = changes.pop("region", Region.OSH_CITY)
    interview = screening(agency, **changes).model_copy(update={"region": region})
    public = read_private_key(hub.runtime.settings.intake_private_key_file).public_key()
    info = intake_info(str(interview.command_id), interview.agency_id)
    clear = interview.personal_data.model_dump_json(exclude_none=True).encode()
    facts = interview.model_dump(exclude={"personal_data"})
    command = SubmitScreening.model_validate(
        {**facts, "personal_data": seal_to(public, info, clear)}
    )
    reply = await hub.identifier.execute(command)
    assert isinstance(reply, CommandAccepted) and reply.aggregate_id is not None
    await hub.deliver(hub.referral, "referral-on-identification")
    return reply.aggregate_id


async def settle(hub: Hub) -> None:
    """Run the plan's consumers until nothing new is written (each delivery is idempotent)."""
    for _ in range(5):
        before = len(await hub.store.read("nrm.evt.>"))
        for durable in ("referral-on-need", "referral-on-decline", "referral-on-close"):
            await hub.deliver(hub.referral, durable)
        await hub.deliver(hub.shelter, "shelter-on-referral")
        await hub.deliver(hub.referral, "referral-on-placement")
        if len(await hub.store.read("nrm.evt.>")) == before:
            return


def decline(by: str, referral_id: uuid.UUID, reason: DeclineReason) -> DeclineReferral:
    return DeclineReferral(
        command_id=uuid.uuid4(), agency_id=by, referral_id=referral_id, reason=reason
    )


def rejected(error: pytest.ExceptionInfo[CommandRejection]) -> list[tuple[str, ErrorCode]]:
    return [(e.field, e.code) for e in error.value.errors]


async def test_a_declined_referral_is_re_referred_to_the_next_provider(hub: Hub) -> None:
    case_id = await identify(hub, needs=frozenset({Service.LEGAL_AID}))
    first = referral_id_for(case_id, Service.LEGAL_AID)
    await hub.referral.execute(decline(LEGAL_AID, first, DeclineReason.OUTSIDE_MANDATE))
    await settle(hub)
    second = referral_id_for_attempt(case_id, Service.LEGAL_AID, 1)
    [requested] = await hub.referral_events(second)
    assert isinstance(requested, ReferralRequested)
    assert (requested.provider_id, requested.attempt, requested.referrer_id) == (
        BISHKEK_LEGAL_AID,
        1,
        IDENTIFIER,
    )
    [order] = [e.event for e in await hub.store.read("nrm.evt.need.*.need.referred")]
    assert isinstance(order, NeedReferred) and order.referred_by == "hub"
    # The last provider declines too: nobody is left, the need is unmet (not for capacity).
    await hub.referral.execute(decline(BISHKEK_LEGAL_AID, second, DeclineReason.OUTSIDE_MANDATE))
    await settle(hub)
    [unmet] = [e.event for e in await hub.store.read("nrm.evt.need.*.need.unmet")]
    assert isinstance(unmet, NeedUnmet) and unmet.reason is UnmetReason.ALL_DECLINED
    plan = await read_case_plan(hub.store, case_id)
    need = plan.need(Service.LEGAL_AID)
    assert need is not None and need.status is NeedStatus.UNMET
    assert need.declined_by == {LEGAL_AID, BISHKEK_LEGAL_AID}
    # Redelivered declines change nothing.
    everything = await hub.store.read("nrm.evt.>")
    await settle(hub)
    assert await hub.store.read("nrm.evt.>") == everything


async def test_a_man_in_chuy_waits_for_a_bed_then_is_re_referred_by_his_owner(hub: Hub) -> None:
    register = RegisterShelter(
        command_id=uuid.uuid4(), agency_id=MENS_SHELTER, capacity={ShelterCategory.MEN: 1}
    )
    await hub.shelter.execute(register)
    resident = await identify(hub, CHUY, sex=Sex.MALE, needs=frozenset({Service.SHELTER}))
    await settle(hub)
    case_id = await identify(
        hub, CHUY, region=Region.CHUY, sex=Sex.MALE, needs=frozenset({Service.SHELTER})
    )
    await settle(hub)
    first = referral_id_for(case_id, Service.SHELTER)
    [requested, waitlisted] = await hub.referral_events(first)
    assert isinstance(requested, ReferralRequested) and requested.provider_id == MENS_SHELTER
    assert waitlisted.NAME == "referral.waitlisted"

    await hub.referral.execute(decline(MENS_SHELTER, first, DeclineReason.NO_CAPACITY))
    await settle(hub)
    # He left the waiting list; the only men's shelter declined for capacity: unmet.
    [left] = [e.event for e in await hub.store.read("nrm.evt.shelter.*.shelter.waitlist_left")]
    assert left.referral_id == first  # type: ignore[attr-defined]
    [unmet] = [e.event for e in await hub.store.read("nrm.evt.need.*.need.unmet")]
    assert isinstance(unmet, NeedUnmet) and unmet.reason is UnmetReason.NO_CAPACITY
    assert unmet.region is Region.CHUY and unmet.category is ShelterCategory.MEN

    # A bed is free: the first resident leaves; he is not admitted (no longer waiting).
    discharge = DischargeFromShelter(
        command_id=uuid.uuid4(),
        agency_id=MENS_SHELTER,
        referral_id=referral_id_for(resident, Service.SHELTER),
        reason=DischargeReason.RETURNED_HOME,
    )
    await hub.shelter.execute(discharge)
    await settle(hub)
    assert [e.event for e in await hub.store.read("nrm.evt.shelter.*.shelter.admitted")][
        -1
    ].referral_id != first  # type: ignore[attr-defined]

    refer = ReferNeed(
        command_id=uuid.uuid4(),
        agency_id=CHUY,
        case_id=uuid.UUID(case_id),
        service=Service.SHELTER,
        provider_id=MENS_SHELTER,
    )
    with pytest.raises(CommandRejection) as by_another:
        await hub.referral.execute(
            refer.model_copy(update={"agency_id": OTHER, "command_id": uuid.uuid4()})
        )
    assert rejected(by_another) == [("agency_id", ErrorCode.NOT_AUTHORISED)]
    await hub.referral.execute(refer)
    written = await hub.store.read("nrm.evt.>")
    await hub.referral.execute(refer)  # a retry writes nothing
    assert await hub.store.read("nrm.evt.>") == written
    await settle(hub)
    second = referral_id_for_attempt(case_id, Service.SHELTER, 1)
    events = await hub.referral_events(second)
    assert isinstance(events[0], ReferralRequested) and events[0].attempt == 1
    assert isinstance(events[-1], ReferralAccepted)  # admitted
    need = (await read_case_plan(hub.store, case_id)).need(Service.SHELTER)
    assert need is not None and need.status is NeedStatus.BEING_SERVED

    # The need is being served: re-referring it is refused; once met, "the need is met".
    again = refer.model_copy(update={"command_id": uuid.uuid4()})
    with pytest.raises(CommandRejection) as active:
        await hub.referral.execute(again)
    assert rejected(active) == [("service", ErrorCode.INVALID_STATE)]
    done = DischargeFromShelter(
        command_id=uuid.uuid4(),
        agency_id=MENS_SHELTER,
        referral_id=second,
        reason=DischargeReason.REHABILITATION_COMPLETED,
    )
    await hub.shelter.execute(done)
    await settle(hub)
    with pytest.raises(CommandRejection) as met:
        await hub.referral.execute(again.model_copy(update={"command_id": uuid.uuid4()}))
    assert [(e.field, e.code, e.reason) for e in met.value.errors] == [
        ("service", ErrorCode.INVALID_STATE, "the need is met")
    ]


async def test_adding_and_removing_needs(hub: Hub) -> None:
    case_id = await identify(hub, needs=frozenset({Service.LEGAL_AID}))
    add = AddNeed(
        command_id=uuid.uuid4(),
        agency_id=IDENTIFIER,
        case_id=uuid.UUID(case_id),
        service=Service.PSYCHOLOGICAL,
    )
    reply = await hub.referral.execute(add)
    assert isinstance(reply, tuple)
    await settle(hub)
    [requested] = await hub.referral_events(referral_id_for(case_id, Service.PSYCHOLOGICAL))
    assert isinstance(requested, ReferralRequested) and requested.attempt == 0
    with pytest.raises(CommandRejection) as twice:
        await hub.referral.execute(add.model_copy(update={"command_id": uuid.uuid4()}))
    assert rejected(twice) == [("service", ErrorCode.INVALID_STATE)]
    remove = RemoveNeed(
        command_id=uuid.uuid4(),
        agency_id=IDENTIFIER,
        case_id=uuid.UUID(case_id),
        service=Service.PSYCHOLOGICAL,
        reason=NeedRemovalReason.NOT_NEEDED,
    )
    with pytest.raises(CommandRejection) as active:
        await hub.referral.execute(remove)
    assert rejected(active) == [("service", ErrorCode.INVALID_STATE)]
    unknown = add.model_copy(update={"command_id": uuid.uuid4(), "case_id": uuid.uuid4()})
    with pytest.raises(CommandRejection) as nothing:
        await hub.referral.execute(unknown)
    assert rejected(nothing) == [("case_id", ErrorCode.UNKNOWN_ID)]


async def test_the_coordinating_body_reassigns_and_the_owner_may_revoke(hub: Hub) -> None:
    case_id = await identify(hub, needs=frozenset({Service.LEGAL_AID}))
    first = referral_id_for(case_id, Service.LEGAL_AID)
    reassign = ReassignReferral(
        command_id=uuid.uuid4(),
        agency_id=IDENTIFIER,
        referral_id=first,
        reason=ReassignReason.CLOSER_PROVIDER,
    )
    with pytest.raises(CommandRejection) as not_body:
        await hub.referral.execute(reassign)
    assert rejected(not_body) == [("agency_id", ErrorCode.NOT_AUTHORISED)]
    by_body = reassign.model_copy(
        update={"agency_id": COORDINATING_BODY, "command_id": uuid.uuid4()}
    )
    await hub.referral.execute(by_body)
    written = await hub.store.read("nrm.evt.>")
    await hub.referral.execute(by_body)  # a retry writes nothing
    assert await hub.store.read("nrm.evt.>") == written
    await settle(hub)
    revoked = (await hub.referral_events(first))[-1]
    assert isinstance(revoked, ReferralRevoked) and revoked.reason is RevokeReason.REASSIGNED
    second = referral_id_for_attempt(case_id, Service.LEGAL_AID, 1)
    [moved] = await hub.referral_events(second)
    assert isinstance(moved, ReferralRequested) and moved.provider_id == BISHKEK_LEGAL_AID

    # The owner (here the identifying agency) and the coordinating body may revoke.
    revoke = RevokeReferral(
        command_id=uuid.uuid4(),
        agency_id=COORDINATING_BODY,
        referral_id=second,
        reason=RevokeReason.NEED_MET_ELSEWHERE,
    )
    await hub.referral.execute(revoke)
    need = (await read_case_plan(hub.store, case_id)).need(Service.LEGAL_AID)
    assert need is not None and need.status is NeedStatus.OPEN  # no automatic re-referral
    await settle(hub)
    assert len(await hub.store.read("nrm.evt.need.*.need.referred")) == 1


async def test_a_case_closes_naming_its_active_referrals_which_are_then_revoked(hub: Hub) -> None:
    case_id = await identify(hub, needs=frozenset({Service.LEGAL_AID}))
    first = referral_id_for(case_id, Service.LEGAL_AID)
    await hub.referral.execute(decline(LEGAL_AID, first, DeclineReason.OUTSIDE_MANDATE))
    await settle(hub)
    second = referral_id_for_attempt(case_id, Service.LEGAL_AID, 1)  # found via the need
    close = CloseCase(
        command_id=uuid.uuid4(),
        agency_id=IDENTIFIER,
        case_id=uuid.UUID(case_id),
        reason=ClosureReason.LOST_CONTACT,
    )
    with pytest.raises(CommandRejection) as still_active:
        await hub.identifier.execute(close)
    assert rejected(still_active) == [("case_id", ErrorCode.INVALID_STATE)]
    naming = close.model_copy(update={"command_id": uuid.uuid4(), "revoke_referrals": (second,)})
    await hub.identifier.execute(naming)
    [closed] = [e.event for e in await hub.store.read("nrm.evt.case.*.case.closed")]
    assert isinstance(closed, CaseClosed) and closed.revoked_referrals == (second,)
    await settle(hub)
    revoked = (await hub.referral_events(second))[-1]
    assert isinstance(revoked, ReferralRevoked) and revoked.reason is RevokeReason.CASE_CLOSED
    assert revoked.revoked_by == IDENTIFIER
    # Nothing more on a closed case: no re-referral, and need.refer is refused.
    refer = ReferNeed(
        command_id=uuid.uuid4(),
        agency_id=IDENTIFIER,
        case_id=uuid.UUID(case_id),
        service=Service.LEGAL_AID,
    )
    with pytest.raises(CommandRejection) as closed_case:
        await hub.referral.execute(refer)
    assert rejected(closed_case) == [("case_id", ErrorCode.INVALID_STATE)]


async def test_a_referral_waiting_too_long_is_escalated(tmp_path: Path) -> None:
    hub = Hub(tmp_path)
    hub.runtime.settings = Settings(data_dir=tmp_path, waitlist_escalation_seconds=60)
    register = RegisterShelter(
        command_id=uuid.uuid4(),
        agency_id="kg-ngo-osh-crisis-centre",
        capacity={ShelterCategory.WOMEN: 0},
    )
    await hub.shelter.execute(register)
    case_id = await identify(hub, needs=frozenset({Service.SHELTER}))
    await settle(hub)
    await hub.project_deadlines()
    first = referral_id_for(case_id, Service.SHELTER)
    watched = json.loads((await hub.deadlines.get(str(first))).value)
    assert watched["cause"] == EscalationCause.WAITLISTED_TOO_LONG.value
    due = dt.datetime.fromisoformat(watched["respond_by"])
    hub.runtime.clock = lambda: due - dt.timedelta(seconds=1)
    assert await hub.referrals.escalate_overdue() == 0
    hub.runtime.clock = lambda: due + dt.timedelta(seconds=1)
    assert await hub.referrals.escalate_overdue() == 1
    escalated = (await hub.referral_events(first))[-1]
    assert isinstance(escalated, ReferralEscalated)
    assert escalated.cause is EscalationCause.WAITLISTED_TOO_LONG
    assert escalated.escalated_to == COORDINATING_BODY
    assert await hub.referrals.escalate_overdue() == 0
    await hub.project_deadlines()
    assert await hub.deadlines.keys() == []
    assert need_id_for(case_id, Service.SHELTER)  # (the need aggregate is the case plan item)


async def test_every_event_the_hub_wrote_reads_alike_in_one_pass(hub: Hub) -> None:
    """`event_from_bytes` (the replays' one-pass read) gives what the general path gives, on
    everything a case's flow writes: sealed fields, consent, needs, referrals, beds."""
    await identify(hub, sex=Sex.MALE, region=Region.CHUY)
    await identify(hub)
    await settle(hub)
    written = await hub.store.read("nrm.evt.>")
    assert len({e.envelope.type for e in written}) >= 6
    for stored in written:
        raw = stored.envelope.to_bytes()
        assert event_from_bytes(raw) == unwrap_event(Envelope.from_bytes(raw)) == stored.event
