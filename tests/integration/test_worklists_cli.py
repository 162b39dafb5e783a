"""`nrm cases` against a running hub: a child screened on Kazakhstan's hub, whose registry
has no guardianship office, shows in `nrm cases unmet` with the reason, by id and code only;
filters narrow the list; no personal data comes out."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import uuid
from pathlib import Path

import pytest

from contracts.commands import CriteriaAnswers, PersonalData, ScreeningInterview
from contracts.vocabulary import Act, FormOfExploitation, Purpose, Region, Service, Sex
from services.client import HubClient
from services.runtime.settings import Settings
from tests.integration.hub_reads import CANARY_NAME, events, nrm_output, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"country": "kz"})


async def test_a_childs_unmet_guardianship_is_on_the_unmet_worklist(
    hub: Settings, client: HubClient, nc: object, tmp_path: Path
) -> None:
    assert hub.nats_url is not None
    child = ScreeningInterview(
        command_id=uuid.uuid4(),
        agency_id="kz-police-almaty",
        interviewed_on=dt.date(2026, 11, 20),
        region=Region.KZ_ALMATY_CITY,
        sex=Sex.FEMALE,
        age=15,
        citizenship="KG",
        country_of_exploitation="KZ",
        criteria=CriteriaAnswers(
            acts=frozenset({Act.RECRUITMENT}),
            means=frozenset(),
            purposes=frozenset({Purpose.FORCED_LABOUR}),
        ),
        forms_of_exploitation=frozenset({FormOfExploitation.FORCED_LABOUR}),
        needs=frozenset({Service.PSYCHOLOGICAL}),
        personal_data=PersonalData(full_name=CANARY_NAME),
    )
    reply = await client.send(child)
    assert reply["status"] == "accepted", reply
    case_id = reply["aggregate_id"]

    async def recorded() -> bool:
        return any(e.type == "need.unmet" for e in await events(nc.jetstream()))  # type: ignore[attr-defined]

    await wait_until(recorded, timeout=30)
    [row] = json.loads(
        await nrm_output(hub.nats_url, "cases", "unmet", "--format", "json", cwd=tmp_path)
    )
    assert (row["case_id"], row["service"], row["detail"], row["region"]) == (
        case_id,
        "guardianship",
        "no_provider",
        "kz_almaty_city",
    )
    assert row["agency"] == "kz-coordinating-body" and row["days"] == 0

    table = list(
        csv.DictReader(
            io.StringIO(
                await nrm_output(
                    hub.nats_url,
                    "cases",
                    "unmet",
                    "--service",
                    "guardianship",
                    "--format",
                    "csv",
                    cwd=tmp_path,
                )
            )
        )
    )
    # CSV: headers in the reader's language (English by default), cells as codes.
    assert [(r["case"], r["service"]) for r in table] == [(case_id, "guardianship")]
    assert (
        json.loads(
            await nrm_output(
                hub.nats_url,
                "cases",
                "unmet",
                "--service",
                "shelter",
                "--format",
                "json",
                cwd=tmp_path,
            )
        )
        == []
    )
    # The psychologist's referral is neither waiting nor late.
    assert (
        json.loads(
            await nrm_output(hub.nats_url, "cases", "waiting", "--format", "json", cwd=tmp_path)
        )
        == []
    )
    assert (
        json.loads(
            await nrm_output(hub.nats_url, "cases", "overdue", "--format", "json", cwd=tmp_path)
        )
        == []
    )
