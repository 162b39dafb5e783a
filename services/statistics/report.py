"""`nrm stats report --out DIR`: one HTML page with charts, and the same figures as CSV.

The page is self-contained: the figures are embedded as JSON, a short inline script draws
the charts as SVG when the page opens, every table is also printed as an HTML table (what
shows without scripts), and a Content-Security-Policy forbids loading anything from
anywhere. It opens from a USB stick on a machine with no network.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

from services.i18n.catalogue import Language, language
from services.statistics.publish import HIDDEN, Figures, Published, as_csv

CHARTS = (
    # (element id, title, unit, by, orientation)
    (
        "chart-months",
        "Identifications by month (stacked by region)",
        "cases",
        ("month", "region"),
        "vertical",
    ),
    ("chart-regions", "Identifications by region", "cases", ("month", "region"), "regions"),
    (
        "chart-forms",
        "Forms of exploitation (child / adult)",
        "cases",
        ("form", "age_group"),
        "horizontal",
    ),
    (
        "chart-referrals",
        "Referral outcomes by service",
        "referrals",
        ("service", "outcome"),
        "horizontal",
    ),
    (
        "chart-occupancy",
        "Shelter occupancy now: residents, free beds, people waiting",
        "placements",
        ("category", "status"),
        "occupancy",
    ),
    (
        "chart-shelter",
        "Shelter placements by category and status",
        "placements",
        ("category", "status"),
        "horizontal",
    ),
)

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:70rem;color:#222;padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.15rem;margin-top:2.2rem}
.note{color:#555;font-size:.9rem}.charts{display:grid;grid-template-columns:1fr;gap:1.5rem}
figure{margin:0;border:1px solid #ddd;border-radius:6px;padding:.8rem}
figcaption{font-weight:600;margin-bottom:.4rem}
table{border-collapse:collapse;font-size:.85rem;margin:.4rem 0}
td,th{border:1px solid #ddd;padding:.15rem .5rem;text-align:right}
th:first-child,td:first-child{text-align:left}
.legend span{display:inline-block;margin-right:.8rem;font-size:.8rem}
.legend i{display:inline-block;width:.8rem;height:.8rem;margin-right:.25rem;vertical-align:-1px}
svg text{font-size:11px;fill:#333}
@media print{
body{margin:0;max-width:none;font-size:10pt}
.charts{display:block}figure{break-inside:avoid;page-break-inside:avoid;margin-bottom:.6rem}
svg.chart{max-width:100%;height:auto}
h3{break-after:avoid;page-break-after:avoid}
table{width:100%;table-layout:fixed;font-size:8pt;break-inside:auto}
tr{break-inside:avoid;page-break-inside:avoid}
td,th{padding:.05rem .2rem;overflow-wrap:anywhere}
thead{display:table-header-group}
}
"""

# Draws stacked bar charts from the embedded figures. No library: a few dozen lines.
_SCRIPT = """
(function () {
  var F = JSON.parse(document.getElementById('figures').textContent);
  var WORDS = JSON.parse(document.getElementById('words').textContent);
  function word(code) { return WORDS[code] || code; }
  var NS = 'http://www.w3.org/2000/svg';
  var COLOURS = ['#1f77b4','#ff7f0e','#2ca02c','#d62728','#9467bd','#8c564b','#e377c2',
                 '#7f7f7f','#bcbd22','#17becf','#393b79','#637939'];
  function el(name, attrs, parent) {
    var e = document.createElementNS(NS, name);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }
  function find(unit, by) {
    return F.tables.filter(function (t) {
      return t.unit === unit && t.by.join(',') === by.join(',');
    })[0];
  }
  // {labels, series:[{name, values}], totals} from a table's entries.
  function shape(t, kind) {
    var rowF = t.by[0], colF = t.by[1], labels = [], seriesNames = [], cell = {}, totals = {};
    t.entries.forEach(function (e) {
      var r = e[rowF], c = e[colF];
      if (r === '(all)' && c === '(all)') return;
      if (c === '(all)') { totals[r] = e.count; if (labels.indexOf(r) < 0) labels.push(r); return; }
      if (r === '(all)') { totals['col:' + c] = e.count; return; }
      if (labels.indexOf(r) < 0) labels.push(r);
      if (seriesNames.indexOf(c) < 0) seriesNames.push(c);
      cell[r + '\\u0000' + c] = e.count;
    });
    if (kind === 'occupancy') {
      var cats = labels.filter(function (c) { return F.shelter_capacity[c] !== undefined; });
      var at = function (c, st) {
        var v = cell[c + '\\u0000' + st];
        return v === undefined ? null : v;
      };
      // Free beds only where residents are published: otherwise they would reveal them.
      return {labels: cats, totals: cats.map(function (c) {
          return F.shelter_capacity[c] + ' ' + word('beds'); }),
        series: [
          {name: 'residents', values: cats.map(function (c) { return at(c, 'resident'); })},
          {name: 'free beds', values: cats.map(function (c) {
            var r = at(c, 'resident');
            return r === null ? null : Math.max(F.shelter_capacity[c] - r, 0); })},
          {name: 'waiting', values: cats.map(function (c) { return at(c, 'waiting'); })},
        ].filter(function (s) { return s.values.some(function (v) { return v; }); })};
    }
    if (kind === 'regions') {
      return {labels: seriesNames, series: [{name: 'identified', values: seriesNames.map(
        function (c) { return totals['col:' + c]; })}], totals: seriesNames.map(
        function (c) { return totals['col:' + c]; })};
    }
    var series = seriesNames.map(function (c) {
      return {name: c, values: labels.map(function (r) { return cell[r + '\\u0000' + c]; })};
    });
    // Where some parts are hidden but the total is published, the rest of the bar is the
    // hidden parts together: total minus the published parts, itself derivable from them.
    var rest = labels.map(function (r) {
      var t = totals[r], sum = 0, hidden = false;
      series.forEach(function (s) {
        var v = s.values[labels.indexOf(r)];
        if (v === null) hidden = true; else sum += v || 0;
      });
      return hidden && typeof t === 'number' ? t - sum : null;
    });
    series.push({name: 'hidden (x)', values: rest, grey: true});
    return {labels: labels, totals: labels.map(function (r) { return totals[r]; }),
      series: series.filter(function (s) { return s.values.some(function (v) { return v; }); })};
  }
  function draw(spec) {
    var holder = document.getElementById(spec.id);
    var t = find(spec.unit, spec.by);
    if (!t) return;
    var d = shape(t, spec.kind);
    var vertical = spec.kind === 'vertical';
    var max = 1;
    d.labels.forEach(function (l, i) {
      var sum = 0;
      d.series.forEach(function (s) { sum += s.values[i] || 0; });
      max = Math.max(max, sum, typeof d.totals[i] === 'number' ? d.totals[i] : 0);
    });
    var band = vertical ? 28 : 22, pad = vertical ? 40 : 170, len = 520;
    var w = vertical ? pad + d.labels.length * band + 20 : pad + len + 60;
    var h = vertical ? len * 0.5 + 70 : d.labels.length * band + 20;
    var svg = el('svg', {width: w, height: h, role: 'img', 'class': 'chart',
                         'aria-label': spec.title}, holder);
    var scale = (vertical ? len * 0.5 : len) / max;
    d.labels.forEach(function (label, i) {
      var offset = 0;
      d.series.forEach(function (s, k) {
        var v = s.values[i];
        if (!v) return;
        var size = v * scale, r;
        if (vertical) {
          r = el('rect', {x: pad + i * band, y: 20 + len * 0.5 - offset - size,
                          width: band - 6, height: size}, svg);
        } else {
          r = el('rect', {x: pad + offset, y: 10 + i * band, width: size, height: band - 6}, svg);
        }
        r.setAttribute('class', 'bar');
        r.setAttribute('data-chart', spec.id);
        r.setAttribute('fill', s.grey ? '#bbbbbb' : COLOURS[k % COLOURS.length]);
        r.setAttribute('data-label', label);
        r.setAttribute('data-series', s.name);
        if (!s.grey) r.setAttribute('data-value', v);
        el('title', {}, r).textContent = word(label) + ' / ' + word(s.name)
          + (s.grey ? '' : ': ' + v);
        offset += size;
      });
      var total = d.totals[i] === null || d.totals[i] === undefined ? 'x' : d.totals[i];
      var tl;
      if (vertical) {
        tl = el('text', {x: pad + i * band + (band - 6) / 2, y: 20 + len * 0.5 + 14,
                         'text-anchor': 'end',
                         transform: 'rotate(-60 ' + (pad + i * band + 10) + ' '
                                    + (20 + len * 0.5 + 14) + ')'}, svg);
        tl.textContent = word(label);
        el('text', {x: pad + i * band, y: 14 + len * 0.5 - offset, 'class': 'total'},
           svg).textContent = total;
      } else {
        tl = el('text', {x: pad - 6, y: 10 + i * band + band / 2, 'text-anchor': 'end'}, svg);
        tl.textContent = word(label);
        el('text', {x: pad + offset + 4, y: 10 + i * band + band / 2, 'class': 'total'},
           svg).textContent = total;
      }
    });
    if (d.series.length > 1) {
      var legend = document.createElement('div');
      legend.className = 'legend';
      d.series.forEach(function (s, k) {
        var item = document.createElement('span');
        var swatch = document.createElement('i');
        swatch.style.background = s.grey ? '#bbbbbb' : COLOURS[k % COLOURS.length];
        item.appendChild(swatch);
        item.appendChild(document.createTextNode(word(s.name)));
        legend.appendChild(item);
      });
      holder.appendChild(legend);
    }
  }
  CHARTS.forEach(draw);
  document.body.setAttribute('data-rendered', 'charts');
})();
"""


def _table_html(t: Published, lang: Language) -> str:
    def show(v: int | None) -> str:
        return HIDDEN if v is None else str(v)

    def words(values: tuple[str, ...]) -> str:
        return " / ".join(lang.word(v) for v in values)

    two_way = len(t.query.by) > 1
    total = lang.field("total")
    head = [lang.field(t.query.by[0]), *(words(c) or lang.field("count") for c in t.cols)]
    head += [total] if two_way else []
    out = ["<table><thead><tr>", *(f"<th>{html.escape(h)}</th>" for h in head), "</tr></thead>"]
    out.append("<tbody>")
    for i, r in enumerate(t.rows):
        cells = [show(v) for v in t.cells[i]] + ([show(t.row_totals[i])] if two_way else [])
        out.append(
            f"<tr><td>{html.escape(lang.word(r))}</td>"
            + "".join(f"<td>{c}</td>" for c in cells)
            + "</tr>"
        )
    foot = [show(v) for v in t.col_totals] if two_way else []
    out.append(
        f"<tr><th>{html.escape(total)}</th>"
        + "".join(f"<th>{c}</th>" for c in [*foot, show(t.total)])
        + "</tr></tbody></table>"
    )
    return "".join(out)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "table"


def _summary(f: Figures, lang: Language) -> list[str]:
    def total(unit: str, by: tuple[str, ...]) -> str:
        for t in f.tables:
            if t.query.unit == unit and t.query.by == by:
                return HIDDEN if t.total is None else str(t.total)
        return "?"

    beds = ", ".join(f"{lang.word(k)} {v}" for k, v in f.shelter_capacity.items())
    return [
        f"{lang.text('Identified victims')}: "
        f"<b id='total-identified'>{total('cases', ('region', 'sex'))}</b>",
        f"{lang.text('Referrals')}: <b>{total('referrals', ('service', 'outcome'))}</b>",
        f"{lang.text('Shelter placements')}: <b>{total('placements', ('category', 'status'))}</b>",
        f"{lang.text('Shelter beds')}: " + html.escape(beds or lang.text("none registered")),
    ]


def _words(f: Figures, lang: Language) -> dict[str, str]:
    """Every code the charts may show, as a word of `lang` (the script's labels)."""
    codes = {"beds", "residents", "free beds", "waiting", "hidden (x)", "identified"}
    for t in f.tables:
        codes.update(t.rows)
        codes.update(v for c in t.cols for v in c)
    codes.update(f.shelter_capacity)
    return {c: lang.word(c) for c in sorted(codes) if lang.word(c) != c}


def render(f: Figures, replay_seconds: float | None = None, lang: Language | None = None) -> str:
    lang = lang or language()
    data = json.dumps(f.to_json()).replace("</", "<\\/")
    words = json.dumps(_words(f, lang), ensure_ascii=False).replace("</", "<\\/")
    charts = [
        {"id": i, "title": lang.text(title), "unit": u, "by": list(by), "kind": kind}
        for i, title, u, by, kind in CHARTS
    ]
    scope = (
        lang.text(
            "Public figures: only cases whose consent covers statistics; counts below "
            "{threshold}, and counts that would reveal them, are shown as {hidden}.",
            threshold=f.threshold,
            hidden=HIDDEN,
        )
        if f.public
        else lang.text(
            "For the coordinating body: every case, no suppression. Do not publish; "
            "use <code>nrm stats report --public</code> for publication."
        )
    )
    seconds = f" ({replay_seconds:.2f} s)" if replay_seconds is not None else ""
    parts = [
        f"<!DOCTYPE html><html lang='{lang.code}'><head><meta charset='utf-8'>",
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; "
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">",
        "<meta name='viewport' content='width=device-width,initial-scale=1'>",
        f"<title>{html.escape(lang.text('NRM statistics'))}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(lang.text('National Referral Mechanism: statistics'))}</h1>",
        f"<p class='note'>{html.escape(lang.text('as of'))} {f.generated_at:%Y-%m-%d %H:%M} UTC; "
        f"{html.escape(lang.text('period'))} "
        f"{f.start or html.escape(lang.text('from the first event'))} - "
        f"{f.end or html.escape(lang.text('now'))}; "
        f"{f.events_read} {html.escape(lang.text('events read'))}{seconds}.</p>",
        f"<p class='note'>{scope}</p>",
        "<p>" + " &middot; ".join(_summary(f, lang)) + "</p>",
        "<div class='charts'>",
        *(
            f"<figure><figcaption>{html.escape(lang.text(title))}</figcaption>"
            f"<div id='{i}'></div></figure>"
            for i, title, *_ in CHARTS
        ),
        f"</div><h2>{html.escape(lang.text('Tables'))}</h2>",
    ]
    for t in f.tables:
        parts.append(f"<h3>{html.escape(lang.text(t.query.title))}</h3>")
        no_records = html.escape(lang.text("No records."))
        parts.append(_table_html(t, lang) if t.rows else f"<p class='note'>{no_records}</p>")
    parts += [
        f"<p class='note'>{html.escape(lang.text('Note'))}: {html.escape(n)}</p>" for n in f.notes
    ]
    parts += [
        f"<script type='application/json' id='figures'>{data}</script>",
        f"<script type='application/json' id='words'>{words}</script>",
        f"<script>var CHARTS = {json.dumps(charts, ensure_ascii=False)};{_SCRIPT}</script>",
        "</body></html>",
    ]
    return "\n".join(parts)


def write_report(
    f: Figures, out: Path, replay_seconds: float | None = None, lang: Language | None = None
) -> Path:
    """Write index.html, figures.json, all.csv and one CSV per table into `out`."""
    lang = lang or language()
    out.mkdir(parents=True, exist_ok=True)
    page = out / "index.html"
    page.write_text(render(f, replay_seconds, lang))
    (out / "figures.json").write_text(json.dumps(f.to_json(), indent=2))
    (out / "all.csv").write_text(as_csv(f.tables, lang=lang))
    for n, t in enumerate(f.tables, start=1):
        (out / f"{n:02d}-{_slug(t.query.title)}.csv").write_text(
            as_csv([t], with_table=False, lang=lang)
        )
    return page
