"""The statistics report renders in a real headless browser, offline: the charts drawn when
the page opens carry the same figures as the tables, and the public page shows no count below
the threshold. Chromium comes from Debian (`make test` installs it when missing)."""

from __future__ import annotations

import shutil
import subprocess
from collections import defaultdict
from html.parser import HTMLParser
from pathlib import Path

import pytest

from services.i18n.catalogue import language
from services.statistics.projection import StatsState, fold
from services.statistics.publish import STANDARD, Figures, Published, figures
from services.statistics.report import write_report
from tests.unit.synthetic_stats import REPORT_AT, generate

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("chromium is not installed: `make test` installs it (apt-get install chromium)")
    return found


class _Dom(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.bars: list[dict[str, str | None]] = []
        self.body: dict[str, str | None] = {}
        self.references: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "body":
            self.body = a
        if tag == "rect" and a.get("class") == "bar":
            self.bars.append(a)
        self.references += [v or "" for k, v in attrs if k in ("src", "href")]


def render_in_browser(page: Path, profile: Path) -> _Dom:
    done = subprocess.run(
        [chromium(), *FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    dom = _Dom()
    dom.feed(done.stdout.decode())
    return dom


def _table(f: Figures, unit: str, by: tuple[str, ...]) -> Published:
    return next(t for t in f.tables if t.query.unit == unit and t.query.by == by)


def _bars(dom: _Dom, chart: str) -> dict[tuple[str, str], int]:
    found: dict[tuple[str, str], int] = {}
    for bar in dom.bars:
        if bar.get("data-chart") == chart and bar.get("data-value") is not None:
            found[(str(bar["data-label"]), str(bar["data-series"]))] = int(str(bar["data-value"]))
    return found


@pytest.fixture(scope="module")
def state() -> StatsState:
    return fold(generate(seed=5, n=300).envelopes)


def test_the_report_draws_the_figures_when_opened_offline(
    state: StatsState, tmp_path: Path
) -> None:
    result = figures(state, STANDARD, REPORT_AT)
    page = write_report(result, tmp_path / "report")
    source = page.read_text()
    assert "default-src 'none'" in source  # the browser may load nothing from anywhere
    dom = render_in_browser(page, tmp_path / "profile")
    assert dom.body.get("data-rendered") == "charts"
    assert dom.references == []  # no link, script or image to fetch

    months = _table(result, "cases", ("month", "region"))
    per_month: dict[str, int] = defaultdict(int)
    for (month, _region), value in _bars(dom, "chart-months").items():
        per_month[month] += value
    assert dict(per_month) == {
        m: n for m, n in zip(months.rows, months.row_totals, strict=True) if n
    }
    regions = {label: v for (label, _), v in _bars(dom, "chart-regions").items()}
    expected_regions = {c[0]: n for c, n in zip(months.cols, months.col_totals, strict=True) if n}
    assert regions == expected_regions and sum(regions.values()) == months.total

    referrals = _table(result, "referrals", ("service", "outcome"))
    assert _bars(dom, "chart-referrals") == {
        (service, outcome[0]): n
        for service, row in zip(referrals.rows, referrals.cells, strict=True)
        for outcome, n in zip(referrals.cols, row, strict=True)
        if n
    }
    forms = _table(result, "cases", ("form", "age_group"))
    assert sum(_bars(dom, "chart-forms").values()) == forms.total

    placements = _table(result, "placements", ("category", "status"))
    resident = placements.cols.index(("resident",))
    residents = {
        label: v
        for (label, series), v in _bars(dom, "chart-occupancy").items()
        if series == "residents"
    }
    assert residents == {
        c: row[resident]
        for c, row in zip(placements.rows, placements.cells, strict=True)
        if row[resident]
    }
    assert (tmp_path / "report" / "all.csv").read_text().count("\n") > 100


def test_the_public_report_shows_no_count_below_the_threshold(
    state: StatsState, tmp_path: Path
) -> None:
    result = figures(state, STANDARD, REPORT_AT, public=True, threshold=5)
    page = write_report(result, tmp_path / "public")
    dom = render_in_browser(page, tmp_path / "profile")
    assert dom.body.get("data-rendered") == "charts"
    shown = [int(str(b["data-value"])) for b in dom.bars if b.get("data-value") is not None]
    assert shown and min(shown) >= 5
    regions = _bars(dom, "chart-regions")
    assert sum(regions.values()) <= _table(result, "cases", ("month", "region")).total


def _has_font_for(char: str) -> bool:
    found = subprocess.run(
        ["fc-list", f":charset={ord(char):x}", "family"], capture_output=True, text=True, check=True
    )
    return bool(found.stdout.strip())


@pytest.mark.parametrize(
    ("code", "heading", "word"),
    [
        ("ru", "Национальный механизм перенаправления: статистика", "г. Бишкек"),
        ("ky", "Улуттук жолдомо механизми: статистика", "Бишкек шаары"),
    ],
)
def test_the_report_renders_in_russian_and_kyrgyz_with_every_glyph(
    state: StatsState, tmp_path: Path, code: str, heading: str, word: str
) -> None:
    result = figures(state, STANDARD, REPORT_AT)
    page = write_report(result, tmp_path / code, lang=language(code))
    shot = tmp_path / f"{code}.png"
    done = subprocess.run(
        [
            chromium(),
            *FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=1200,3000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    text = done.stdout.decode()
    assert heading in text
    assert f">{word}<" in text  # a chart label the script drew, in the page's language
    assert shot.stat().st_size > 10_000  # the page was painted
    letters = {ch for ch in text if ord(ch) > 0x7F}
    assert any(ch in letters for ch in "өүң") or code == "ru"
    missing = sorted(ch for ch in letters if not _has_font_for(ch))
    assert missing == [], f"no installed font draws {missing}"
