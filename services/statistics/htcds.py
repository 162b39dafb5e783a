"""Counts of identified victims under the field names of the Human Trafficking Case Data
Standard (HTCDS, IOM, github.com/UNMigration/HTCDS), for international reporting.

HTCDS describes case records; the hub exports aggregate counts instead (one row per
combination of values, with `nrm_Count`), never a record per person. A column has its HTCDS
name where the hub holds the same thing, and an `nrm_` name where HTCDS has no such field.
The mapping, and what does not map, is in docs/STATISTICS.md.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import Counter

from contracts.vocabulary import (
    ControlMethod,
    FormOfExploitation,
    Gender,
    LabourIndustry,
    Means,
    OnlinePlatform,
    RecruitmentMethod,
    SexualExploitationType,
    Vulnerability,
)
from services.statistics.disclosure import suppress
from services.statistics.projection import CaseFacts, StatsState
from services.statistics.publish import HIDDEN, STANDARD, Published, figures
from services.statistics.tables import ALL, UNITS, Query

COLUMNS = (
    "nrm_Year",
    "prs_Gender",
    "nrm_AgeGroup",
    "prs_Nationality",
    "vic_TypeOfExploitation",
    "vic_LocationOfExploitation",
    "nrm_Count",
)
OTHER_COMBINATIONS = "(other)"

# The hub's forms of exploitation -> HTCDS vic_TypeOfExploitation values.
TYPE_OF_EXPLOITATION: dict[str, str] = {
    FormOfExploitation.SEX_TRAFFICKING: "SexualExploitation",
    FormOfExploitation.ONLINE_SEXUAL_EXPLOITATION: "SexualExploitation",
    FormOfExploitation.FORCED_LABOUR: "ForcedLabour",
    FormOfExploitation.DOMESTIC_SERVITUDE: "ForcedLabour",
    FormOfExploitation.FORCED_CRIMINALITY: "IllicitActivities",
    FormOfExploitation.FORCED_BEGGING: "Begging",
    FormOfExploitation.FORCED_MARRIAGE: "ForcedMarriage",
    FormOfExploitation.ORGAN_REMOVAL: "OrganRemoval",
    FormOfExploitation.ARMED_CONFLICT: "ForcedMilitaryService",
}
# The recorded gender, else the sex -> HTCDS prs_Gender.
GENDER: dict[str, str] = {
    Gender.FEMALE: "Female",
    Gender.MALE: "Male",
    Gender.TRANSGENDER_OR_NON_CONFORMING: "Transgender/NonConforming",
    Gender.UNKNOWN: "Unknown",
}


def htcds_row(case: CaseFacts) -> tuple[str, ...]:
    types = sorted({TYPE_OF_EXPLOITATION[f] for f in case.forms}) or ["Unknown"]
    return (
        str(case.interviewed_on.year),
        GENDER[case.gender or case.sex],
        "Child" if case.is_child else "Adult",
        case.citizenship,
        ";".join(types),  # HTCDS multiselect: one row per combination, a case counts once
        case.country_of_exploitation or "Unknown",
    )


def _public_total_hidden(
    state: StatsState, at: dt.datetime, threshold: int, start: dt.date | None, end: dt.date | None
) -> bool:
    tables = figures(state, STANDARD, at, public=True, threshold=threshold, start=start, end=end)
    by_region = next(t for t in tables.tables if t.query.by == ("region", "sex"))
    return by_region.total is None


def export(
    state: StatsState,
    at: dt.datetime,
    *,
    public: bool = False,
    threshold: int = 5,
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> str:
    """CSV of identified victims by HTCDS fields. Public: consented cases only; combinations
    seen fewer than `threshold` times are pooled as `(other)`, and the rows and total are
    suppressed like any public table."""
    allowed = state.publishable_cases(at) if public else None
    counted: Counter[tuple[str, ...]] = Counter(
        htcds_row(c)
        for c in state.all_cases()
        if c.status == "identified"
        and (start is None or c.interviewed_on >= start)
        and (end is None or c.interviewed_on <= end)
        and (allowed is None or id(c) in allowed)
    )
    rows = sorted(counted.items())
    counts: list[int | None] = [n for _, n in rows]
    total: int | None = sum(n for _, n in rows)
    if public:
        kept = [(k, n) for k, n in rows if n >= threshold]
        pooled = sum(n for _, n in rows if n < threshold)
        rows = [*kept, ((OTHER_COMBINATIONS,) * (len(COLUMNS) - 1), pooled)]
        # The total is the identified victims of the period, which the public tables also
        # print: hide it here whenever they hide it.
        hide = [(len(rows), 0)] if _public_total_hidden(state, at, threshold, start, end) else []
        hidden = suppress([[n] for _, n in rows], threshold, hide=hide)
        counts = [None if h[0] else n for (_, n), h in zip(rows, hidden.cells, strict=True)]
        total = None if hidden.total else total
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for (key, _), n in zip(rows, counts, strict=True):
        writer.writerow([*key, "x" if n is None else n])
    writer.writerow([*(["(all)"] * (len(COLUMNS) - 1)), "x" if total is None else total])
    return out.getvalue()


# --- The data-standard fields, one at a time (`nrm stats htcds --fields`) -------------------
# Each HTCDS field is a count of identified victims per hub value, with the HTCDS value it
# maps to: a multiselect field counts a person once under each value, so its rows are
# mentions. The hub value is kept beside the HTCDS one because several hub values may map to
# one HTCDS value (summing them is the reader's choice) and some have no HTCDS value ("").

RECRUITMENT: dict[str, str] = {
    RecruitmentMethod.ABDUCTION: "Abduction",
    RecruitmentMethod.EDUCATIONAL_FACILITY: "EducationalFacility",
    RecruitmentMethod.FAMILIAL: "Familial",
    RecruitmentMethod.INTERNET: "Internet",
    RecruitmentMethod.MARRIAGE_BROKER: "InternationalMarriageBroker",
    RecruitmentMethod.INTIMATE_PARTNER: "IntimatePartnerOrMarriageProposition",
    RecruitmentMethod.JOB_OFFER: "JobOfferOrAdvertisement",
    RecruitmentMethod.POSING_AS_BENEFACTOR: "PosingAsBenefactor",
    RecruitmentMethod.PUBLIC_AREA: "PublicArea",
    RecruitmentMethod.OFFER_OF_ACCOMMODATION: "OfferOfAccommodation",
    RecruitmentMethod.SHELTER: "Shelter",
    RecruitmentMethod.SMUGGLING: "SmugglingRansom",
    RecruitmentMethod.WORK: "Work",
    RecruitmentMethod.OTHER: "Other",
    RecruitmentMethod.UNKNOWN: "Unknown",
}
PLATFORMS: dict[str, str] = {
    OnlinePlatform.FACEBOOK: "Facebook",
    OnlinePlatform.INSTAGRAM: "Instagram",
    OnlinePlatform.WHATSAPP: "WhatsApp",
    OnlinePlatform.TELEGRAM: "Telegram",
    OnlinePlatform.FACEBOOK_MESSENGER: "FacebookMessenger",
    OnlinePlatform.VIBER: "Viber",
    OnlinePlatform.SNAPCHAT: "SnapChat",
    OnlinePlatform.TIKTOK: "TikTok",
    OnlinePlatform.TWITTER: "Twitter",
    OnlinePlatform.WECHAT: "WeChat",
    # Networks and kinds of site HTCDS does not list.
    OnlinePlatform.ODNOKLASSNIKI: "Other",
    OnlinePlatform.VKONTAKTE: "Other",
    OnlinePlatform.JOB_SITE: "Other",
    OnlinePlatform.DATING_SITE: "Other",
    OnlinePlatform.CLASSIFIED_ADS: "Other",
    OnlinePlatform.OTHER: "Other",
}
# HTCDS value names of vic_MethodsOfControl are the CamelCase of the hub's.
CONTROL: dict[str, str] = {
    m: "".join(part.capitalize() for part in m.value.split("_")) for m in ControlMethod
}
# The screening's means answers, as methods of control.
MEANS: dict[str, str] = {
    Means.THREAT: "Threats",
    Means.FORCE: "PhysicalAbuse",
    Means.COERCION: "PsychologicalAbuse",
    Means.ABDUCTION: "Other",
    Means.FRAUD: "FalsePromises",
    Means.DECEPTION: "FalsePromises",
    Means.ABUSE_OF_POWER: "Other",
    Means.ABUSE_OF_VULNERABILITY: "Other",
    Means.PAYMENT_TO_CONTROLLER: "Other",
    Means.DEBT_BONDAGE: "DebtBondage",
    Means.DOCUMENT_CONFISCATION: "WithholdsDocuments",
}
LABOUR_TYPE: dict[str, str] = {
    LabourIndustry.AGRICULTURE: "Agriculture",
    LabourIndustry.CONSTRUCTION: "Construction",
    LabourIndustry.TEXTILES: "Manufacturing",
    LabourIndustry.OTHER_MANUFACTURING: "Manufacturing",
    LabourIndustry.DOMESTIC_WORK: "DomesticWork",
    LabourIndustry.CHILDCARE: "DomesticWork",
    LabourIndustry.HOSPITALITY: "Hospitality",
    LabourIndustry.RETAIL_AND_MARKETS: "Peddling",
    LabourIndustry.TRANSPORT: "Transportation",
    LabourIndustry.MINING: "MiningOrDrilling",
    LabourIndustry.BEGGING: "Begging",
    LabourIndustry.ILLICIT_ACTIVITIES: "IllicitActivities",
    LabourIndustry.OTHER_SERVICES: "Other",
    LabourIndustry.OTHER: "Other",
}
# ISIC rev. 4 sections, as HTCDS's vic_LabourIndustry names them.
ISIC: dict[str, str] = {
    LabourIndustry.AGRICULTURE: "A_AgricultureForestryAndFishing",
    LabourIndustry.CONSTRUCTION: "F_Construction",
    LabourIndustry.TEXTILES: "C_Manufacturing",
    LabourIndustry.OTHER_MANUFACTURING: "C_Manufacturing",
    LabourIndustry.DOMESTIC_WORK: "T_ActivitiesOfHouseholdsAsEmployers",
    LabourIndustry.CHILDCARE: "T_ActivitiesOfHouseholdsAsEmployers",
    LabourIndustry.HOSPITALITY: "I_AccommodationAndFoodServiceActivities",
    LabourIndustry.RETAIL_AND_MARKETS: "G_WholesaleAndRetailTradeRepairOfMotorVehicles",
    LabourIndustry.TRANSPORT: "H_TransportationAndStorage",
    LabourIndustry.MINING: "B_MiningAndQuarrying",
    LabourIndustry.BEGGING: "",
    LabourIndustry.ILLICIT_ACTIVITIES: "",
    LabourIndustry.OTHER_SERVICES: "S_OtherServiceActivities",
    LabourIndustry.OTHER: "",
}
SEX_TYPE: dict[str, str] = {
    SexualExploitationType.PROSTITUTION: "Prostitution",
    SexualExploitationType.PORNOGRAPHY: "Pornography",
    SexualExploitationType.REMOTE_INTERACTIVE_SERVICES: "RemoteInteractiveServices",
    SexualExploitationType.PRIVATE_SEXUAL_SERVICES: "PrivateSexualServices",
}
# HTCDS's vulnerabilities are few and of another kind; "" where none fits.
VULNERABILITIES: dict[str, str] = {
    Vulnerability.DISABILITY: "DisabilityAndPhysicalHealth",
    Vulnerability.HEALTH_CONDITION: "DisabilityAndPhysicalHealth",
    Vulnerability.SUBSTANCE_DEPENDENCE: "Addiction",
    Vulnerability.FOREIGN_NATIONAL: "Migration",
    Vulnerability.DISPLACEMENT: "Migration",
    Vulnerability.RETURNED_MIGRANT: "Migration",
    Vulnerability.BANNED_FROM_REENTRY: "Migration",
    Vulnerability.DEBT: "Poverty",
    Vulnerability.LGBTQI: "Discrimination",
    Vulnerability.CHILD_ON_THE_STREET: "Homelessness",
    Vulnerability.PREGNANCY: "",
    Vulnerability.NO_DOCUMENTS: "",
    Vulnerability.UNACCOMPANIED_CHILD: "",
    Vulnerability.IN_COMMERCIAL_SEX: "",
    Vulnerability.CHILD_IN_STATE_CARE: "",
    Vulnerability.FEMALE_VICTIM_OF_CRIME: "",
}

# (HTCDS field, hub field of `nrm stats --of cases`, hub value -> HTCDS value)
FIELDS: tuple[tuple[str, str, dict[str, str]], ...] = (
    ("prs_Gender", "gender", GENDER),
    ("vic_MethodOfRecruitment", "recruitment", RECRUITMENT),
    ("vic_RecruitmentWebsitesAndApps", "online_platform", PLATFORMS),
    ("vic_MethodsOfControl", "means", MEANS),
    ("vic_MethodsOfControl", "control", CONTROL),
    ("vic_TypeOfLabourExploitation", "labour_industry", LABOUR_TYPE),
    ("vic_LabourIndustry", "labour_industry", ISIC),
    ("vic_TypeOfSexExploitation", "sexual_exploitation", SEX_TYPE),
    ("vic_Vulnerabilities", "vulnerability", VULNERABILITIES),
)
FIELD_COLUMNS = ("htcds_Field", "htcds_Value", "nrm_Field", "nrm_Value", "nrm_Count")
_IDENTIFIED = (("status", "identified"),)


def field_queries() -> tuple[Query, ...]:
    return tuple(
        Query("cases", (hub,), _IDENTIFIED, title=f"HTCDS {field} ({hub})")
        for field, hub, _ in FIELDS
    )


def export_fields(
    state: StatsState,
    at: dt.datetime,
    *,
    public: bool = False,
    threshold: int = 5,
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> str:
    """CSV of identified victims per value of each data-standard field. Public: counted
    with the standard tables, so a figure they share (the identified total) is hidden in
    both or in neither; consented cases only, small counts and what reveals them hidden."""
    queries = field_queries()
    result = figures(
        state, (*STANDARD, *queries), at, public=public, threshold=threshold, start=start, end=end
    )
    titles = {q.title for q in queries}
    tables: dict[str, Published] = {
        t.query.title: t for t in result.tables if t.query.title in titles
    }
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(FIELD_COLUMNS)
    for (field, hub, mapping), query in zip(FIELDS, queries, strict=True):
        table = tables[query.title]
        for value, count in zip(table.rows, table.row_totals, strict=True):
            htcds = mapping.get(value, "")  # not_recorded, or no HTCDS value: ""
            writer.writerow([field, htcds, hub, value, HIDDEN if count is None else count])
        if not UNITS["cases"].dimension(hub).multi:  # single-valued: its total is persons
            total = table.total
            writer.writerow([field, ALL, hub, ALL, HIDDEN if total is None else total])
    return out.getvalue()
