"""The statistics in English, Russian and Kyrgyz: every code, field name, table title and line
of text the outputs use has a word in each language; the outputs for people use them, JSON
keeps the codes; a hub lists its own country's regions, not its partners'."""

from __future__ import annotations

import csv
import io
import json

import pytest

from services.i18n.catalogue import LANGUAGES, LOCALE_DIR, language
from services.statistics.projection import StatsState, fold
from services.statistics.publish import STANDARD, as_csv, as_json, as_text, figures
from services.statistics.report import CHARTS, render
from services.statistics.tables import PERIODS, UNITS, Query, count
from tests.unit.synthetic_stats import REPORT_AT, generate

CYRILLIC = range(0x0400, 0x0500)


@pytest.fixture(scope="module")
def state() -> StatsState:
    return fold(generate(seed=3, n=150).envelopes)


def _codes() -> set[str]:
    return {v for unit in UNITS.values() for d in unit.dimensions for v in (d.values or ())}


def _fields() -> set[str]:
    names = {d.name for unit in UNITS.values() for d in unit.dimensions}
    return names | set(PERIODS) | {"count", "total", "table", "unit"}


def _titles() -> set[str]:
    return {q.title for q in STANDARD} | {title for _, title, *_ in CHARTS}


@pytest.mark.parametrize("code", LANGUAGES)
def test_every_code_field_and_title_has_a_word_in_each_language(code: str) -> None:
    lang = language(code)
    missing = [c for c in _codes() if not lang.has(c, "code")]
    missing += [f"field {f}" for f in _fields() if not lang.has(f, "field")]
    if code != "en":  # English text is its own msgid
        missing += [f"title {t}" for t in _titles() if not lang.has(t)]
    assert missing == []


def test_russian_and_kyrgyz_translate_everything_english_has() -> None:
    english = (LOCALE_DIR / "en" / "LC_MESSAGES" / "nrm.po").read_text()
    assert english.count("msgid") > 200
    en = language("en")
    for code in ("ru", "ky"):
        lang = language(code)
        for msgid in en._catalog:  # every entry of the catalogue, with its context
            if msgid.id:
                assert lang.has(str(msgid.id), msgid.context), (code, msgid.id)


def test_text_tables_and_csv_headers_are_in_the_chosen_language(state: StatsState) -> None:
    result = figures(state, STANDARD, REPORT_AT)
    russian = as_text(result, language("ru"))
    assert "Идентифицированные жертвы по регионам и полу" in russian
    assert "г. Бишкек" in russian and "bishkek_city" not in russian
    assert sum(1 for ch in russian if ord(ch) in CYRILLIC) > 1000
    kyrgyz = as_text(result, language("ky"))
    assert "Бишкек шаары" in kyrgyz and any(ch in kyrgyz for ch in "өүң")
    header = next(csv.reader(io.StringIO(as_csv(result.tables, lang=language("ru")))))
    assert header[:2] == ["таблица", "единица"] and header[-1] == "число"
    english = as_text(result)  # the default: English words, not codes
    assert "Bishkek city" in english and "Identified victims by region and sex" in english
    # JSON is for programs: codes, whatever the language.
    assert "bishkek_city" in as_json(result) and "Бишкек" not in as_json(result)


def test_the_report_page_is_in_the_chosen_language(state: StatsState) -> None:
    page = render(figures(state, STANDARD, REPORT_AT), lang=language("ky"))
    assert "<html lang='ky'>" in page
    assert "Улуттук жолдомо механизми: статистика" in page
    words = json.loads(page.split("id='words'>", 1)[1].split("</script>", 1)[0])
    assert words["bishkek_city"] == "Бишкек шаары" and words["free beds"] == "бош орундар"


def test_a_hub_lists_its_own_regions_and_abroad_not_its_partners(state: StatsState) -> None:
    """A partner's region shows only when something was counted in it."""
    assert state.country == "kg"
    seen = {c.region for c in state.all_cases()}
    rows = set(count(state, Query("cases", ("region",)), REPORT_AT).rows)
    assert {"abroad", "bishkek_city", "naryn"} <= rows
    assert {r for r in rows if r.startswith(("kz_", "uz_"))} <= seen
    empty_kg = fold([])
    empty_kg.country = "kg"
    assert not any(
        r.startswith(("kz_", "uz_"))
        for r in count(empty_kg, Query("cases", ("region",)), REPORT_AT).rows
    )
    kz = fold([])
    kz.country = "kz"
    kz_rows = count(kz, Query("cases", ("region",)), REPORT_AT).rows
    assert "kz_almaty_city" in kz_rows and "abroad" in kz_rows and "naryn" not in kz_rows
