"""`nrm stats` against a running hub: screenings go in through the identifier, the figures
come out of the event stream, equal to what was submitted, with no personal data anywhere."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client

from contracts.commands import CriteriaAnswers, PersonalData, ScreeningInterview
from contracts.envelope import wrap_event
from contracts.events import ConsentRecorded
from contracts.subjects import event_subject
from contracts.vocabulary import (
    Act,
    DataPurpose,
    FormOfExploitation,
    LegalBasis,
    Means,
    Purpose,
    Region,
    Service,
    Sex,
)
from services.client import HubClient
from services.runtime.settings import Settings
from tests.integration.hub_reads import (
    CANARIES,
    CANARY_NAME,
    CANARY_NARRATIVE,
    CANARY_PHONE,
    events,
    nrm_output,
    wait_until,
)

pytestmark = pytest.mark.integration
NRM = [sys.executable, "-m", "services.cli"]

# (agency, region, sex, age, identified)
PEOPLE = [
    ("kg-ngo-osh-crisis-centre", Region.OSH_CITY, Sex.FEMALE, 24, True),
    ("kg-ngo-osh-crisis-centre", Region.OSH_CITY, Sex.FEMALE, 31, True),
    ("kg-mia-osh", Region.OSH_CITY, Sex.MALE, 40, True),
    ("kg-mia-bishkek", Region.BISHKEK_CITY, Sex.FEMALE, 19, True),
    ("kg-mia-bishkek", Region.BISHKEK_CITY, Sex.MALE, 15, True),  # a child: no means needed
    ("kg-border-batken", Region.BATKEN, Sex.FEMALE, 16, True),
    ("kg-labour-inspectorate-chuy", Region.CHUY, Sex.MALE, 45, True),
    ("kg-io-bishkek", Region.BISHKEK_CITY, Sex.MALE, 28, False),  # adult without means
    ("kg-social-osh", Region.OSH_CITY, Sex.FEMALE, 52, False),
]


def _screening(
    agency: str, region: Region, sex: Sex, age: int, identified: bool
) -> ScreeningInterview:
    return ScreeningInterview(
        command_id=uuid.uuid4(),
        agency_id=agency,
        interviewed_on=dt.date(2026, 10, 5),
        region=region,
        sex=sex,
        age=age,
        citizenship="KG",
        country_of_exploitation="RU",
        criteria=CriteriaAnswers(
            acts=frozenset({Act.RECRUITMENT}),
            means=frozenset({Means.DECEPTION}) if identified and age >= 18 else frozenset(),
            purposes=frozenset({Purpose.FORCED_LABOUR}),
        ),
        forms_of_exploitation=frozenset({FormOfExploitation.FORCED_LABOUR}),
        needs=frozenset({Service.LEGAL_AID}),
        personal_data=PersonalData(
            full_name=CANARY_NAME, phone=CANARY_PHONE, narrative=CANARY_NARRATIVE
        ),
    )


def _cells(table: dict[str, Any]) -> Counter[tuple[str, ...]]:
    """The table's cells (not its margins) with a non-zero count."""
    found: Counter[tuple[str, ...]] = Counter()
    for entry in table["entries"]:
        key = tuple(entry[f] for f in table["by"])
        if "(all)" not in key and entry["count"]:
            found[key] = entry["count"]
    return found


async def test_stats_from_a_running_hub_equal_what_was_submitted(
    hub: Settings, client: HubClient, nc: Client, tmp_path: Path
) -> None:
    assert hub.nats_url is not None
    case_ids = []
    for person in PEOPLE:
        reply = await client.send(_screening(*person))
        assert reply["status"] == "accepted", reply
        case_ids.append(reply["aggregate_id"])
    identified = [p for p in PEOPLE if p[4]]
    children = sum(1 for p in identified if p[3] < 18)

    async def referred() -> bool:  # legal aid for everyone, guardianship for each child
        found = Counter(e.type for e in await events(nc.jetstream()))
        return found["referral.requested"] == len(identified) + children

    await wait_until(referred, timeout=30)

    by_region = json.loads(
        await nrm_output(
            hub.nats_url, "stats", "--by", "region,status", "--format", "json", cwd=tmp_path
        )
    )
    assert _cells(by_region["tables"][0]) == Counter(
        (p[1].value, "identified" if p[4] else "not_identified") for p in PEOPLE
    )
    assert by_region["public"] is False and by_region["events_read"] >= len(PEOPLE)
    by_sex_age = json.loads(
        await nrm_output(
            hub.nats_url,
            "stats",
            "--by",
            "sex,age_group",
            "--where",
            "status=identified",
            "--format",
            "json",
            cwd=tmp_path,
        )
    )
    assert _cells(by_sex_age["tables"][0]) == Counter(
        (p[2].value, "child" if p[3] < 18 else "adult") for p in identified
    )
    referrals = json.loads(
        await nrm_output(
            hub.nats_url,
            "stats",
            "--of",
            "referrals",
            "--by",
            "service",
            "--format",
            "json",
            cwd=tmp_path,
        )
    )
    assert _cells(referrals["tables"][0]) == Counter(
        {("legal_aid",): len(identified), ("guardianship",): children}
    )

    # Nobody has consented to statistics yet: the public figures show nothing at all.
    public = json.loads(
        await nrm_output(
            hub.nats_url, "stats", "--public", "--by", "region", "--format", "json", cwd=tmp_path
        )
    )
    assert all(e["count"] is None for e in public["tables"][0]["entries"])

    # Consent to statistics for the identified cases in Osh (what key custody records).
    js = nc.jetstream()
    osh = [cid for cid, p in zip(case_ids, PEOPLE, strict=True) if p[4] and p[1] is Region.OSH_CITY]
    for cid in osh:
        consent = ConsentRecorded(
            case_id=uuid.UUID(cid),
            consent_id=uuid.uuid4(),
            recorded_by="kg-ngo-osh-crisis-centre",
            legal_basis=LegalBasis.INFORMED_CONSENT,
            purposes=(DataPurpose.ASSISTANCE, DataPurpose.STATISTICS),
            recipients=(),
            recipient_kinds=(),
            withheld_fields=(),
            given_on=dt.date(2026, 10, 5),
            expires_at=None,
        )
        envelope = wrap_event(
            consent,
            event_id=uuid.uuid4(),
            source="urn:nrm-hub:kg:test",
            time=dt.datetime.now(dt.UTC),
            correlation_id=None,
            causation_id=None,
        )
        await js.publish(event_subject(consent), envelope.to_bytes())
    public = json.loads(
        await nrm_output(
            hub.nats_url,
            "stats",
            "--public",
            "--threshold",
            "2",
            "--by",
            "region",
            "--format",
            "json",
            cwd=tmp_path,
        )
    )
    shown = {e["region"]: e["count"] for e in public["tables"][0]["entries"]}
    # Only consenting cases count. Every other region is a zero, hidden; publishing Osh's 3
    # as well as the total 3 would reveal those zeros, so Osh is hidden and the total shown.
    assert shown["(all)"] == len(osh)
    assert all(v is None for k, v in shown.items() if k != "(all)")

    # Every output: table, CSV, the report files and HTCDS; no personal data in any.
    table = await nrm_output(hub.nats_url, "stats", cwd=tmp_path)
    assert "Identified victims by region and sex" in table
    rows = list(
        csv.DictReader(
            io.StringIO(await nrm_output(hub.nats_url, "stats", "--format", "csv", cwd=tmp_path))
        )
    )
    assert any(r["table"] == "Referrals by service and outcome" for r in rows)
    await nrm_output(
        hub.nats_url, "stats", "report", "--out", str(tmp_path / "report"), cwd=tmp_path
    )
    htcds = await nrm_output(hub.nats_url, "stats", "htcds", cwd=tmp_path)
    total = list(csv.DictReader(io.StringIO(htcds)))[-1]
    assert total["nrm_Count"] == str(len(identified))
    written = sorted((tmp_path / "report").iterdir())
    assert {p.name for p in written} >= {"index.html", "all.csv", "figures.json"}
    for path in written:
        text = path.read_text()
        for canary in CANARIES:
            assert canary not in text
        assert not any(cid in text for cid in case_ids)


def test_a_bad_field_is_named_before_anything_is_read(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NRM_")}
    env["PYTHONPATH"] = str(Path(__file__).parents[2])
    done = subprocess.run(
        [*NRM, "stats", "--by", "region,colour", "--nats-url", "nats://127.0.0.1:1"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert "colour" in done.stderr and "--by" in done.stderr


def test_a_hub_without_events_or_without_nats_is_said_in_one_line(
    nats_url: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NRM_")}
    env["PYTHONPATH"] = str(Path(__file__).parents[2])
    for url, expected, code in (
        (nats_url, "no NRM_EVENTS stream", 1),
        ("nats://127.0.0.1:1", "cannot reach", 3),  # EXIT_UNREACHABLE, as for every command
    ):
        done = subprocess.run(
            [*NRM, "stats", "--nats-url", url],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            cwd=tmp_path,
        )
        assert done.returncode == code
        assert expected in done.stderr and "Traceback" not in done.stderr
