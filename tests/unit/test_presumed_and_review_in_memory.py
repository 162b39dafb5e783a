"""Presumed victims and the review of a non-identification through the identifier's handlers
as registered, with the referral service's consumer, on in-memory ports (no nats-server).
See tests/unit/test_identifier_service_in_memory.py for the harness."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import pytest

from contracts.commands import (
    AssignIdentificationReview,
    CriteriaAnswers,
    DecideIdentificationReview,
    DecideScreening,
    RequestIdentificationReview,
)
from contracts.events import (
    CaseReviewAssigned,
    CaseReviewDecided,
    CaseReviewRequested,
    ConsentRecorded,
    ReferralRequested,
    VictimIdentified,
    VictimNotIdentified,
    VictimPresumed,
)
from contracts.replies import ErrorCode
from contracts.vocabulary import Act, Means, Purpose, ReviewGrounds, ReviewOutcome, Service
from services.agencies.registry import load_registry
from services.case.ids import referral_id_for, review_id_for_command
from services.identifier import service as identifier
from services.referral.service import ReferralService
from services.runtime.case_keys import create_hub_keys
from services.runtime.in_memory import InMemoryEventStore, InMemoryKeyValue
from services.runtime.messaging import Runtime, ServiceHost
from services.runtime.service_table import consumer
from services.runtime.settings import Settings
from services.runtime.topology import (
    BLIND_INDEX_BUCKET,
    CASE_KEYS_BUCKET,
    COMMAND_IDS_BUCKET,
    REFERRAL_DEADLINES_BUCKET,
)
from tests.integration.hub_reads import CANARIES, screening
from tests.unit.test_identifier_service_in_memory import (
    COORDINATING_BODY,
    IDENTIFIER,
    OTHER_IDENTIFIER,
    case_events,
    delivery,
    rejected,
    submit,
)

NOW = dt.datetime(2026, 11, 23, 9, 30, tzinfo=dt.UTC)
POLICE = "kg-mia-osh"
LEGAL_CLINIC = "kg-ngo-osh-legal-clinic"  # speaks for the person; does not identify
REVIEWER = "kg-social-osh"
MET = CriteriaAnswers(
    acts=frozenset({Act.RECRUITMENT}),
    means=frozenset({Means.DECEPTION}),
    purposes=frozenset({Purpose.FORCED_LABOUR}),
)
NEEDS = frozenset({Service.SHELTER, Service.MEDICAL, Service.LEGAL_AID})


@pytest.fixture
def runtime(tmp_path: Path) -> Runtime:
    settings = Settings(data_dir=tmp_path, identification_decision_days=14)
    create_hub_keys(settings)
    buckets = (CASE_KEYS_BUCKET, BLIND_INDEX_BUCKET, COMMAND_IDS_BUCKET, REFERRAL_DEADLINES_BUCKET)
    return Runtime(
        settings=settings,
        registry=load_registry(),
        clock=lambda: NOW,
        store=InMemoryEventStore(),
        buckets={name: InMemoryKeyValue() for name in buckets},
    )


@pytest.fixture
def host(runtime: Runtime) -> ServiceHost:
    host = ServiceHost("identifier", runtime, "nats://127.0.0.1:1")  # never connected
    identifier.register(host)
    return host


@pytest.fixture
def referral(runtime: Runtime) -> ServiceHost:
    host = ServiceHost("referral", runtime, "nats://127.0.0.1:1")
    ReferralService(host).register()
    return host


async def refer(runtime: Runtime, referral: ServiceHost) -> None:
    """The referral service's consumer, given every event its durable filters (redelivered
    ones included: each consumer run sees the whole stream again)."""
    assert runtime.store is not None
    handle = referral.event_handlers["referral-on-identification"]
    for stored in await runtime.store.read(*consumer("referral-on-identification").filter_subjects):
        await handle(delivery(stored))


async def referred(runtime: Runtime, case_id: str) -> dict[Service, int]:
    """Per service of the case: how many events its referral has."""
    assert runtime.store is not None
    found = {}
    for service in Service:
        history = await runtime.store.load("referral", str(referral_id_for(case_id, service)))
        if history.events:
            assert isinstance(history.events[0].event, ReferralRequested)
            found[service] = len(history.events)
    return found


def decide(case_id: str, by: str = IDENTIFIER, criteria: CriteriaAnswers = MET) -> DecideScreening:
    return DecideScreening(
        command_id=uuid.uuid4(), agency_id=by, case_id=case_id, criteria=criteria
    )


async def test_a_presumed_victim_gets_urgent_referrals_then_the_rest_when_identified(
    host: ServiceHost, runtime: Runtime, referral: ServiceHost
) -> None:
    interview = screening(IDENTIFIER, needs=NEEDS).model_copy(update={"presumed": True})
    reply = await submit(host, interview)
    case_id = reply.aggregate_id
    presumed, consent = await case_events(runtime, case_id)
    assert isinstance(presumed, VictimPresumed) and isinstance(consent, ConsentRecorded)
    assert presumed.decision_due == NOW + dt.timedelta(days=14)  # the setting
    await refer(runtime, referral)
    assert await referred(runtime, case_id) == {Service.SHELTER: 1, Service.MEDICAL: 1}

    # Nobody but the owner or the coordinating body decides.
    assert await rejected(host, decide(case_id, by=OTHER_IDENTIFIER)) == [
        ("agency_id", ErrorCode.NOT_AUTHORISED)
    ]
    command = decide(case_id)
    _, first = await host.execute(command)
    _, again = await host.execute(command)  # a retry: answered from the record
    assert again.duplicate and again.event_ids == first.event_ids
    events = await case_events(runtime, case_id)
    assert [type(e) for e in events] == [VictimPresumed, ConsentRecorded, VictimIdentified]
    identified = events[-1]
    assert identified.personal_data == presumed.personal_data  # copied, never opened
    # Decided once: a second decision is refused.
    assert await rejected(host, decide(case_id, by=COORDINATING_BODY)) == [
        ("case_id", ErrorCode.INVALID_STATE)
    ]

    # The identification brings legal aid; the urgent referrals are not made twice, even when
    # the presumption is delivered again.
    await refer(runtime, referral)
    await refer(runtime, referral)
    assert await referred(runtime, case_id) == {
        Service.SHELTER: 1,
        Service.MEDICAL: 1,
        Service.LEGAL_AID: 1,
    }
    assert runtime.store is not None
    stored = b"".join(e.envelope.to_bytes() for e in await runtime.store.read("nrm.evt.>"))
    assert not any(canary.encode() in stored for canary in CANARIES)


async def test_a_presumed_victim_decided_not_identified_keeps_her_urgent_referrals_only(
    host: ServiceHost, runtime: Runtime, referral: ServiceHost
) -> None:
    interview = screening(IDENTIFIER, needs=NEEDS).model_copy(update={"presumed": True})
    case_id = (await submit(host, interview)).aggregate_id
    await refer(runtime, referral)
    no_means = MET.model_copy(update={"means": frozenset()})
    await host.execute(decide(case_id, by=COORDINATING_BODY, criteria=no_means))
    assert isinstance((await case_events(runtime, case_id))[-1], VictimNotIdentified)
    await refer(runtime, referral)
    assert await referred(runtime, case_id) == {Service.SHELTER: 1, Service.MEDICAL: 1}


async def test_a_representative_s_review_turns_a_non_identification_into_an_identification(
    host: ServiceHost, runtime: Runtime, referral: ServiceHost
) -> None:
    interview = screening(IDENTIFIER, needs=NEEDS, means=frozenset())
    case_id = (await submit(host, interview)).aggregate_id
    assert isinstance((await case_events(runtime, case_id))[0], VictimNotIdentified)

    def ask(by: str) -> RequestIdentificationReview:
        return RequestIdentificationReview(
            command_id=uuid.uuid4(),
            agency_id=by,
            case_id=case_id,
            grounds=ReviewGrounds.INTERVIEW_CONDITIONS,
        )

    assert await rejected(host, ask(POLICE)) == [("agency_id", ErrorCode.NOT_AUTHORISED)]
    request = ask(LEGAL_CLINIC)
    _, asked = await host.execute(request)
    _, asked_again = await host.execute(request)
    assert asked_again.duplicate and asked_again.event_ids == asked.event_ids
    assert await rejected(host, ask(LEGAL_CLINIC)) == [("case_id", ErrorCode.INVALID_STATE)]
    review_id = review_id_for_command(request.command_id)

    assign = AssignIdentificationReview(
        command_id=uuid.uuid4(),
        agency_id=COORDINATING_BODY,
        case_id=case_id,
        review_id=review_id,
        to_agency=REVIEWER,
    )
    await host.execute(assign)
    overturn = DecideIdentificationReview(
        command_id=uuid.uuid4(),
        agency_id=REVIEWER,
        case_id=case_id,
        review_id=review_id,
        outcome=ReviewOutcome.OVERTURNED,
        criteria=MET,
        needs=frozenset({Service.LEGAL_AID, Service.PSYCHOLOGICAL}),
    )
    not_assigned = overturn.model_copy(
        update={"command_id": uuid.uuid4(), "agency_id": OTHER_IDENTIFIER}
    )
    assert await rejected(host, not_assigned) == [("agency_id", ErrorCode.NOT_AUTHORISED)]
    _, decided = await host.execute(overturn)
    before = await case_events(runtime, case_id)
    _, decided_again = await host.execute(overturn)
    assert decided_again.duplicate and decided_again.event_ids == decided.event_ids
    assert await case_events(runtime, case_id) == before

    events = before
    assert [type(e) for e in events] == [
        VictimNotIdentified,
        ConsentRecorded,
        CaseReviewRequested,
        CaseReviewAssigned,
        CaseReviewDecided,
        VictimIdentified,
    ]
    requested, decision, identified = events[2], events[4], events[5]
    assert requested.review_id == review_id and requested.requested_by == LEGAL_CLINIC
    assert requested.recorded_at == NOW
    assert decision.outcome is ReviewOutcome.OVERTURNED and decision.decided_by == REVIEWER
    assert identified.personal_data == events[0].personal_data
    # Identified now: no further review, and the referrals follow.
    assert await rejected(host, ask(LEGAL_CLINIC)) == [("case_id", ErrorCode.INVALID_STATE)]
    await refer(runtime, referral)
    assert await referred(runtime, case_id) == {Service.LEGAL_AID: 1, Service.PSYCHOLOGICAL: 1}
    unknown = overturn.model_copy(update={"command_id": uuid.uuid4(), "review_id": uuid.uuid4()})
    assert await rejected(host, unknown) == [("review_id", ErrorCode.UNKNOWN_ID)]
