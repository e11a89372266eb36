"""A profile as one self-contained HTML page: summary, sortable table with depth folding, icicle.

The page fetches nothing: the data is embedded as JSON and drawn by a short inline script.
Which figures the table and the icicle offer is data: ``METRICS`` lists them, so figures from
other stages (memory, time) join by adding an entry.
"""
from __future__ import annotations

import html
import json
import os
from dataclasses import dataclass
from typing import Any, Callable, Union

from ._counts import Counts
from ._profile import ProfileData
from ._render import _shapes_text, rows, to_dict, trainable_params

__all__ = ["Metric", "METRICS", "page", "write_html"]


@dataclass(frozen=True)
class Metric:
    """A figure the page can show: its key, its label, and how to read it from a ``Counts``."""

    key: str
    label: str
    read: Callable[[Counts], int]


def _field(name: str, label: str) -> Metric:
    return Metric(name, label, lambda counts: getattr(counts, name))


METRICS: list[Metric] = [
    _field("macs", "MACs"),
    _field("params", "params"),
    _field("backward_flops", "backward FLOPs"),
    _field("flops", "FLOPs"),
    _field("comparisons", "comparisons"),
]


def _depth(name: str) -> int:
    return name.count(".") + 1 if name else 0


def _table_rows(profile: ProfileData, depth: Any) -> list[dict[str, Any]]:
    return [{"name": r.name or "(model)", "type": r.type, "input": _shapes_text(r.input_shapes),
             "output": _shapes_text(r.output_shapes), **{m.key: m.read(r.counts) for m in METRICS}}
            for r in rows(profile, depth)]


def _tree(profile: ProfileData) -> dict[str, Any]:
    """Every module's subtree figures, and its children, as the icicle draws them."""
    def node(name: str) -> dict[str, Any]:
        counts = profile.module(name)
        return {"name": name, "label": name.rsplit(".", 1)[-1] or profile.model_name,
                "type": profile.module_type(name) or profile.model_name,
                "values": {m.key: m.read(counts) for m in METRICS},
                "children": [node(child) for child in profile.children(name)]}
    return node("")


def _data(profile: ProfileData) -> dict[str, Any]:
    deepest = max((_depth(name) for name in profile._modules), default=0)
    return {
        "model": profile.model_name,
        "metrics": [{"key": m.key, "label": m.label} for m in METRICS],
        "total": {m.key: m.read(profile.total) for m in METRICS},
        "trainable_params": trainable_params(profile),
        "summary": to_dict(profile),
        "depths": list(range(1, deepest + 1)),
        "rows": {"all": _table_rows(profile, None),
                 **{str(d): _table_rows(profile, d) for d in range(1, deepest + 1)}},
        "tree": _tree(profile),
    }


_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222}
h1{font-size:20px;margin:0 0 8px}
dl{display:grid;grid-template-columns:max-content max-content;gap:2px 16px;margin:0 0 16px}
dt{color:#666}dd{margin:0;font-variant-numeric:tabular-nums}
.controls{margin:12px 0}.controls label{margin-right:16px}
#icicle{position:relative;border:1px solid #ddd;overflow:hidden}
#icicle div{position:absolute;box-sizing:border-box;border:1px solid #fff;overflow:hidden;white-space:nowrap;
 font-size:12px;padding:2px 4px;cursor:pointer;color:#fff}
table{border-collapse:collapse;margin-top:16px}
th,td{padding:2px 8px;border-bottom:1px solid #eee;text-align:right;font-variant-numeric:tabular-nums}
th{cursor:pointer;background:#f6f6f6;position:sticky;top:0}
td:nth-child(-n+4),th:nth-child(-n+4){text-align:left}
"""

_SCRIPT = r"""
"use strict";
const data = JSON.parse(document.getElementById("torchflops-data").textContent);
const UNITS = [["T", 1e12], ["G", 1e9], ["M", 1e6], ["K", 1e3]];
function human(n) {
  for (const [unit, scale] of UNITS) if (Math.abs(n) >= scale) return (n / scale).toFixed(2) + " " + unit;
  return String(n);
}
const exact = n => n.toLocaleString("en-US");
const el = (tag, props) => Object.assign(document.createElement(tag), props || {});
const metricSelect = document.getElementById("metric"), depthSelect = document.getElementById("depth");
for (const m of data.metrics) metricSelect.append(el("option", {value: m.key, textContent: m.label}));
depthSelect.append(el("option", {value: "all", textContent: "every record"}));
for (const d of data.depths) depthSelect.append(el("option", {value: String(d), textContent: String(d)}));
depthSelect.value = data.depths.length ? "1" : "all";

const summary = document.getElementById("summary");
for (const m of data.metrics) {
  summary.append(el("dt", {textContent: m.label}));
  summary.append(el("dd", {id: "total-" + m.key, textContent: exact(data.total[m.key]),
                           title: human(data.total[m.key])}));
}
const frozen = data.total.params - data.trainable_params;
summary.append(el("dt", {textContent: "trainable / frozen params"}));
summary.append(el("dd", {id: "total-trainable", textContent: exact(data.trainable_params) + " / " + exact(frozen)}));

const columns = [["name", "module"], ["type", "type"], ["input", "input shape"], ["output", "output shape"]]
  .concat(data.metrics.map(m => [m.key, m.label])).concat([["share", "share"]]);
let sortKey = null, sortDescending = true;
function renderTable() {
  const metric = metricSelect.value;
  const body = data.rows[depthSelect.value].map((row, index) => Object.assign({index}, row));
  if (sortKey !== null) {
    const key = sortKey === "share" ? metric : sortKey;
    body.sort((a, b) => {
      const order = typeof a[key] === "number" ? a[key] - b[key] : String(a[key]).localeCompare(String(b[key]));
      return (sortDescending ? -order : order) || a.index - b.index;
    });
  }
  const head = el("tr");
  for (const [key, label] of columns) {
    const th = el("th", {textContent: label + (key === sortKey ? (sortDescending ? " \u25bc" : " \u25b2") : "")});
    th.dataset.key = key;
    th.addEventListener("click", () => {
      sortDescending = key === sortKey ? !sortDescending : true;
      sortKey = key;
      renderTable();
    });
    head.append(th);
  }
  const rowsOut = body.map(row => {
    const tr = el("tr");
    tr.dataset.name = row.name;
    for (const [key] of columns) {
      if (key === "share") {
        const whole = data.total[metric];
        tr.append(el("td", {textContent: whole ? (100 * row[metric] / whole).toFixed(1) + "%" : "-"}));
      } else if (typeof row[key] === "number") {
        const td = el("td", {textContent: human(row[key]), title: exact(row[key])});
        td.dataset.key = key;
        td.dataset.value = String(row[key]);
        tr.append(td);
      } else {
        tr.append(el("td", {textContent: row[key]}));
      }
    }
    return tr;
  });
  document.getElementById("table-head").replaceChildren(head);
  document.getElementById("table-body").replaceChildren(...rowsOut);
}

function find(node, name) {
  if (node.name === name) return node;
  for (const child of node.children) {
    if (name === child.name || name.startsWith(child.name + ".")) return find(child, name);
  }
  return node;
}
let zoom = "";
const ROW = 24;
function renderIcicle() {
  const metric = metricSelect.value, box = document.getElementById("icicle");
  const root = find(data.tree, zoom);
  const width = box.clientWidth || 800, cells = [];
  let deepest = 0;
  function place(node, x, w, level) {
    if (w < 1 || node.values[metric] <= 0) return;
    deepest = Math.max(deepest, level);
    const cell = el("div", {textContent: node.label, title: (node.name || data.model) + " (" + node.type + "): " +
                            exact(node.values[metric]) + " " + metricSelect.selectedOptions[0].textContent});
    cell.dataset.name = node.name;
    cell.dataset.value = String(node.values[metric]);
    cell.style.cssText = `left:${x}px;top:${level * ROW}px;width:${w}px;height:${ROW}px;` +
                         `background:hsl(${(level * 47 + 210) % 360},55%,${42 + (level % 2) * 8}%)`;
    cell.addEventListener("click", () => { zoom = node.name === zoom ? parentOf(zoom) : node.name; renderIcicle(); });
    cells.push(cell);
    let offset = x;
    const whole = node.values[metric];
    for (const child of node.children) {
      const share = Math.min(child.values[metric], whole) / whole * w;
      place(child, offset, share, level + 1);
      offset += share;
    }
  }
  place(root, 0, width, 0);
  box.style.height = ((deepest + 1) * ROW) + "px";
  box.replaceChildren(...cells);
  document.getElementById("zoom").textContent = zoom ? "showing " + zoom + " (click it to go up)" : "";
}
function parentOf(name) { return name.includes(".") ? name.slice(0, name.lastIndexOf(".")) : ""; }

metricSelect.addEventListener("change", () => { renderTable(); renderIcicle(); });
depthSelect.addEventListener("change", renderTable);
renderTable();
renderIcicle();
document.body.dataset.ready = "1";
"""


def page(profile: ProfileData) -> str:
    """The report page of ``profile`` as one string."""
    # "</" cannot end the script element early when written as "<\/" (still the same JSON)
    payload = json.dumps(_data(profile)).replace("</", "<\\/")
    title = html.escape(f"torchflops: {profile.model_name}")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{_STYLE}</style></head>
<body>
<h1>{title}</h1>
<dl id="summary"></dl>
<div class="controls">
<label>metric <select id="metric"></select></label>
<label>depth <select id="depth"></select></label>
<span id="zoom"></span>
</div>
<div id="icicle"></div>
<table><thead id="table-head"></thead><tbody id="table-body"></tbody></table>
<script type="application/json" id="torchflops-data">{payload}</script>
<script>{_SCRIPT}</script>
</body></html>
"""


def write_html(profile: ProfileData, path: Union[str, "os.PathLike[str]"]) -> None:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file path (str or os.PathLike), got {type(path).__name__}")
    text = page(profile)
    with open(path, "w", encoding="utf-8") as file:
        file.write(text)
