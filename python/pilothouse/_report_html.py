"""HTML for drift reports and profiles: one self-contained page (inline CSS, JS and SVG
charts, no network) and the fragment notebooks show. Only summaries are embedded.

This module owns the report's styling (``ph-report``), its sortable column table and script,
the inline SVG charts, and the profile's notebook table. Escaping and the table markup are
``_html.py``'s, as for every other notebook view.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from pilothouse._html import Html, escape, table, td, th, tr

_ids = itertools.count()

_CSS = """
.ph-report{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;font-size:13px;color:#1f2328}
.ph-report h1{font-size:20px;margin:0 0 6px}
.ph-report .ph-summary{margin:6px 0 12px}
.ph-report .ph-badge{display:inline-block;padding:2px 8px;border-radius:10px;font-weight:600}
.ph-report .ph-bad{background:#ffebe9;color:#a40e26}
.ph-report .ph-good{background:#dafbe1;color:#116329}
.ph-report table{border-collapse:collapse;width:100%}
.ph-report th{background:#f6f8fa;cursor:pointer;user-select:none;text-align:left;
  position:sticky;top:0}
.ph-report th,.ph-report td{border-bottom:1px solid #d0d7de;padding:4px 8px;vertical-align:middle}
.ph-report th[aria-sort=ascending]::after{content:" \\25B2"}
.ph-report th[aria-sort=descending]::after{content:" \\25BC"}
.ph-report tr.ph-drifted td:first-child{border-left:3px solid #cf222e}
.ph-report .ph-num{text-align:right;font-variant-numeric:tabular-nums}
.ph-report .ph-notes{color:#57606a;max-width:320px}
.ph-report .ph-legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px}
"""

_JS = """
(function(){
  var table=document.getElementById("%(id)s");
  if(!table){return;}
  var heads=table.tHead.rows[0].cells;
  function key(cell,numeric){
    var v=cell.getAttribute("data-sort");
    if(v===null){v=cell.textContent;}
    if(numeric){var f=parseFloat(v);return isNaN(f)?-Infinity:f;}
    return v.toLowerCase();
  }
  Array.prototype.forEach.call(heads,function(th,col){
    th.addEventListener("click",function(){
      var numeric=th.getAttribute("data-type")==="number";
      var asc=th.getAttribute("aria-sort")!=="ascending";
      Array.prototype.forEach.call(heads,function(h){h.removeAttribute("aria-sort");});
      th.setAttribute("aria-sort",asc?"ascending":"descending");
      var body=table.tBodies[0];
      var rows=Array.prototype.slice.call(body.rows);
      rows.sort(function(a,b){
        var x=key(a.cells[col],numeric),y=key(b.cells[col],numeric);
        return (x<y?-1:x>y?1:0)*(asc?1:-1);
      });
      rows.forEach(function(r){body.appendChild(r);});
    });
  });
  table.setAttribute("data-sortable","ready");
})();
"""

_REF = "#4c78a8"
_CUR = "#f58518"


def _num(x: float | None, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "&ndash;"
    if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e6):
        return f"{x:.{digits - 1}e}"
    return f"{x:.{digits}g}" if abs(x) >= 1 else f"{x:.{digits}f}"


def _sort_value(x: float | None) -> str:
    return "" if x is None else repr(float(x))


def chart_svg(chart: dict[str, Any], width: int = 260, height: int = 64) -> str:
    """Reference (blue) and current (orange) distributions as a small inline SVG."""
    ref: list[float] = chart.get("reference") or []
    cur: list[float] = chart.get("current") or []
    n = len(ref)
    if n == 0:
        return ""
    top = max(max(ref), max(cur), 1e-12)
    plot_h = height - 14
    parts = [
        f'<svg class="ph-chart" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
    ]
    slot = width / n
    if chart.get("kind") == "histogram":
        for side, values, color, opacity in (
            ("reference", ref, _REF, 0.55),
            ("current", cur, _CUR, 0.55),
        ):
            for i, v in enumerate(values):
                h = plot_h * v / top
                parts.append(
                    f'<rect data-side="{side}" x="{i * slot:.1f}" y="{plot_h - h:.1f}" '
                    f'width="{max(slot - 0.5, 0.5):.1f}" height="{h:.1f}" fill="{color}" '
                    f'fill-opacity="{opacity}"/>'
                )
        edges: list[float] = chart.get("edges") or []
        if edges:
            parts.append(
                f'<text x="0" y="{height - 2}" font-size="9" fill="#57606a">{_num(edges[0], 3)}</text>'
                f'<text x="{width}" y="{height - 2}" font-size="9" fill="#57606a" '
                f'text-anchor="end">{_num(edges[-1], 3)}</text>'
            )
    else:
        labels: list[str] = chart.get("labels") or []
        bar = slot / 2
        for i, (r, c) in enumerate(zip(ref, cur)):
            label = escape(labels[i]) if i < len(labels) else ""
            for j, (side, v, color) in enumerate((("reference", r, _REF), ("current", c, _CUR))):
                h = plot_h * v / top
                parts.append(
                    f'<rect data-side="{side}" x="{i * slot + j * bar:.1f}" y="{plot_h - h:.1f}" '
                    f'width="{max(bar - 0.5, 0.5):.1f}" height="{h:.1f}" fill="{color}">'
                    f"<title>{label}: {side} {v:.1%}</title></rect>"
                )
        if labels:
            parts.append(
                f'<text x="0" y="{height - 2}" font-size="9" fill="#57606a">'
                f"{escape(labels[0][:24])}{' &hellip;' if len(labels) > 1 else ''}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)


def _notes(c: dict[str, Any]) -> str:
    notes = list(c["reasons"])
    if c["unseen_categories"]:
        shown = ", ".join(c["unseen_categories"][:5])
        share = c["unseen_share"]
        amount = "<0.1%" if 0 < share < 0.001 else f"{share:.1%}"
        notes.append(f"new categories ({amount} of current): {shown}")
    if c["out_of_range_share"] > 0:
        notes.append(f"{c['out_of_range_share']:.2%} of current values outside the reference range")
    if c["reference_constant"] or c["current_constant"]:
        side = "reference" if c["reference_constant"] else "current"
        notes.append(f"constant in the {side}")
    if c["statistic_error"] is not None:
        notes.append(f"statistic within {c['statistic_error']:.2g} of the exact one")
    return "<br>".join(escape(n) for n in notes)


_HEADS = (
    ("Column", "text"),
    ("Kind", "text"),
    ("Method", "text"),
    ("Statistic", "number"),
    ("p-value", "number"),
    ("Threshold", "number"),
    ("Drifted", "text"),
    (Html("Missing ref &rarr; cur"), "number"),
    ("Notes", "text"),
    ("Reference vs current", "text"),
)


def _bold(text: object) -> Html:
    return Html(f"<b>{escape(text)}</b>")


def _table(data: dict[str, Any], table_id: str) -> str:
    rows = []
    for c in data["columns"]:
        drifted = c["drifted"]
        badge = (
            '<span class="ph-badge ph-bad">drift</span>'
            if drifted
            else '<span class="ph-badge ph-good">ok</span>'
        )
        delta = c["current_missing"] - c["reference_missing"]
        missing = f"{c['reference_missing']:.1%} &rarr; {c['current_missing']:.1%}"
        cells = [
            td(_bold(c["column"])),
            c["kind"],
            c["method"] or "—",
            *(
                td(Html(_num(c[key])), class_="ph-num", data_sort=_sort_value(c[key]))
                for key in ("statistic", "p_value", "threshold")
            ),
            td(Html(badge), data_sort=int(drifted)),
            td(Html(missing), class_="ph-num", data_sort=repr(abs(delta))),
            td(Html(_notes(c)), class_="ph-notes"),
            td(Html(chart_svg(c["chart"]))),
        ]
        rows.append(tr(cells, class_="ph-drifted" if drifted else "ph-ok", data_column=c["column"]))
    head = [th(h, data_type=t, scope="col") for h, t in _HEADS]
    return table(head, rows, id=table_id, class_="ph-table")


def _summary(data: dict[str, Any]) -> str:
    drifted = sum(1 for c in data["columns"] if c["drifted"])
    verdict = (
        '<span class="ph-badge ph-bad">dataset drift</span>'
        if data["dataset_drift"]
        else '<span class="ph-badge ph-good">no dataset drift</span>'
    )
    parts = [
        f'<div class="ph-summary">{verdict} {drifted} of {len(data["columns"])} columns drifted '
        f"({data['drifted_share']:.0%}; the dataset drifts at {data['drift_share']:.0%}). "
        f"Reference {data['reference_rows']:,} rows, current {data['current_rows']:,} rows; "
        f"<i>{escape(data['mode'])}</i> mode"
        + (
            " (numeric statistics from profiles, within the stated bounds)"
            if data["mode"] == "profile"
            else " (every value used)"
        )
        + ".</div>"
    ]
    if data["missing_columns"]:
        parts.append(
            f'<div class="ph-summary">Missing from current: {escape(", ".join(data["missing_columns"]))}</div>'
        )
    if data["extra_columns"]:
        parts.append(
            f'<div class="ph-summary">Only in current: {escape(", ".join(data["extra_columns"]))}</div>'
        )
    parts.append(
        f'<div class="ph-legend">Charts:<span style="background:{_REF}"></span>reference'
        f'<span style="background:{_CUR}"></span>current</div>'
    )
    return "".join(parts)


def _report(*body: str) -> str:
    """The report's box, with its styling inline."""
    return f'<div class="ph-report"><style>{_CSS}</style>{"".join(body)}</div>'


def report_fragment(data: dict[str, Any]) -> str:
    table_id = f"ph-drift-{next(_ids)}"
    return _report(
        _summary(data), _table(data, table_id), f"<script>{_JS % {'id': table_id}}</script>"
    )


def report_page(data: dict[str, Any], title: str) -> str:
    table_id = "ph-drift-report"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head>"
        f'<body><div class="ph-report"><h1>{escape(title)}</h1>{_summary(data)}'
        f"{_table(data, table_id)}</div><script>{_JS % {'id': table_id}}</script></body></html>\n"
    )


def profile_table(rows: int, columns: list[dict[str, Any]]) -> str:
    head = ("Column", "Kind", "Missing", "Mean", "Std", "Min", "Median", "Max", "Distinct / top")
    body = []
    for c in columns:
        top = ", ".join(f"{escape(k)} ({n:,})" for k, n in c.get("top", [])[:3])
        distinct = c.get("distinct")
        extra = Html(f"{distinct:,.0f}: {top}" if distinct is not None else "")
        numbers = [Html(f"{c['missing_rate']:.1%}")]
        numbers += [Html(_num(c.get(k))) for k in ("mean", "std", "min", "p50", "max")]
        cells = [td(_bold(c["column"])), c["kind"], *(td(n, class_="ph-num") for n in numbers)]
        body.append([*cells, extra])
    summary = f'<div class="ph-summary">Profile of {rows:,} rows x {len(columns)} columns</div>'
    return _report(summary, table(head, body))
