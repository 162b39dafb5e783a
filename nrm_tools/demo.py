"""`nrm demo`: a day of the NRM taken from the seeds, run against a real hub.

An NGO crisis centre in Osh identifies a woman in forced labour who needs shelter and legal
aid; the Border Service in Batken identifies a 15-year-old girl (for a child the means
element is not required, and guardianship is notified); a man in forced labour fills the
only bed of the men's shelter, so the next man is wait-listed and admitted after a discharge;
a prosecution body's attempt to identify is refused; a screening without means is recorded
as not identified. A third man finds the men's shelter full: it declines, the hub finds no
other men's shelter and records the need as unmet; once a bed is free his case owner refers
him again and he is admitted; his case moves from the labour inspectorate to the social
development office, which follows him up after discharge, closes the case as reintegrated and
reopens it when he comes back. A woman waiting for a bed in Osh is on the coordinating body's
worklist, which reassigns her to a shelter in Bishkek with a free bed. The shelter opens
the first woman's name with its own key (it is entitled: her shelter referral); the police,
without her consent, are refused. The timeline prints as events arrive; the exit status is
0 only if every expected outcome happened. Personal data in the scenario is fictional and
never printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.js.api import DeliverPolicy

from contracts.commands import (
    AcceptCaseTransfer,
    AcceptReferral,
    CloseCase,
    CompleteReferral,
    CriteriaAnswers,
    DeclineReferral,
    DeliveredItem,
    DischargeFromShelter,
    PersonalData,
    ReassignReferral,
    RecordFollowUp,
    ReferNeed,
    RegisterShelter,
    ReopenCase,
    RequestCaseTransfer,
    ScheduleFollowUp,
    ScreeningInterview,
)
from contracts.envelope import Envelope
from contracts.public_key_sealing import generate_private_key
from contracts.subjects import EVENT_PREFIX, EVENTS_STREAM
from contracts.vocabulary import (
    Act,
    ClosureReason,
    DataPurpose,
    DeclineReason,
    DeliveryUnit,
    DischargeReason,
    FollowUpOutcome,
    FollowUpPurpose,
    FormOfExploitation,
    Means,
    PersonalField,
    Purpose,
    ReassignReason,
    Region,
    ReopenReason,
    Service,
    Sex,
    ShelterCategory,
    TransferReason,
)
from services.bootstrap import local_hub, running_services
from services.client import AccessRefusedError, AgencyClient, HubClient
from services.runtime.case_keys import create_hub_keys
from services.runtime.connection import connect_operator
from services.runtime.settings import Settings
from services.statistics.reader import replay
from services.statistics.tables import Query, count
from services.worklists.command import read_worklists
from services.worklists.projection import Worklist, rows

WAIT_SECONDS = 10.0
Match = Callable[[Envelope], bool]


@dataclass
class Timeline:
    """Every event the hub emits, printed as it arrives, and waited on by the checks."""

    started: float = field(default_factory=time.monotonic)
    events: list[Envelope] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def on_message(self, msg: Msg) -> None:
        envelope = Envelope.from_bytes(msg.data)
        self.events.append(envelope)
        print(f"  +{time.monotonic() - self.started:6.2f}s  {envelope.type:<26} {_facts(envelope)}")
        self.arrived.set()

    async def wait_for(self, match: Match) -> Envelope | None:
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            found = next((e for e in self.events if match(e)), None)
            remaining = deadline - time.monotonic()
            if found is not None or remaining <= 0:
                return found
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), remaining)


def _facts(envelope: Envelope) -> str:
    d = envelope.data
    short = (envelope.subject or "")[:8]
    keys = (
        "agency_id",
        "provider_id",
        "shelter_id",
        "service",
        "category",
        "region",
        "sex",
        "age_band",
        "position",
        "reason",
        "purpose",
        "purposes",
        "fields",
    )
    facts = " ".join(
        f"{k}={','.join(d[k]) if isinstance(d[k], list) else d[k]}"
        for k in keys
        if d.get(k) not in (None, "", [])
    )
    if "unmet_criteria" in d:
        facts += " unmet=" + ",".join(u["criterion"] for u in d["unmet_criteria"])
    return f"[{short}] {facts}"


def _is(event_type: str, **fields: Any) -> Match:
    return lambda e: e.type == event_type and all(e.data.get(k) == v for k, v in fields.items())


@dataclass
class Scenario:
    client: HubClient
    timeline: Timeline
    operator: Client  # the operators' connection: worklists and statistics read the stream
    failures: list[str] = field(default_factory=list)
    passed: int = 0

    def check(self, ok: bool, what: str) -> None:
        if ok:
            self.passed += 1
            print(f"  ok    {what}")
        else:
            self.failures.append(what)
            print(f"  FAIL  {what}")

    async def expect(self, what: str, match: Match) -> Envelope | None:
        found = await self.timeline.wait_for(match)
        self.check(found is not None, what)
        return found

    async def command(
        self,
        what: str,
        command: Any,
        status: str = "accepted",
        registering: AgencyClient | None = None,
    ) -> dict[str, Any]:
        if registering is None:
            reply = await self.client.send(command)
        else:
            reply = await self.client.register_agency_key(
                "kg-coordinating-body", registering.agency_id, registering.public_key
            )
        self.check(reply["status"] == status, f"{what}: {status}")
        return reply


def _screening(agency: str, region: Region, sex: Sex, age: int, **kw: Any) -> ScreeningInterview:
    return ScreeningInterview(
        command_id=uuid.uuid4(),
        agency_id=agency,
        interviewed_on=dt.date.today(),
        region=region,
        sex=sex,
        age=age,
        **kw,
    )


async def personal_data_access(s: Scenario, case: str | None) -> None:
    """The confidentiality SOP: the shelter the woman was referred to opens her name with its
    own key; a police unit she gave no consent to is refused, and both decisions are recorded."""
    print("Personal data: the Osh shelter opens the name; the Osh police are refused")
    shelter, police = [
        AgencyClient(await s.client.connection_for(agency), agency, generate_private_key())
        for agency in ("kg-ngo-osh-crisis-centre", "kg-mia-osh")
    ]
    for agency in (shelter, police):
        await s.command(
            f"the coordinating body registers {agency.agency_id}'s public key",
            None,
            registering=agency,
        )
    if case is None:
        s.check(False, "a case to open")
        return
    opened = await shelter.open_fields(uuid.UUID(case), DataPurpose.ASSISTANCE)
    s.check(
        opened.get(PersonalField.FULL_NAME) == "Demo Person One",
        "the shelter opens the name it is entitled to (it matches; names are never printed)",
    )
    s.check(
        PersonalField.ADDRESS not in opened and PersonalField.NARRATIVE not in opened,
        f"and only its referral's fields: {', '.join(sorted(opened))}",
    )
    try:
        await police.open_fields(uuid.UUID(case), DataPurpose.INVESTIGATION)
        s.check(False, "the police without consent are refused")
    except AccessRefusedError as refused:
        s.check(True, f"the police without consent are refused ({refused.reason})")
    await s.expect("the release is recorded", _is("access.granted", case_id=case))
    await s.expect("the refusal is recorded", _is("access.refused", case_id=case))


async def play(scenario: Scenario) -> None:
    s = scenario
    print("Shelters register their beds")
    for agency, beds in (
        ("kg-ngo-osh-crisis-centre", {ShelterCategory.WOMEN: 1, ShelterCategory.CHILDREN: 2}),
        ("kg-ngo-bishkek-crisis-centre", {ShelterCategory.WOMEN: 6, ShelterCategory.CHILDREN: 4}),
        ("kg-ngo-bishkek-mens-shelter", {ShelterCategory.MEN: 1}),
    ):
        await s.command(
            f"{agency} registers",
            RegisterShelter(command_id=uuid.uuid4(), agency_id=agency, capacity=beds),
        )

    print("An NGO in Osh identifies a woman in forced labour (shelter, legal aid)")
    woman = await s.command(
        "screening by kg-ngo-osh-crisis-centre",
        _screening(
            "kg-ngo-osh-crisis-centre",
            Region.OSH_CITY,
            Sex.FEMALE,
            34,
            citizenship="KG",
            country_of_exploitation="KG",
            criteria=CriteriaAnswers(
                acts={Act.RECRUITMENT},
                means={Means.DECEPTION, Means.DEBT_BONDAGE},
                purposes={Purpose.FORCED_LABOUR},
            ),
            forms_of_exploitation={FormOfExploitation.FORCED_LABOUR},
            needs={Service.SHELTER, Service.LEGAL_AID},
            personal_data=PersonalData(full_name="Demo Person One", phone="+996 000 000 001"),
        ),
    )
    case = woman.get("aggregate_id")
    await s.expect("woman identified", _is("victim.identified", case_id=case))
    legal = await s.expect(
        "legal aid referred to the Osh legal clinic",
        _is(
            "referral.requested",
            case_id=case,
            service="legal_aid",
            provider_id="kg-ngo-osh-legal-clinic",
        ),
    )
    await s.expect(
        "woman admitted to the Osh crisis centre",
        _is("shelter.admitted", case_id=case, shelter_id="kg-ngo-osh-crisis-centre"),
    )
    await personal_data_access(s, case)
    if legal is not None:
        referral_id = uuid.UUID(legal.data["referral_id"])
        await s.command(
            "legal clinic accepts",
            AcceptReferral(
                command_id=uuid.uuid4(),
                agency_id="kg-ngo-osh-legal-clinic",
                referral_id=referral_id,
            ),
        )
        await s.command(
            "legal clinic completes",
            CompleteReferral(
                command_id=uuid.uuid4(),
                agency_id="kg-ngo-osh-legal-clinic",
                referral_id=referral_id,
                delivered=(
                    DeliveredItem(
                        service=Service.LEGAL_AID, quantity=3, unit=DeliveryUnit.CONSULTATION
                    ),
                ),
            ),
        )
        await s.expect(
            "legal aid completed", _is("referral.completed", referral_id=str(referral_id))
        )

    print("The Border Service in Batken identifies a 15-year-old girl")
    girl = await s.command(
        "screening by kg-border-batken",
        _screening(
            "kg-border-batken",
            Region.BATKEN,
            Sex.FEMALE,
            15,
            citizenship="KG",
            country_of_exploitation="KZ",
            criteria=CriteriaAnswers(
                acts={Act.TRANSPORTATION}, purposes={Purpose.SEXUAL_EXPLOITATION}
            ),
            forms_of_exploitation={FormOfExploitation.SEX_TRAFFICKING},
            needs={Service.SHELTER, Service.MEDICAL},
            personal_data=PersonalData(
                full_name="Demo Person Two", date_of_birth=dt.date(2011, 3, 2)
            ),
        ),
    )
    child = girl.get("aggregate_id")
    await s.expect(
        "girl identified as a child without the means element",
        _is("victim.identified", case_id=child, is_child=True),
    )
    await s.expect(
        "guardianship notified in Batken",
        _is(
            "referral.requested",
            case_id=child,
            service="guardianship",
            provider_id="kg-social-batken",
        ),
    )
    await s.expect(
        "girl placed where children are accepted",
        _is("shelter.admitted", case_id=child, category="children"),
    )

    print("Two men in forced labour; the men's shelter has one bed")
    first = await s.command(
        "screening by kg-labour-inspectorate-chuy",
        _screening(
            "kg-labour-inspectorate-chuy",
            Region.CHUY,
            Sex.MALE,
            41,
            citizenship="KG",
            country_of_exploitation="KZ",
            criteria=CriteriaAnswers(
                acts={Act.RECRUITMENT, Act.TRANSPORTATION},
                means={Means.DOCUMENT_CONFISCATION},
                purposes={Purpose.FORCED_LABOUR},
            ),
            forms_of_exploitation={FormOfExploitation.FORCED_LABOUR},
            needs={Service.SHELTER},
            personal_data=PersonalData(full_name="Demo Person Three"),
        ),
    )
    admitted = await s.expect(
        "first man admitted",
        _is("shelter.admitted", case_id=first.get("aggregate_id"), category="men"),
    )
    second = await s.command(
        "screening by kg-mia-bishkek",
        _screening(
            "kg-mia-bishkek",
            Region.BISHKEK_CITY,
            Sex.MALE,
            29,
            citizenship="UZ",
            country_of_exploitation="KG",
            criteria=CriteriaAnswers(
                acts={Act.RECEIPT}, means={Means.COERCION}, purposes={Purpose.FORCED_LABOUR}
            ),
            forms_of_exploitation={FormOfExploitation.FORCED_LABOUR},
            needs={Service.SHELTER},
            personal_data=PersonalData(full_name="Demo Person Four"),
        ),
    )
    await s.expect(
        "second man wait-listed (position 1)",
        _is("shelter.waitlisted", case_id=second.get("aggregate_id"), position=1),
    )
    if admitted is not None:
        await s.command(
            "men's shelter discharges the first man",
            DischargeFromShelter(
                command_id=uuid.uuid4(),
                agency_id="kg-ngo-bishkek-mens-shelter",
                referral_id=uuid.UUID(admitted.data["referral_id"]),
                reason=DischargeReason.REHABILITATION_COMPLETED,
            ),
        )
        await s.expect(
            "second man admitted from the waiting list",
            _is("shelter.admitted", case_id=second.get("aggregate_id"), from_waiting_list=True),
        )
        await s.expect(
            "first man's shelter referral completed",
            _is("referral.completed", referral_id=admitted.data["referral_id"]),
        )

    print("Rules the hub enforces")
    prosecutor = _screening(
        "kg-prosecutor-general",
        Region.BISHKEK_CITY,
        Sex.FEMALE,
        22,
        citizenship="KG",
        criteria=CriteriaAnswers(
            acts={Act.RECRUITMENT}, means={Means.FRAUD}, purposes={Purpose.SEXUAL_EXPLOITATION}
        ),
        personal_data=PersonalData(full_name="Demo Person Five"),
    )
    try:
        refused = await s.client.send(prosecutor)
        s.check(
            refused["status"] == "rejected"
            and any(e["code"] == "not_authorised" for e in refused.get("errors", [])),
            "a prosecution body may not identify: the hub says not_authorised",
        )
    except (TimeoutError, NoRespondersError):
        # A secured hub: its NATS user has no screening subject at all, so nothing arrives.
        s.check(True, "a prosecution body may not identify: NATS refuses it the subject")
    unmet = await s.command(
        "an adult screening without means",
        _screening(
            "kg-mia-osh",
            Region.OSH_CITY,
            Sex.MALE,
            30,
            citizenship="TJ",
            criteria=CriteriaAnswers(acts={Act.RECRUITMENT}, purposes={Purpose.FORCED_LABOUR}),
            personal_data=PersonalData(full_name="Demo Person Six"),
        ),
    )
    await s.expect(
        "recorded as not identified (means)",
        _is("victim.not_identified", case_id=unmet.get("aggregate_id")),
    )
    second_admitted = await s.timeline.wait_for(
        _is("shelter.admitted", case_id=second.get("aggregate_id"), from_waiting_list=True)
    )
    await case_lifecycle(s, second_admitted)
    await reassignment(s)


def _referral_of(case: str | None, service: Service, attempt: int = 0) -> Match:
    return lambda e: (
        e.type == "referral.requested"
        and e.data.get("case_id") == case
        and e.data.get("service") == service.value
        and e.data.get("attempt", 0) == attempt
    )


async def case_lifecycle(s: Scenario, second_admitted: Envelope | None) -> None:
    """Issue 14's story: a declined referral re-made, an ownership transfer, follow-ups after
    discharge, closure as reintegrated, reopening; and an unmet need (issue 15)."""
    mens_shelter, owner, social = (
        "kg-ngo-bishkek-mens-shelter",
        "kg-labour-inspectorate-chuy",
        "kg-social-bishkek",
    )
    print("A third man in Chuy: the men's shelter is full and declines")
    third = await s.command(
        f"screening by {owner}",
        _screening(
            owner,
            Region.CHUY,
            Sex.MALE,
            37,
            citizenship="KG",
            country_of_exploitation="RU",
            criteria=CriteriaAnswers(
                acts={Act.RECRUITMENT}, means={Means.DECEPTION}, purposes={Purpose.FORCED_LABOUR}
            ),
            forms_of_exploitation={FormOfExploitation.FORCED_LABOUR},
            needs={Service.SHELTER},
            personal_data=PersonalData(full_name="Demo Person Seven"),
        ),
    )
    case = third.get("aggregate_id")
    first_try = await s.expect(
        "third man wait-listed at the men's shelter",
        _is("shelter.waitlisted", case_id=case, shelter_id=mens_shelter),
    )
    if first_try is None or case is None or second_admitted is None:
        s.check(False, "the third man's story can go on")
        return
    await s.command(
        "the men's shelter declines: no capacity",
        DeclineReferral(
            command_id=uuid.uuid4(),
            agency_id=mens_shelter,
            referral_id=uuid.UUID(first_try.data["referral_id"]),
            reason=DeclineReason.NO_CAPACITY,
        ),
    )
    await s.expect(
        "no other men's shelter: the need is recorded unmet (no_capacity)",
        _is("need.unmet", case_id=case, service="shelter", reason="no_capacity"),
    )
    state = await read_worklists(s.operator)
    listed = rows(state, Worklist.UNMET, dt.datetime.now(dt.UTC), service="shelter")
    s.check(
        any(r.case_id == case and r.detail == "no_capacity" for r in listed),
        "and it is on the coordinating body's worklist (nrm cases unmet)",
    )
    await s.command(
        "a bed frees up: the men's shelter discharges the second man",
        DischargeFromShelter(
            command_id=uuid.uuid4(),
            agency_id=mens_shelter,
            referral_id=uuid.UUID(second_admitted.data["referral_id"]),
            reason=DischargeReason.RETURNED_HOME,
        ),
    )
    await s.command(
        "the labour inspectorate refers him to the men's shelter again",
        ReferNeed(
            command_id=uuid.uuid4(),
            agency_id=owner,
            case_id=uuid.UUID(case),
            service=Service.SHELTER,
            provider_id=mens_shelter,
        ),
    )
    await s.expect(
        "a second referral of the need (attempt 1)", _referral_of(case, Service.SHELTER, 1)
    )
    admitted = await s.expect(
        "third man admitted", _is("shelter.admitted", case_id=case, shelter_id=mens_shelter)
    )

    print("His case moves to the social development office, which follows him up")
    await s.command(
        "the labour inspectorate asks the social development office to take the case",
        RequestCaseTransfer(
            command_id=uuid.uuid4(),
            agency_id=owner,
            case_id=uuid.UUID(case),
            to_agency=social,
            reason=TransferReason.SPECIALISED_ASSISTANCE,
        ),
    )
    await s.command(
        "the social development office accepts",
        AcceptCaseTransfer(command_id=uuid.uuid4(), agency_id=social, case_id=uuid.UUID(case)),
    )
    await s.expect("case transferred", _is("case.transferred", case_id=case, to_agency=social))
    if admitted is not None:
        await s.command(
            "the men's shelter discharges him",
            DischargeFromShelter(
                command_id=uuid.uuid4(),
                agency_id=mens_shelter,
                referral_id=uuid.UUID(admitted.data["referral_id"]),
                reason=DischargeReason.REHABILITATION_COMPLETED,
            ),
        )
        await s.expect(
            "his shelter referral completed",
            _is("referral.completed", referral_id=admitted.data["referral_id"]),
        )
    schedule = ScheduleFollowUp(
        command_id=uuid.uuid4(),
        agency_id=social,
        case_id=uuid.UUID(case),
        due_on=dt.date.today() + dt.timedelta(days=30),
        purpose=FollowUpPurpose.POST_DISCHARGE,
    )
    scheduled = await s.command("a follow-up 30 days after discharge", schedule)
    followup = await s.expect("follow-up scheduled", _is("case.followup_scheduled", case_id=case))
    if followup is not None:
        await s.command(
            "the follow-up is recorded: in contact, stable",
            RecordFollowUp(
                command_id=uuid.uuid4(),
                agency_id=social,
                case_id=uuid.UUID(case),
                followup_id=uuid.UUID(followup.data["followup_id"]),
                outcome=FollowUpOutcome.IN_CONTACT_STABLE,
            ),
        )
    retried = await s.client.send(schedule)
    s.check(
        retried.get("duplicate") is True and retried.get("event_ids") == scheduled.get("event_ids"),
        "a retried command changes nothing",
    )
    await s.command(
        "the social development office closes the case: reintegrated",
        CloseCase(
            command_id=uuid.uuid4(),
            agency_id=social,
            case_id=uuid.UUID(case),
            reason=ClosureReason.REINTEGRATED,
        ),
    )
    await s.expect("case closed", _is("case.closed", case_id=case, reason="reintegrated"))
    late = await s.client.send(
        ScheduleFollowUp(
            command_id=uuid.uuid4(),
            agency_id=social,
            case_id=uuid.UUID(case),
            due_on=dt.date.today() + dt.timedelta(days=90),
            purpose=FollowUpPurpose.REINTEGRATION_CHECK,
        )
    )
    s.check(
        late.get("status") == "rejected"
        and any(e["field"] == "case_id" for e in late.get("errors", [])),
        "a follow-up on a closed case is rejected (case_id)",
    )
    await s.command(
        "he comes back: the case is reopened",
        ReopenCase(
            command_id=uuid.uuid4(),
            agency_id=social,
            case_id=uuid.UUID(case),
            reason=ReopenReason.NEW_NEEDS,
        ),
    )
    await s.expect("case reopened", _is("case.reopened", case_id=case))
    await _counted(s)


async def _counted(s: Scenario) -> None:
    """Every step is counted: the statistics read the same stream."""
    state = (await replay(s.operator)).state
    at = dt.datetime.now(dt.UTC)
    kinds = count(state, Query("referrals", ("referral_kind",)), at)
    totals = dict(zip(kinds.rows, kinds.row_totals, strict=True))
    s.check((totals.get("re_referral") or 0) >= 1, "the statistics count the re-referral")
    reopened = count(state, Query("cases", ("reopened",)), at)
    s.check(
        dict(zip(reopened.rows, reopened.row_totals, strict=True)).get("yes", 0) >= 1,
        "and the reopened case",
    )
    unmet = count(state, Query("unmet_needs", ("reason",)), at)
    s.check(
        dict(zip(unmet.rows, unmet.row_totals, strict=True)).get("no_capacity", 0) >= 1,
        "and the unmet need",
    )


async def reassignment(s: Scenario) -> None:
    """Issue 15: a woman waits for a bed in Osh; the coordinating body sees her on its
    worklist and reassigns her to the Bishkek crisis centre, which has a free bed. (The hub
    escalates a waiting list after NRM_WAITLIST_ESCALATION_SECONDS, 14 days by default: the
    demo does not wait for it.)"""
    print("A second woman in Osh waits for a bed; the coordinating body reassigns her")
    woman = await s.command(
        "screening by kg-mia-osh",
        _screening(
            "kg-mia-osh",
            Region.OSH_CITY,
            Sex.FEMALE,
            27,
            citizenship="KG",
            country_of_exploitation="TR",
            criteria=CriteriaAnswers(
                acts={Act.TRANSPORTATION},
                means={Means.DECEPTION},
                purposes={Purpose.SEXUAL_EXPLOITATION},
            ),
            forms_of_exploitation={FormOfExploitation.SEX_TRAFFICKING},
            needs={Service.SHELTER},
            personal_data=PersonalData(full_name="Demo Person Eight"),
        ),
    )
    case = woman.get("aggregate_id")
    waiting = await s.expect(
        "wait-listed at the Osh crisis centre (its one women's bed is taken)",
        _is("shelter.waitlisted", case_id=case, shelter_id="kg-ngo-osh-crisis-centre"),
    )
    if waiting is None:
        return
    # The referral follows the shelter's answer: the worklist reads the referral's state.
    await s.timeline.wait_for(_is("referral.waitlisted", referral_id=waiting.data["referral_id"]))
    state = await read_worklists(s.operator)
    listed = rows(state, Worklist.WAITING, dt.datetime.now(dt.UTC), region="osh_city")
    s.check(
        any(r.item_id == waiting.data["referral_id"] for r in listed),
        "she is on the coordinating body's worklist (nrm cases waiting)",
    )
    await s.command(
        "the coordinating body reassigns her referral to the Bishkek crisis centre",
        ReassignReferral(
            command_id=uuid.uuid4(),
            agency_id="kg-coordinating-body",
            referral_id=uuid.UUID(waiting.data["referral_id"]),
            provider_id="kg-ngo-bishkek-crisis-centre",
            reason=ReassignReason.WAITING_TOO_LONG,
        ),
    )
    await s.expect(
        "the Osh referral is revoked (reassigned)",
        _is("referral.revoked", referral_id=waiting.data["referral_id"], reason="reassigned"),
    )
    await s.expect(
        "admitted in Bishkek",
        _is("shelter.admitted", case_id=case, shelter_id="kg-ngo-bishkek-crisis-centre"),
    )


async def run_scenario(nats_url: str, settings: Settings) -> int:
    """Each agency of the scenario speaks over its own connection (its own credentials on a
    secured hub); the timeline reads the event stream as the operators' `admin` user."""
    nc = await connect_operator(settings, nats_url)

    async def connect_as(agency: str) -> Client:
        # Quiet: a permission the server refuses is part of the scenario, the check says so.
        return await connect_operator(settings, nats_url, agency)

    timeline = Timeline()
    await nc.jetstream().subscribe(
        f"{EVENT_PREFIX}.>",
        stream=EVENTS_STREAM,
        cb=timeline.on_message,
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.NEW,
    )
    client = HubClient(nc, connect_as=connect_as)
    scenario = Scenario(client, timeline, nc)
    try:
        await play(scenario)
    finally:
        await client.close()
        await nc.drain()
    print(f"\n{scenario.passed} expected outcomes happened, {len(scenario.failures)} did not.")
    for failure in scenario.failures:
        print(f"  missing: {failure}")
    return 0 if not scenario.failures else 1


async def run_demo(settings: Settings) -> int:
    if settings.nats_url is not None:
        print(f"NRM demo against the hub at {settings.nats_url}")
        return await run_scenario(settings.nats_url, settings)
    with tempfile.TemporaryDirectory(prefix="nrm-demo-") as tmp:
        local = settings.model_copy(  # secured like `nrm up`: every agency signs in
            update={
                "data_dir": Path(tmp),
                "kek_file": None,
                "audit_signing_key_file": None,
                "attestation_signing_key_file": None,
                "nats_credentials": Path(tmp) / "credentials",
            }
        )
        create_hub_keys(local)
        async with local_hub(local) as url, running_services(url, local):
            print(f"NRM demo on an embedded hub at {url} (agencies sign in with nkeys)")
            return await run_scenario(url, local)
