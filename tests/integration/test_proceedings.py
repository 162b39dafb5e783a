"""Criminal proceedings on a running hub: police and the prosecution record the 2023
figures (30 investigations; 3 prosecutions, 2 sex trafficking and 1 labour; no convictions)
as `proceeding.*` commands on cases screened through the identifier, and `nrm stats --of
proceedings`, run as a process, prints them exactly. Who may record what is enforced by the
identifier; a retry writes nothing; nothing personal is stored."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client

from contracts.commands import (
    BringCharges,
    CriteriaAnswers,
    FileComplaint,
    OpenInvestigation,
    PersonalData,
    RecordCourtDecision,
    ScreeningInterview,
)
from contracts.vocabulary import (
    Act,
    CourtOutcome,
    CriminalArticle,
    FormOfExploitation,
    Means,
    Purpose,
    Region,
    Sex,
)
from services.client import HubClient
from services.runtime.settings import Settings
from tests.integration.hub_reads import CANARIES, CANARY_NAME, CANARY_PHONE, events, nrm_output
from tests.integration.test_statistics_cli import _cells

pytestmark = pytest.mark.integration


async def nrm_stats(url: str, *args: str, cwd: Path) -> str:
    return await nrm_output(url, "stats", *args, cwd=cwd)


POLICE = "kg-mia-osh"
PROSECUTOR = "kg-prosecutor-general"
NGO = "kg-ngo-osh-legal-clinic"
YEAR = ("--from", "2023-01-01", "--to", "2023-12-31")


def _screening(form: FormOfExploitation) -> ScreeningInterview:
    purpose = (
        Purpose.SEXUAL_EXPLOITATION
        if form is FormOfExploitation.SEX_TRAFFICKING
        else Purpose.FORCED_LABOUR
    )
    return ScreeningInterview(
        command_id=uuid.uuid4(),
        agency_id="kg-ngo-osh-crisis-centre",
        interviewed_on=dt.date(2023, 1, 9),
        region=Region.OSH_CITY,
        sex=Sex.FEMALE,
        age=30,
        citizenship="KG",
        country_of_exploitation="RU",
        criteria=CriteriaAnswers(
            acts=frozenset({Act.RECRUITMENT}),
            means=frozenset({Means.DECEPTION}),
            purposes=frozenset({purpose}),
        ),
        forms_of_exploitation=frozenset({form}),
        personal_data=PersonalData(full_name=CANARY_NAME, phone=CANARY_PHONE),
    )


async def _stats(url: str, tmp_path: Path, *args: str) -> dict[str, Any]:
    out = await nrm_stats(
        url, "--of", "proceedings", *args, *YEAR, "--format", "json", cwd=tmp_path
    )
    tables: list[dict[str, Any]] = json.loads(out)["tables"]
    return tables[0]


async def test_the_2023_figures_entered_as_commands_come_out_of_nrm_stats(
    hub: Settings, client: HubClient, nc: Client, tmp_path: Path
) -> None:
    assert hub.nats_url is not None
    forms = [FormOfExploitation.SEX_TRAFFICKING] * 2 + [FormOfExploitation.FORCED_LABOUR] * 28
    cases = []
    for form in forms:
        reply = await client.send(_screening(form))
        assert reply["status"] == "accepted", reply
        cases.append(reply["aggregate_id"])

    # An NGO files the first victim's complaint; police open the investigation on it.
    complaint = FileComplaint(
        command_id=uuid.uuid4(),
        agency_id=NGO,
        case_ids=frozenset({uuid.UUID(cases[0])}),
        filed_on=dt.date(2023, 2, 1),
    )
    filed = await client.send(complaint)
    assert filed["status"] == "accepted", filed
    assert (await client.send(complaint))["duplicate"] is True  # a retry writes nothing
    proceedings = [filed["aggregate_id"]]
    opened = await client.send(
        OpenInvestigation(
            command_id=uuid.uuid4(),
            agency_id=POLICE,
            proceeding_id=filed["aggregate_id"],
            article=CriminalArticle.ART_166,
            opened_on=dt.date(2023, 2, 3),
        )
    )
    assert opened["status"] == "accepted", opened
    for i, case_id in enumerate(cases[1:], start=1):  # the others without a complaint
        reply = await client.send(
            OpenInvestigation(
                command_id=uuid.uuid4(),
                agency_id=POLICE if i % 2 else PROSECUTOR,
                case_ids=frozenset({uuid.UUID(case_id)}),
                article=CriminalArticle.ART_166,
                opened_on=dt.date(2023, 3, 1 + i % 28),
            )
        )
        assert reply["status"] == "accepted", reply
        proceedings.append(reply["aggregate_id"])
    for proceeding_id in proceedings[:3]:  # the two sex trafficking cases and one labour
        charged = await client.send(
            BringCharges(
                command_id=uuid.uuid4(),
                agency_id=PROSECUTOR,
                proceeding_id=proceeding_id,
                article=CriminalArticle.ART_166,
                charged_on=dt.date(2023, 9, 1),
            )
        )
        assert charged["status"] == "accepted", charged

    # Refused, writing nothing: an NGO opening an investigation, police recording the court's
    # decision, a decision before charges, an unknown case.
    refusals = [
        OpenInvestigation(
            command_id=uuid.uuid4(),
            agency_id=NGO,
            case_ids=frozenset({uuid.UUID(cases[5])}),
            article=CriminalArticle.ART_166,
            opened_on=dt.date(2023, 3, 1),
        ),
        RecordCourtDecision(
            command_id=uuid.uuid4(),
            agency_id=POLICE,
            proceeding_id=proceedings[0],
            outcome=CourtOutcome.ACQUITTAL,
            decided_on=dt.date(2023, 12, 1),
        ),
        RecordCourtDecision(
            command_id=uuid.uuid4(),
            agency_id=PROSECUTOR,
            proceeding_id=proceedings[10],
            outcome=CourtOutcome.ACQUITTAL,
            decided_on=dt.date(2023, 12, 1),
        ),
        FileComplaint(
            command_id=uuid.uuid4(),
            agency_id=NGO,
            case_ids=frozenset({uuid.uuid4()}),
            filed_on=dt.date(2023, 2, 1),
        ),
    ]
    answers = [await client.send(command) for command in refusals]
    assert [(a["status"], a["errors"][0]["field"], a["errors"][0]["code"]) for a in answers] == [
        ("rejected", "agency_id", "not_authorised"),
        ("rejected", "agency_id", "not_authorised"),
        ("rejected", "proceeding_id", "invalid_state"),
        ("rejected", "case_ids", "unknown_id"),
    ]

    investigated = await _stats(hub.nats_url, tmp_path, "--by", "investigated")
    assert _cells(investigated) == Counter({("yes",): 30})
    charged = await _stats(hub.nats_url, tmp_path, "--by", "charged")
    assert _cells(charged) == Counter({("no",): 27, ("yes",): 3})
    by_form = await _stats(hub.nats_url, tmp_path, "--by", "form", "--where", "charged=yes")
    assert _cells(by_form) == Counter({("sex_trafficking",): 2, ("forced_labour",): 1})
    convicted = await _stats(hub.nats_url, tmp_path, "--by", "convicted")
    assert _cells(convicted) == Counter({("no",): 30})
    reached = json.loads(
        await nrm_stats(
            hub.nats_url,
            "--by",
            "reached_court",
            "--where",
            "status=identified",
            "--format",
            "json",
            cwd=tmp_path,
        )
    )
    assert _cells(reached["tables"][0]) == Counter({("no",): 27, ("yes",): 3})
    # The standard tables print them too, and nothing personal is stored with them.
    standard = await nrm_stats(hub.nats_url, cwd=tmp_path)
    assert "Criminal proceedings: investigations and prosecutions" in standard
    stored = [e for e in await events(nc.jetstream()) if e.type.startswith("proceeding.")]
    assert len(stored) == 30 + 1 + 3
    text = "".join(e.model_dump_json() for e in stored)
    assert not any(canary in text for canary in CANARIES)
