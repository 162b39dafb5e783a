"""The data standard on a running hub: screenings carrying HTCDS codes go in through the
identifier (sealed by the agency client as usual); `nrm stats` and `nrm stats htcds --fields`,
run as processes, count them; nothing personal comes out."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from pathlib import Path

import pytest

from contracts.vocabulary import (
    Gender,
    LabourIndustry,
    OnlinePlatform,
    RecruitmentMethod,
    Sex,
    Vulnerability,
)
from services.client import HubClient
from services.runtime.settings import Settings
from tests.integration.hub_reads import nrm_output, screening
from tests.integration.test_statistics_cli import _cells

pytestmark = pytest.mark.integration


async def nrm_stats(url: str, *args: str, cwd: Path) -> str:
    return await nrm_output(url, "stats", *args, cwd=cwd)


async def test_standard_fields_go_in_with_the_screening_and_come_out_of_nrm_stats(
    hub: Settings, client: HubClient, tmp_path: Path
) -> None:
    assert hub.nats_url is not None
    online = screening(sex=Sex.MALE).model_copy(
        update={
            "gender": Gender.UNKNOWN,
            "recruitment_methods": frozenset({RecruitmentMethod.INTERNET}),
            "online_platforms": frozenset({OnlinePlatform.ODNOKLASSNIKI}),
            "labour_industries": frozenset({LabourIndustry.CONSTRUCTION}),
            "vulnerabilities": frozenset({Vulnerability.RETURNED_MIGRANT}),
        }
    )
    for interview in (online, screening()):
        reply = await client.send(interview)
        assert reply["status"] == "accepted", reply

    by_platform = json.loads(
        await nrm_stats(
            hub.nats_url,
            "--by",
            "online_platform,gender",
            "--where",
            "status=identified",
            "--format",
            "json",
            cwd=tmp_path,
        )
    )
    assert _cells(by_platform["tables"][0]) == Counter(
        {("odnoklassniki", "unknown"): 1, ("not_recorded", "female"): 1}
    )
    fields = await nrm_stats(hub.nats_url, "htcds", "--fields", cwd=tmp_path)
    rows = {
        (r["htcds_Field"], r["nrm_Value"]): (r["htcds_Value"], r["nrm_Count"])
        for r in csv.DictReader(io.StringIO(fields))
    }
    assert rows[("vic_RecruitmentWebsitesAndApps", "odnoklassniki")] == ("Other", "1")
    assert rows[("vic_LabourIndustry", "construction")] == ("F_Construction", "1")
    assert rows[("vic_Vulnerabilities", "returned_migrant")] == ("Migration", "1")
    assert rows[("prs_Gender", "unknown")] == ("Unknown", "1")
    assert rows[("vic_MethodsOfControl", "deception")] == ("FalsePromises", "2")
