"""Collected experiment data -> one self-contained HTML page (inline CSS, inline JS, inline JSON data).

Tables are written here as HTML; the charts are drawn in the browser by `static/dashboard.js` as inline
SVG from the JSON embedded in the page (`<script type="application/json" id="f3ocus-data">`). The page
loads nothing from the network. Hand-written SVG rather than plotly: the page stays ~50 KB instead of
~5 MB of inlined plotly.js per report, no dependency is added, and nothing needs WebGL (plotly's
parallel-coordinates trace is WebGL-only and fails in GPU-less and headless browsers).
"""

from __future__ import annotations

import html
import json
import math
from importlib import resources
from typing import Any

PANELS = ("table", "acc", "comm", "fronts", "ranks", "sweep", "runs")  # section ids: panel-<name>


def render_html(data: dict[str, Any]) -> str:
    """The whole page for `collect`'s data."""
    static = resources.files("f3ocus.dashboard") / "static"
    css = (static / "dashboard.css").read_text(encoding="utf-8")
    script = (static / "dashboard.js").read_text(encoding="utf-8")
    exp = data["experiment"]
    runs = data["runs"]
    finished = sum(r["status"] == "FINISHED" for r in runs)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>f3ocus · {_e(exp['name'])}</title>",
        f"<style>\n{css}</style>",
        "</head><body>",
        f"<h1>f3ocus · experiment <code>{_e(exp['name'])}</code></h1>",
        f'<p class="f3-meta">{len(runs)} runs ({finished} finished) · MLflow {_e(exp["tracking_uri"])} · '
        f'experiment id {_e(str(exp["id"]))} · generated {_e(exp["generated"])}</p>',
        _section("table", "Methods × tasks: final eval/score, mean ± std over seeds", _methods_table(data["table"])),
        _section("acc", "Score per round (eval/score)",
                 _chart("acc", any(r["acc"] for r in runs), "no run logged eval/score or eval/acc")),
        _section("comm", "Communication per round",
                 _chart("comm", any(r["bytes_up"] for r in runs), "no run logged comm/bytes_up")
                 + '<p class="f3-note">comm/bytes_up: bytes the clients uploaded in the round (selected units + head).</p>'),
        _section("fronts", "Pareto fronts and the chosen points",
                 _chart("fronts", bool(data["fronts"]), "no run logged a Pareto front "
                        "(only selection.method: f3ocus does; artifacts selection/round_NNN.json)")),
        _section("ranks", "Per-client unit ranks across rounds",
                 _chart("ranks", bool(data["ranks"]), "no run logged selection/unit_ranks.json "
                        "(only selectors that use client scores do)")),
        _section("sweep", "Sweep: parameters vs final eval/score (parallel coordinates)",
                 _chart("sweep", bool(data["sweeps"]), "no nested runs in this experiment (no run carries a "
                        "mlflow.parentRunId tag): no sweep to show", note_id="no-sweep")),
        _section("runs", "Runs", _runs_table(runs)),
        f'<script type="application/json" id="f3ocus-data">{_json_for_script(data)}</script>',
        f"<script>\n{script}</script>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _section(name: str, title: str, body: str) -> str:
    return f'<section id="panel-{name}"><h2>{_e(title)}</h2>\n{body}\n</section>'


def _chart(name: str, has_data: bool, empty_note: str, note_id: str | None = None) -> str:
    if has_data:
        return f'<div class="f3-panel" data-chart="{name}"></div>'
    ident = f' id="{note_id}"' if note_id else ""
    return f'<p class="f3-note"{ident}>{_e(empty_note)}</p>'


def format_mean_std(mean: float, std: float | None, n: int) -> str:
    """`0.450 ± 0.012` (three decimals); a single run: `0.450` (no spread)."""
    return f"{mean:.3f}" if std is None else f"{mean:.3f} ± {std:.3f}"


def _methods_table(table: dict[str, Any]) -> str:
    if not table["cells"]:
        return '<p class="f3-note">no finished run with eval/score or eval/acc</p>'
    cells = {(c["method"], c["family"], c["task"]): c for c in table["cells"]}
    best = {task: max(c["mean"] for c in table["cells"] if c["task"] == task) for task in table["tasks"]}
    rows = ['<table class="f3-table f3-methods"><thead><tr><th class="f3-rowhead">method</th>'
            '<th class="f3-rowhead">model</th>' + "".join(f"<th>{_e(t)}</th>" for t in table["tasks"]) + "</tr></thead><tbody>"]
    for method, family in table["rows"]:
        line = f'<tr><td class="f3-rowhead">{_e(method)}</td><td class="f3-rowhead">{_e(family)}</td>'
        for task in table["tasks"]:
            c = cells.get((method, family, task))
            if c is None:
                line += "<td>–</td>"
                continue
            mark = " f3-best" if math.isclose(c["mean"], best[task]) else ""
            std = "" if c["std"] is None else f' data-std="{c["std"]!r}"'
            title = f"seeds {', '.join(c['seeds'])}"
            pooled = ""
            if c.get("differs_in"):
                pooled = " *"
                title += f"; these runs also differ in {', '.join(c['differs_in'])}"
            line += (f'<td class="f3-cell-acc{mark}" data-mean="{c["mean"]!r}"{std} data-n="{c["n"]}" '
                     f'title="{_e(title)}">{format_mean_std(c["mean"], c["std"], c["n"])}'
                     f' <span class="f3-note">n={c["n"]}{pooled}</span></td>')
        rows.append(line + "</tr>")
    rows.append("</tbody></table>")
    excluded = table.get("excluded") or {}
    note = ("final eval/score = the last round's mean over clients of accuracy (micro-F1 for a multi-label "
            "client; eval/acc for runs that predate eval/score); std = sample standard deviation "
            "(n − 1) over the group's runs (seeds); FINISHED runs only; bold = best mean per task.")
    if any(c.get("differs_in") for c in table["cells"]):
        note += (" * = the cell pools runs that differ in more than the seed (hover for the params; the sweep "
                 "panel separates them).")
    if excluded:
        note += " Left out (not finished): " + ", ".join(f"{count} {status}" for status, count in sorted(excluded.items())) + "."
    return "\n".join(rows) + f'\n<p class="f3-note">{_e(note)}</p>'


def _runs_table(runs: list[dict[str, Any]]) -> str:
    if not runs:
        return '<p class="f3-note">no runs</p>'
    names = {r["id"]: r["name"] for r in runs}
    head = ("run", "status", "method", "model", "task", "seed", "rounds", "final eval/score", "upload MB", "parent")
    rows = ['<table class="f3-table f3-runs"><thead><tr>' + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"]
    for r in runs:
        rounds = int(r["acc"][-1][0]) if r["acc"] else None
        upload = sum(v for _, v in r["bytes_up"] if v is not None) / 1e6 if r["bytes_up"] else None
        kind = "sweep parent" if r["is_parent"] else ""
        described = (r["method"], r["family"], r["task"]) if not r["is_parent"] else ("–", "–", "–")
        values = (f'{r["name"]}' + (f" ({kind})" if kind else ""), r["status"], *described,
                  r["seed"] if r["seed"] is not None else "–", rounds if rounds is not None else "–",
                  f'{r["final_acc"]:.3f}' if r["final_acc"] is not None else "–",
                  f"{upload:.2f}" if upload is not None else "–", names.get(r["parent"], r["parent"] or ""))
        rows.append(f'<tr data-run="{_e(r["id"])}" title="run id {_e(r["id"])}">'
                    + "".join(f"<td>{_e(str(v))}</td>" for v in values) + "</tr>")
    rows.append("</tbody></table>")
    return "\n".join(rows)


def _json_for_script(data: Any) -> str:
    """Strict JSON (no NaN) that cannot end the <script> element it sits in."""
    text = json.dumps(data, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _e(text: str) -> str:
    return html.escape(str(text), quote=True)
