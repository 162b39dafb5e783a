"""The data standard (HTCDS) on screenings: optional codes recorded on every screening record
(gender beside sex, recruitment, online platforms, methods of control and the means answers,
labour industry, type of sexual exploitation, vulnerable groups), events stored before them
still read, shelter beds still follow the sex, and `nrm stats` / `nrm stats htcds` count
them with the usual public suppression."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import uuid
from typing import Any

import pytest

from contracts.commands import ScreeningInterview
from contracts.envelope import wrap_event
from contracts.events import VictimIdentified, decode_event_data
from contracts.replies import CommandRejection, ErrorCode
from contracts.vocabulary import (
    ControlMethod,
    Gender,
    LabourIndustry,
    Means,
    OnlinePlatform,
    RecruitmentMethod,
    Service,
    Sex,
    SexualExploitationType,
    ShelterCategory,
    Vulnerability,
)
from services.agencies.registry import load_registry
from services.identifier.domain import decide_screening
from services.referral.domain import plan_referrals
from services.runtime.messaging import parse_command
from services.statistics.htcds import FIELDS, export, export_fields
from services.statistics.projection import fold
from services.statistics.tables import Query, count
from tests.integration.hub_reads import screening
from tests.unit.test_statistics_unmet_needs import _statistics_consent

REGISTRY = load_registry()
AGENCY = REGISTRY.get("kg-ngo-osh-crisis-centre")
NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
DETAILS: dict[str, Any] = {
    "gender": Gender.TRANSGENDER_OR_NON_CONFORMING,
    "recruitment_methods": frozenset({RecruitmentMethod.INTERNET, RecruitmentMethod.JOB_OFFER}),
    "online_platforms": frozenset({OnlinePlatform.TELEGRAM}),
    "methods_of_control": frozenset({ControlMethod.RESTRICTS_MOVEMENT}),
    "labour_industries": frozenset({LabourIndustry.TEXTILES}),
    "sexual_exploitation_types": frozenset({SexualExploitationType.REMOTE_INTERACTIVE_SERVICES}),
    "vulnerabilities": frozenset({Vulnerability.BANNED_FROM_REENTRY, Vulnerability.LGBTQI}),
}


def _record(sex: Sex = Sex.MALE, **details: Any) -> VictimIdentified:
    assert AGENCY is not None
    interview = screening(sex=sex, needs=frozenset({Service.SHELTER})).model_copy(update=details)
    record = decide_screening(interview, AGENCY, str(uuid.uuid4()), {})
    assert isinstance(record, VictimIdentified)
    return record


def test_a_screening_records_the_standard_codes_and_keeps_its_means() -> None:
    record = _record(**DETAILS)
    assert record.gender is Gender.TRANSGENDER_OR_NON_CONFORMING
    assert record.means == (Means.DECEPTION,)  # the criteria's answers, kept as data
    assert record.recruitment_methods == (RecruitmentMethod.INTERNET, RecruitmentMethod.JOB_OFFER)
    assert record.online_platforms == (OnlinePlatform.TELEGRAM,)
    assert record.methods_of_control == (ControlMethod.RESTRICTS_MOVEMENT,)
    assert record.labour_industries == (LabourIndustry.TEXTILES,)
    assert record.vulnerabilities == (Vulnerability.BANNED_FROM_REENTRY, Vulnerability.LGBTQI)
    # Not given: not recorded, and the sex stands for the gender.
    plain = _record()
    assert plain.gender is None and plain.recruitment_methods == () and plain.means


def test_online_platforms_need_internet_among_the_recruitment_methods() -> None:
    body = screening().model_dump(mode="json")
    body["online_platforms"] = ["telegram"]
    with pytest.raises(CommandRejection) as refused:
        parse_command(ScreeningInterview, json.dumps(body).encode())
    assert [(e.field, e.code) for e in refused.value.errors] == [
        ("online_platforms", ErrorCode.INVALID_FIELD)
    ]


def test_an_event_stored_before_the_standard_fields_still_reads() -> None:
    stored = _record().model_dump(mode="json")
    for name in (
        "gender",
        "means",
        "recruitment_methods",
        "online_platforms",
        "methods_of_control",
        "labour_industries",
        "sexual_exploitation_types",
    ):
        del stored[name]
    event = decode_event_data("victim.identified", 1, stored)
    assert isinstance(event, VictimIdentified)
    assert event.gender is None and event.means == () and event.labour_industries == ()


@pytest.mark.parametrize("gender", list(Gender))
def test_a_shelter_bed_follows_the_sex_whatever_the_gender(gender: Gender) -> None:
    for sex, category in ((Sex.FEMALE, ShelterCategory.WOMEN), (Sex.MALE, ShelterCategory.MEN)):
        record = _record(sex=sex, gender=gender)
        [(_, requested)] = plan_referrals(record, REGISTRY, NOW, dt.timedelta(hours=72))
        assert requested.placement_category is category


def _env(event: Any) -> Any:
    return wrap_event(
        event,
        event_id=uuid.uuid4(),
        source="urn:nrm-hub:kg:test",
        time=NOW,
        correlation_id=None,
        causation_id=None,
    )


def _state(consented: bool = False) -> Any:
    """Six identified victims recruited online on Telegram into textile workshops (gender
    recorded for them), and two women with nothing of the standard recorded."""
    records = [_record(**DETAILS) for _ in range(6)] + [_record(sex=Sex.FEMALE) for _ in range(2)]
    envelopes = [_env(r) for r in records]
    if consented:
        envelopes += [_env(_statistics_consent(r)) for r in records]
    return fold(envelopes)


def _rows(state: Any, field: str) -> dict[str, int]:
    table = count(state, Query("cases", (field,), (("status", "identified"),)), NOW)
    return {r: n for r, n in zip(table.rows, table.row_totals, strict=True) if n}


def test_nrm_stats_counts_the_standard_fields() -> None:
    state = _state()
    assert _rows(state, "gender") == {"transgender_or_non_conforming": 6, "female": 2}
    assert _rows(state, "recruitment") == {"internet": 6, "job_offer": 6, "not_recorded": 2}
    assert _rows(state, "online_platform") == {"telegram": 6, "not_recorded": 2}
    assert _rows(state, "means") == {"deception": 8}
    assert _rows(state, "control") == {"restricts_movement": 6, "not_recorded": 2}
    assert _rows(state, "labour_industry") == {"textiles": 6, "not_recorded": 2}
    assert _rows(state, "sexual_exploitation") == {
        "remote_interactive_services": 6,
        "not_recorded": 2,
    }
    assert _rows(state, "vulnerability") == {
        "banned_from_reentry": 6,
        "lgbtqi": 6,
        "not_recorded": 2,
    }


def test_htcds_exports_gender_and_every_standard_field() -> None:
    state = _state()
    combos = list(csv.DictReader(io.StringIO(export(state, NOW))))
    genders = {r["prs_Gender"]: r["nrm_Count"] for r in combos if r["prs_Gender"] != "(all)"}
    assert genders == {"Transgender/NonConforming": "6", "Female": "2"}
    rows = list(csv.DictReader(io.StringIO(export_fields(state, NOW))))
    found = {(r["htcds_Field"], r["htcds_Value"], r["nrm_Value"]): r["nrm_Count"] for r in rows}
    assert found[("vic_RecruitmentWebsitesAndApps", "Telegram", "telegram")] == "6"
    assert found[("vic_MethodOfRecruitment", "Internet", "internet")] == "6"
    assert found[("vic_MethodsOfControl", "FalsePromises", "deception")] == "8"
    assert found[("vic_MethodsOfControl", "RestrictsMovement", "restricts_movement")] == "6"
    assert found[("vic_TypeOfLabourExploitation", "Manufacturing", "textiles")] == "6"
    assert found[("vic_LabourIndustry", "C_Manufacturing", "textiles")] == "6"
    assert (
        found[
            (
                "vic_TypeOfSexExploitation",
                "RemoteInteractiveServices",
                "remote_interactive_services",
            )
        ]
        == "6"
    )
    assert found[("vic_Vulnerabilities", "Migration", "banned_from_reentry")] == "6"
    assert found[("vic_Vulnerabilities", "", "female_victim_of_crime")] == "0"
    assert found[("prs_Gender", "(all)", "(all)")] == "8"  # a single-valued field's total
    assert {r["htcds_Field"] for r in rows} == {f for f, _, _ in FIELDS}


def test_every_hub_value_has_its_place_in_the_htcds_mapping() -> None:
    from services.statistics.tables import UNITS

    for _, hub, mapping in FIELDS:
        values = UNITS["cases"].dimension(hub).values
        assert values is not None
        assert set(values) - {"not_recorded"} <= set(mapping), hub


def test_public_standard_fields_hide_small_counts() -> None:
    state = _state(consented=True)
    rows = list(csv.DictReader(io.StringIO(export_fields(state, NOW, public=True, threshold=5))))
    counts = {(r["htcds_Field"], r["nrm_Value"]): r["nrm_Count"] for r in rows}
    assert counts[("vic_RecruitmentWebsitesAndApps", "telegram")] == "6"
    assert counts[("vic_RecruitmentWebsitesAndApps", "not_recorded")] == "x"  # 2 < 5
    assert all(n == "x" or int(n) >= 5 for n in counts.values())
