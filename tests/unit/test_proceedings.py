"""Criminal proceedings linked to cases: the identifier's `proceeding.*` handlers on in-memory
ports (services/identifier/proceedings.py), their pure rules (proceeding_rules.py) and the
fold (services/case/proceedings.py). No nats-server."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import pytest

from contracts.commands import (
    BringCharges,
    EraseCase,
    FileComplaint,
    OpenInvestigation,
    RecordCourtDecision,
    RecordVictimParticipation,
    SubmitScreening,
)
from contracts.events import (
    ChargesBrought,
    ComplaintFiled,
    CourtDecisionRecorded,
    InvestigationOpened,
    VictimParticipationRecorded,
)
from contracts.public_key_sealing import intake_info, read_private_key, seal_to
from contracts.replies import CommandAccepted, CommandRejection, ErrorCode
from contracts.vocabulary import (
    CourtOutcome,
    CriminalArticle,
    ErasureReason,
    SentenceBand,
    VictimParticipation,
)
from services.agencies.registry import load_registry
from services.case.ids import proceeding_id_for_command
from services.case.proceedings import fold_proceeding
from services.identifier import service as identifier
from services.runtime.case_keys import create_hub_keys
from services.runtime.in_memory import InMemoryEventStore, InMemoryKeyValue
from services.runtime.messaging import Runtime, ServiceHost
from services.runtime.settings import Settings
from services.runtime.topology import (
    BLIND_INDEX_BUCKET,
    CASE_KEYS_BUCKET,
    COMMAND_IDS_BUCKET,
    FOLLOWUPS_DUE_BUCKET,
)
from tests.integration.hub_reads import CANARIES, screening

IDENTIFIER = "kg-health-osh"
NGO = "kg-ngo-osh-legal-clinic"
OMBUDSPERSON = "kg-ombudsperson"
POLICE = "kg-mia-osh"
PROSECUTOR = "kg-prosecutor-general"
COORDINATING_BODY = "kg-coordinating-body"
NOWHERE = "nats://127.0.0.1:1"
NOW = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
DAY = dt.date(2026, 6, 1)


class Hub:
    def __init__(self, tmp_path: Path) -> None:
        settings = Settings(data_dir=tmp_path)
        create_hub_keys(settings)
        self.store = InMemoryEventStore()
        buckets = (CASE_KEYS_BUCKET, BLIND_INDEX_BUCKET, COMMAND_IDS_BUCKET, FOLLOWUPS_DUE_BUCKET)
        self.runtime = Runtime(
            settings=settings,
            registry=load_registry(),
            store=self.store,
            clock=lambda: NOW,
            buckets={name: InMemoryKeyValue() for name in buckets},
        )
        self.host = ServiceHost("identifier", self.runtime, NOWHERE)
        identifier.register(self.host)

    async def identify(self) -> uuid.UUID:
        interview = screening(IDENTIFIER)
        public = read_private_key(self.runtime.settings.intake_private_key_file).public_key()
        info = intake_info(str(interview.command_id), interview.agency_id)
        clear = interview.personal_data.model_dump_json(exclude_none=True).encode()
        facts = interview.model_dump(exclude={"personal_data"})
        command = SubmitScreening.model_validate(
            {**facts, "personal_data": seal_to(public, info, clear)}
        )
        reply = await self.host.execute(command)
        assert isinstance(reply, CommandAccepted)
        return uuid.UUID(reply.aggregate_id)

    async def send(self, command: Any) -> tuple[str, Any]:
        result = await self.host.execute(command)
        assert isinstance(result, tuple)
        return result

    async def rejected(self, command: Any) -> list[tuple[str, ErrorCode]]:
        with pytest.raises(CommandRejection) as refused:
            await self.host.execute(command)
        return [(e.field, e.code) for e in refused.value.errors]

    async def events(self, proceeding_id: str) -> list[Any]:
        return [e.event for e in (await self.store.load("proceeding", proceeding_id)).events]


@pytest.fixture
def hub(tmp_path: Path) -> Hub:
    return Hub(tmp_path)


def _id() -> uuid.UUID:
    return uuid.uuid4()


def complaint(case_ids: set[uuid.UUID], by: str = NGO, on: dt.date = DAY) -> FileComplaint:
    return FileComplaint(command_id=_id(), agency_id=by, case_ids=frozenset(case_ids), filed_on=on)


def investigation(
    proceeding_id: str | None = None,
    case_ids: set[uuid.UUID] | None = None,
    by: str = POLICE,
    on: dt.date = DAY,
) -> OpenInvestigation:
    return OpenInvestigation(
        command_id=_id(),
        agency_id=by,
        proceeding_id=proceeding_id,
        case_ids=frozenset(case_ids or ()),
        article=CriminalArticle.ART_166,
        opened_on=on,
    )


def charges(proceeding_id: str, by: str = PROSECUTOR, on: dt.date = DAY) -> BringCharges:
    return BringCharges(
        command_id=_id(),
        agency_id=by,
        proceeding_id=proceeding_id,
        article=CriminalArticle.ART_166,
        defendants=2,
        charged_on=on,
    )


def decision(proceeding_id: str, by: str = PROSECUTOR, **changes: Any) -> RecordCourtDecision:
    fields: dict[str, Any] = {
        "outcome": CourtOutcome.CONVICTION,
        "sentence": SentenceBand.FROM_3_TO_8_YEARS,
        "decided_on": DAY,
        **changes,
    }
    return RecordCourtDecision(
        command_id=_id(), agency_id=by, proceeding_id=proceeding_id, **fields
    )


async def test_a_proceeding_from_complaint_to_conviction_names_cases_by_id_only(
    hub: Hub,
) -> None:
    case, other_case = await hub.identify(), await hub.identify()
    filing = complaint({case})
    proceeding_id, filed = await hub.send(filing)
    assert proceeding_id == str(proceeding_id_for_command(filing.command_id))
    _, again = await hub.send(filing)  # a retry writes nothing
    assert again.duplicate and again.event_ids == filed.event_ids
    await hub.send(investigation(proceeding_id, {case, other_case}, on=DAY.replace(day=5)))
    await hub.send(charges(proceeding_id, by=POLICE, on=DAY.replace(day=20)))
    participation = RecordVictimParticipation(
        command_id=_id(),
        agency_id=PROSECUTOR,
        proceeding_id=proceeding_id,
        case_id=case,
        participation=frozenset({VictimParticipation.TESTIFIED_BY_VIDEO}),
        recorded_on=DAY.replace(day=25),
    )
    await hub.send(participation)
    await hub.send(decision(proceeding_id, decided_on=DAY.replace(day=28)))
    events = await hub.events(proceeding_id)
    assert [type(e) for e in events] == [
        ComplaintFiled,
        InvestigationOpened,
        ChargesBrought,
        VictimParticipationRecorded,
        CourtDecisionRecorded,
    ]
    filed_event = events[0]
    assert isinstance(filed_event, ComplaintFiled)
    assert filed_event.on_behalf_of_victim and filed_event.filer_kind == "ngo"
    opened = events[1]
    assert isinstance(opened, InvestigationOpened) and opened.case_ids == (other_case,)
    folded = fold_proceeding(events)
    assert folded is not None and folded.stage == "decided"
    assert folded.case_ids == {case, other_case}
    assert folded.participation[case] == {VictimParticipation.TESTIFIED_BY_VIDEO}
    decided = events[-1]
    assert isinstance(decided, CourtDecisionRecorded)
    assert decided.article is CriminalArticle.ART_166  # as charged
    # Ids, codes and dates only.
    stored = b"".join(e.envelope.to_bytes() for e in await hub.store.read("nrm.evt.proceeding.>"))
    assert not any(canary.encode() in stored for canary in CANARIES)


async def test_an_investigation_without_a_complaint_opens_a_proceeding(hub: Hub) -> None:
    case = await hub.identify()
    opening = investigation(None, {case}, by=PROSECUTOR)
    proceeding_id, first = await hub.send(opening)
    assert proceeding_id == str(proceeding_id_for_command(opening.command_id))
    _, again = await hub.send(opening)
    assert again.duplicate and again.event_ids == first.event_ids
    assert await hub.rejected(investigation(None, set())) == [("case_ids", ErrorCode.INVALID_FIELD)]
    # A second investigation of the same proceeding is refused.
    assert await hub.rejected(investigation(proceeding_id, {case})) == [
        ("proceeding_id", ErrorCode.INVALID_STATE)
    ]


@pytest.mark.parametrize(
    ("kind", "by"),
    [
        ("complaint", IDENTIFIER),  # a health agency files no complaint
        ("complaint", COORDINATING_BODY),
        ("investigation", NGO),
        ("investigation", OMBUDSPERSON),
        ("charges", NGO),
        ("decision", POLICE),  # internal affairs does not record the court's decision
        ("decision", NGO),
        ("participation", NGO),
    ],
)
async def test_who_may_record_what_follows_the_agency_kinds(hub: Hub, kind: str, by: str) -> None:
    case = await hub.identify()
    proceeding_id, _ = await hub.send(investigation(None, {case}))
    await hub.send(charges(proceeding_id))
    command: Any = {
        "complaint": lambda: complaint({case}, by=by),
        "investigation": lambda: investigation(None, {case}, by=by),
        "charges": lambda: charges(proceeding_id, by=by),
        "decision": lambda: decision(proceeding_id, by=by),
        "participation": lambda: RecordVictimParticipation(
            command_id=_id(),
            agency_id=by,
            proceeding_id=proceeding_id,
            case_id=case,
            participation=frozenset({VictimParticipation.TESTIFIED}),
            recorded_on=DAY,
        ),
    }[kind]()
    before = len(await hub.store.read("nrm.evt.proceeding.>"))
    assert await hub.rejected(command) == [("agency_id", ErrorCode.NOT_AUTHORISED)]
    assert len(await hub.store.read("nrm.evt.proceeding.>")) == before


async def test_the_ombudsperson_files_on_the_victims_behalf(hub: Hub) -> None:
    case = await hub.identify()
    proceeding_id, _ = await hub.send(complaint({case}, by=OMBUDSPERSON))
    police_id, _ = await hub.send(complaint({case}, by=POLICE))
    filed = (await hub.events(proceeding_id))[0]
    received = (await hub.events(police_id))[0]
    assert isinstance(filed, ComplaintFiled) and filed.on_behalf_of_victim
    assert isinstance(received, ComplaintFiled) and not received.on_behalf_of_victim


async def test_unknown_or_erased_cases_and_unknown_proceedings_are_refused(hub: Hub) -> None:
    case = await hub.identify()
    assert await hub.rejected(complaint({case, _id()})) == [("case_ids", ErrorCode.UNKNOWN_ID)]
    await hub.send(
        EraseCase(
            command_id=_id(),
            agency_id=IDENTIFIER,
            case_id=case,
            reason=ErasureReason.ERASURE_REQUEST,
        )
    )
    assert await hub.rejected(complaint({case})) == [("case_ids", ErrorCode.INVALID_STATE)]
    nowhere = str(_id())
    assert await hub.rejected(charges(nowhere)) == [("proceeding_id", ErrorCode.UNKNOWN_ID)]
    assert await hub.rejected(decision(nowhere)) == [("proceeding_id", ErrorCode.UNKNOWN_ID)]
    assert await hub.rejected(investigation(nowhere, set())) == [
        ("proceeding_id", ErrorCode.UNKNOWN_ID)
    ]
    assert not await hub.store.read("nrm.evt.proceeding.>")


async def test_stages_follow_in_order_and_dates_do_not_go_back(hub: Hub) -> None:
    case = await hub.identify()
    proceeding_id, _ = await hub.send(complaint({case}, on=DAY))
    # Charges before an investigation, a decision before charges.
    assert await hub.rejected(charges(proceeding_id)) == [
        ("proceeding_id", ErrorCode.INVALID_STATE)
    ]
    assert await hub.rejected(decision(proceeding_id)) == [
        ("proceeding_id", ErrorCode.INVALID_STATE)
    ]
    earlier = DAY - dt.timedelta(days=1)
    assert await hub.rejected(investigation(proceeding_id, on=earlier)) == [
        ("opened_on", ErrorCode.INVALID_FIELD)
    ]
    future = NOW.date() + dt.timedelta(days=1)
    assert await hub.rejected(complaint({case}, on=future)) == [
        ("filed_on", ErrorCode.INVALID_FIELD)
    ]
    await hub.send(investigation(proceeding_id, on=DAY))
    assert await hub.rejected(charges(proceeding_id, on=earlier)) == [
        ("charged_on", ErrorCode.INVALID_FIELD)
    ]
    await hub.send(charges(proceeding_id))
    assert await hub.rejected(charges(proceeding_id)) == [
        ("proceeding_id", ErrorCode.INVALID_STATE)
    ]
    # A participation is for one of the proceeding's cases.
    stranger = RecordVictimParticipation(
        command_id=_id(),
        agency_id=POLICE,
        proceeding_id=proceeding_id,
        case_id=_id(),
        participation=frozenset({VictimParticipation.TESTIFIED}),
        recorded_on=DAY,
    )
    assert await hub.rejected(stranger) == [("case_id", ErrorCode.UNKNOWN_ID)]
    await hub.send(decision(proceeding_id))
    assert await hub.rejected(decision(proceeding_id)) == [
        ("proceeding_id", ErrorCode.INVALID_STATE)
    ]


async def test_a_decision_names_its_article_and_a_sentence_only_with_a_conviction(
    hub: Hub,
) -> None:
    case = await hub.identify()
    proceeding_id, _ = await hub.send(investigation(None, {case}))
    await hub.send(charges(proceeding_id))
    assert await hub.rejected(decision(proceeding_id, outcome=CourtOutcome.RECLASSIFIED)) == [
        ("article", ErrorCode.INVALID_FIELD)
    ]
    assert await hub.rejected(decision(proceeding_id, article=CriminalArticle.ART_159)) == [
        ("article", ErrorCode.INVALID_FIELD)
    ]
    assert await hub.rejected(decision(proceeding_id, outcome=CourtOutcome.ACQUITTAL)) == [
        ("sentence", ErrorCode.INVALID_FIELD)
    ]
    await hub.send(
        decision(
            proceeding_id,
            outcome=CourtOutcome.RECLASSIFIED,
            article=CriminalArticle.ART_159,
            sentence=SentenceBand.UNDER_3_YEARS,
        )
    )
    decided = (await hub.events(proceeding_id))[-1]
    assert isinstance(decided, CourtDecisionRecorded)
    assert (decided.outcome, decided.article) == (
        CourtOutcome.RECLASSIFIED,
        CriminalArticle.ART_159,
    )


async def test_participation_already_recorded_writes_nothing_new(hub: Hub) -> None:
    case = await hub.identify()
    proceeding_id, _ = await hub.send(investigation(None, {case}))

    def participation(*forms: VictimParticipation) -> RecordVictimParticipation:
        return RecordVictimParticipation(
            command_id=_id(),
            agency_id=POLICE,
            proceeding_id=proceeding_id,
            case_id=case,
            participation=frozenset(forms),
            recorded_on=DAY,
        )

    _, first = await hub.send(
        participation(VictimParticipation.TESTIFIED, VictimParticipation.PROTECTION_MEASURES)
    )
    _, same = await hub.send(participation(VictimParticipation.TESTIFIED))
    assert first.event_ids and not same.event_ids
