"""Follow-ups and a child's consent through the services' registered handlers, on in-memory
ports (event store, KV buckets) and a clock the test moves: the identifier's
`followup.schedule` / `followup.record`, its projection of follow-ups due and the overdue
sweep; custody refusing a child's data on the child's own consent. No nats-server."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import pytest

from contracts.commands import (
    AcceptReferral,
    CloseCase,
    Consent,
    RecordConsent,
    RecordFollowUp,
    RegisterAgencyKey,
    ReopenCase,
    RequestAccess,
    ScheduleFollowUp,
    SubmitScreening,
)
from contracts.events import (
    CaseClosed,
    ConsentRecorded,
    FollowUpOverdue,
    FollowUpRecorded,
    FollowUpScheduled,
)
from contracts.public_key_sealing import (
    generate_private_key,
    intake_info,
    public_key_b64,
    read_private_key,
    seal_to,
)
from contracts.replies import (
    AccessDenied,
    AccessReleased,
    CommandAccepted,
    CommandRejection,
    ErrorCode,
)
from contracts.vocabulary import (
    AccessRefusal,
    CaseStatus,
    ClosureReason,
    DataPurpose,
    FollowUpOutcome,
    FollowUpPurpose,
    LegalBasis,
    ReopenReason,
    Service,
)
from services.agencies.registry import load_registry
from services.case.case import fold_case
from services.case.ids import followup_id_for_command, referral_id_for
from services.custody import service as custody
from services.identifier import followups
from services.identifier import service as identifier
from services.referral.service import ReferralService
from services.runtime.case_keys import create_hub_keys
from services.runtime.in_memory import InMemoryEventStore, InMemoryKeyValue
from services.runtime.messaging import Delivery, Runtime, ServiceHost
from services.runtime.service_table import consumer
from services.runtime.settings import Settings
from services.runtime.topology import (
    BLIND_INDEX_BUCKET,
    CASE_KEYS_BUCKET,
    COMMAND_IDS_BUCKET,
    FOLLOWUPS_DUE_BUCKET,
    REFERRAL_DEADLINES_BUCKET,
)
from tests.integration.hub_reads import CANARIES, screening

IDENTIFIER = "kg-health-osh"
OTHER_IDENTIFIER = "kg-ngo-osh-crisis-centre"
LEGAL_AID = "kg-ngo-osh-legal-clinic"  # the legal-aid provider in Osh
COORDINATING_BODY = "kg-coordinating-body"
NOWHERE = "nats://127.0.0.1:1"  # the hosts are never connected
START = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
TODAY = START.date()


class Hub:
    """The identifier, referral and custody services on one set of in-memory ports, with a
    clock the test sets."""

    def __init__(self, tmp_path: Path) -> None:
        settings = Settings(data_dir=tmp_path)
        create_hub_keys(settings)
        self.now = START
        self.store = InMemoryEventStore()
        buckets = (
            CASE_KEYS_BUCKET,
            BLIND_INDEX_BUCKET,
            COMMAND_IDS_BUCKET,
            REFERRAL_DEADLINES_BUCKET,
        )
        self.due = InMemoryKeyValue()
        self.runtime = Runtime(
            settings=settings,
            registry=load_registry(),
            store=self.store,
            clock=lambda: self.now,
            buckets={
                FOLLOWUPS_DUE_BUCKET: self.due,
                **{name: InMemoryKeyValue() for name in buckets},
            },
        )
        self.identifier = ServiceHost("identifier", self.runtime, NOWHERE)
        identifier.register(self.identifier)
        self.referral = ServiceHost("referral", self.runtime, NOWHERE)
        ReferralService(self.referral).register()
        self.custody = ServiceHost("custody", self.runtime, NOWHERE)
        custody.register(self.custody)

    async def deliver(self, host: ServiceHost, durable: str) -> None:
        """Every stored event on `durable`'s filter to its handler, in stream order."""
        for stored in await self.store.read(*consumer(durable).filter_subjects):
            envelope = stored.envelope
            await host.event_handlers[durable](
                Delivery(envelope, stored.event, envelope.to_bytes(), stored.stream_sequence)
            )

    async def project(self) -> None:
        await self.deliver(self.identifier, followups.FOLLOWUPS_DURABLE)

    async def identify(self, **changes: Any) -> str:
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

    async def case_events(self, case_id: str) -> list[Any]:
        return [e.event for e in (await self.store.load("case", case_id)).events]

    async def status(self, case_id: str) -> CaseStatus:
        case = fold_case(await self.case_events(case_id))
        assert case is not None
        return case.status

    async def rejected(self, host: ServiceHost, command: Any) -> list[tuple[str, ErrorCode]]:
        with pytest.raises(CommandRejection) as refused:
            await host.execute(command)
        return [(e.field, e.code) for e in refused.value.errors]


@pytest.fixture
def hub(tmp_path: Path) -> Hub:
    return Hub(tmp_path)


def schedule(case_id: str, by: str = IDENTIFIER, in_days: int = 7) -> ScheduleFollowUp:
    return ScheduleFollowUp(
        command_id=uuid.uuid4(),
        agency_id=by,
        case_id=case_id,
        due_on=TODAY + dt.timedelta(days=in_days),
        purpose=FollowUpPurpose.POST_DISCHARGE,
    )


def record(case_id: str, followup_id: uuid.UUID, by: str = IDENTIFIER) -> RecordFollowUp:
    return RecordFollowUp(
        command_id=uuid.uuid4(),
        agency_id=by,
        case_id=case_id,
        followup_id=followup_id,
        outcome=FollowUpOutcome.IN_CONTACT_STABLE,
    )


async def test_a_follow_up_is_scheduled_and_recorded_and_a_retry_writes_nothing(
    hub: Hub,
) -> None:
    case_id = await hub.identify(needs=frozenset())
    command = schedule(case_id)
    _, first = await hub.identifier.execute(command)
    _, again = await hub.identifier.execute(command)
    assert again.duplicate and again.event_ids == first.event_ids
    followup_id = followup_id_for_command(command.command_id)
    scheduled = (await hub.case_events(case_id))[-1]
    assert isinstance(scheduled, FollowUpScheduled)
    assert (scheduled.followup_id, scheduled.scheduled_by) == (followup_id, IDENTIFIER)
    assert (scheduled.due_on, scheduled.recorded_at) == (command.due_on, START)
    assert await hub.status(case_id) is CaseStatus.FOLLOW_UP
    await hub.project()
    assert await hub.due.keys() == [f"{case_id}.{followup_id}"]

    recording = record(case_id, followup_id)
    _, recorded = await hub.identifier.execute(recording)
    _, recorded_again = await hub.identifier.execute(recording)
    assert recorded_again.duplicate and recorded_again.event_ids == recorded.event_ids
    done = (await hub.case_events(case_id))[-1]
    assert isinstance(done, FollowUpRecorded) and done.recorded_by == IDENTIFIER
    assert await hub.status(case_id) is CaseStatus.ACTIVE
    await hub.project()
    assert await hub.due.keys() == []
    # A second record of the same follow-up, under a new command id, is refused.
    assert await hub.rejected(hub.identifier, record(case_id, followup_id)) == [
        ("followup_id", ErrorCode.INVALID_STATE)
    ]
    # A reused command id with another body conflicts.
    other = command.model_copy(update={"purpose": FollowUpPurpose.SAFETY_CHECK})
    assert await hub.rejected(hub.identifier, other) == [("command_id", ErrorCode.CONFLICT)]
    # Ids, codes and dates only.
    stored = b"".join(e.envelope.to_bytes() for e in await hub.store.read("nrm.evt.case.>"))
    assert not any(canary.encode() in stored for canary in CANARIES)


async def test_a_provider_follows_up_only_a_case_it_took_on(hub: Hub) -> None:
    case_id = await hub.identify(needs=frozenset({Service.LEGAL_AID}))
    await hub.deliver(hub.referral, "referral-on-identification")
    before = await hub.case_events(case_id)
    # Requested, not yet accepted: the provider has not taken the case on.
    assert await hub.rejected(hub.identifier, schedule(case_id, LEGAL_AID)) == [
        ("agency_id", ErrorCode.NOT_AUTHORISED)
    ]
    # Another agency's case: refused, whoever it is.
    assert await hub.rejected(hub.identifier, schedule(case_id, OTHER_IDENTIFIER)) == [
        ("agency_id", ErrorCode.NOT_AUTHORISED)
    ]
    assert await hub.case_events(case_id) == before
    accept = AcceptReferral(
        command_id=uuid.uuid4(),
        agency_id=LEGAL_AID,
        referral_id=referral_id_for(case_id, Service.LEGAL_AID),
    )
    await hub.referral.execute(accept)
    command = schedule(case_id, LEGAL_AID)
    await hub.identifier.execute(command)
    followup_id = followup_id_for_command(command.command_id)
    # The agency that scheduled it records it; another agency may not.
    assert await hub.rejected(hub.identifier, record(case_id, followup_id, OTHER_IDENTIFIER)) == [
        ("agency_id", ErrorCode.NOT_AUTHORISED)
    ]
    await hub.identifier.execute(record(case_id, followup_id, LEGAL_AID))
    events = (await hub.case_events(case_id))[-2:]
    assert [type(e) for e in events] == [FollowUpScheduled, FollowUpRecorded]
    assert events[0].scheduled_by == events[1].recorded_by == LEGAL_AID


async def test_refused_follow_up_commands_are_typed_and_write_nothing(hub: Hub) -> None:
    case_id = await hub.identify(needs=frozenset())
    before = await hub.case_events(case_id)
    assert await hub.rejected(hub.identifier, schedule(str(uuid.uuid4()))) == [
        ("case_id", ErrorCode.UNKNOWN_ID)
    ]
    assert await hub.rejected(hub.identifier, schedule(case_id, in_days=-1)) == [
        ("due_on", ErrorCode.INVALID_FIELD)
    ]
    assert await hub.rejected(hub.identifier, record(case_id, uuid.uuid4())) == [
        ("followup_id", ErrorCode.UNKNOWN_ID)
    ]
    assert await hub.case_events(case_id) == before
    await hub.identifier.execute(schedule(case_id, in_days=0))  # due today: allowed


async def test_an_overdue_follow_up_is_escalated_once_to_the_coordinating_body(hub: Hub) -> None:
    case_id = await hub.identify(needs=frozenset())
    command = schedule(case_id, in_days=1)
    await hub.identifier.execute(command)
    followup_id = followup_id_for_command(command.command_id)
    await hub.project()
    assert await followups.escalate_overdue(hub.runtime) == 0  # not yet due
    hub.now = START + dt.timedelta(days=1, hours=12)  # its due day, not over
    assert await followups.escalate_overdue(hub.runtime) == 0
    hub.now = START + dt.timedelta(days=2)
    assert await followups.escalate_overdue(hub.runtime) == 1
    overdue = (await hub.case_events(case_id))[-1]
    assert isinstance(overdue, FollowUpOverdue)
    assert (overdue.followup_id, overdue.due_on, overdue.escalated_to) == (
        followup_id,
        command.due_on,
        COORDINATING_BODY,
    )
    # A stale projection (a schedule redelivered after the escalation) is escalated once only.
    await hub.due.put(f"{case_id}.{followup_id}", b'{"due_on": "2026-12-02"}')
    assert await followups.escalate_overdue(hub.runtime) == 0
    assert len([e for e in await hub.case_events(case_id) if isinstance(e, FollowUpOverdue)]) == 1
    assert await hub.due.keys() == []
    # Escalated, it is still to be recorded: the case stays in follow-up until it is.
    assert await hub.status(case_id) is CaseStatus.FOLLOW_UP
    await hub.identifier.execute(record(case_id, followup_id, COORDINATING_BODY))
    assert await hub.status(case_id) is CaseStatus.ACTIVE


async def test_a_follow_up_whose_escalation_fails_is_kept_and_the_sweep_goes_on(
    hub: Hub,
) -> None:
    cases = [await hub.identify(needs=frozenset()) for _ in range(2)]
    for case_id in cases:
        await hub.identifier.execute(schedule(case_id, in_days=1))
    await hub.project()
    failing, other = cases
    append = hub.store.append

    async def append_failing(aggregate: str, aggregate_id: str, *args: Any) -> int:
        if aggregate_id == failing:
            raise TimeoutError  # the store did not answer in time
        return await append(aggregate, aggregate_id, *args)

    hub.store.append = append_failing  # type: ignore[method-assign]
    hub.now = START + dt.timedelta(days=2)
    assert await followups.escalate_overdue(hub.runtime) == 1
    assert isinstance((await hub.case_events(other))[-1], FollowUpOverdue)
    assert [k.partition(".")[0] for k in await hub.due.keys()] == [failing]  # kept
    hub.store.append = append  # type: ignore[method-assign]
    assert await followups.escalate_overdue(hub.runtime) == 1
    assert isinstance((await hub.case_events(failing))[-1], FollowUpOverdue)
    assert await hub.due.keys() == []


async def test_closing_cancels_pending_follow_ups_and_a_closed_case_takes_none(hub: Hub) -> None:
    case_id = await hub.identify(needs=frozenset())
    command = schedule(case_id, in_days=1)
    await hub.identifier.execute(command)
    followup_id = followup_id_for_command(command.command_id)
    await hub.project()
    close = CloseCase(
        command_id=uuid.uuid4(),
        agency_id=IDENTIFIER,
        case_id=case_id,
        reason=ClosureReason.TRANSFERRED_ABROAD,
    )
    await hub.identifier.execute(close)
    assert isinstance((await hub.case_events(case_id))[-1], CaseClosed)
    assert await hub.status(case_id) is CaseStatus.CLOSED_REFERRED
    await hub.project()
    assert await hub.due.keys() == []  # the closure dropped them
    closed = await hub.case_events(case_id)
    for refused in (schedule(case_id), record(case_id, followup_id)):
        assert await hub.rejected(hub.identifier, refused) == [("case_id", ErrorCode.INVALID_STATE)]
    hub.now = START + dt.timedelta(days=5)
    assert await followups.escalate_overdue(hub.runtime) == 0
    assert await hub.case_events(case_id) == closed
    # closed_referred is closed: it is reopened like any closed case, active again.
    reopen = ReopenCase(
        command_id=uuid.uuid4(),
        agency_id=IDENTIFIER,
        case_id=case_id,
        reason=ReopenReason.CONTACT_RESUMED,
    )
    await hub.identifier.execute(reopen)
    assert await hub.status(case_id) is CaseStatus.ACTIVE


# --- a child's consent -----------------------------------------------------------------------


async def test_custody_refuses_a_childs_data_on_own_consent_and_releases_on_a_guardians(
    hub: Hub,
) -> None:
    # The screening is accepted with the child's own (default: informed) consent: assistance
    # never depends on consent.
    case_id = await hub.identify(age=15, needs=frozenset(), consent=Consent())
    given = (await hub.case_events(case_id))[1]
    assert isinstance(given, ConsentRecorded) and given.legal_basis is LegalBasis.INFORMED_CONSENT
    agency_key = generate_private_key().public_key()
    register = RegisterAgencyKey(
        command_id=uuid.uuid4(),
        agency_id=COORDINATING_BODY,
        for_agency=IDENTIFIER,
        public_key=public_key_b64(agency_key),
    )
    await hub.custody.execute(register)

    def ask() -> RequestAccess:
        return RequestAccess(
            command_id=uuid.uuid4(),
            agency_id=IDENTIFIER,
            case_id=case_id,
            purpose=DataPurpose.ASSISTANCE,
        )

    denied = await hub.custody.execute(ask())
    assert isinstance(denied, AccessDenied)
    assert denied.reason is AccessRefusal.GUARDIAN_CONSENT_REQUIRED

    def consent(basis: LegalBasis) -> RecordConsent:
        return RecordConsent(
            command_id=uuid.uuid4(),
            agency_id=IDENTIFIER,
            case_id=case_id,
            given_on=TODAY,
            consent=Consent(legal_basis=basis),
        )

    before = await hub.case_events(case_id)
    assert await hub.rejected(hub.identifier, consent(LegalBasis.INFORMED_CONSENT)) == [
        ("consent.legal_basis", ErrorCode.INVALID_FIELD)
    ]
    assert await hub.case_events(case_id) == before
    await hub.identifier.execute(consent(LegalBasis.GUARDIAN_CONSENT))
    released = await hub.custody.execute(ask())
    assert isinstance(released, AccessReleased)
