"""`f3ocus report`: the dashboard of a fake MLflow store holds every panel with the right numbers."""

from __future__ import annotations

import json
import math
import re
from html.parser import HTMLParser

import pytest

from f3ocus.cli import main
from f3ocus.dashboard.collect import mean_std
from tests.unit.dashboard.conftest import FRONTS, RANKS, acc_history, bytes_history

PANELS = ("table", "acc", "comm", "fronts", "ranks", "sweep", "runs")


class _Tables(HTMLParser):
    """Every <table> of a page as rows of cell texts."""

    def __init__(self):
        super().__init__()
        self.tables, self._cell = [], None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append(self._cell.strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def _section(page: str, name: str) -> str:
    match = re.search(rf'<section id="panel-{name}">(.*?)</section>', page, re.S)
    assert match, f"panel {name} missing"
    return match.group(1)


def _embedded(page: str) -> dict:
    return json.loads(re.search(r'<script type="application/json" id="f3ocus-data">(.*?)</script>', page, re.S).group(1))


def test_methods_by_tasks_table_has_mean_and_sample_std_over_seeds(demo_report):
    path, _ = demo_report
    page = path.read_text()
    parser = _Tables()
    parser.feed(_section(page, "table"))
    header, *rows = parser.tables[0]
    assert header == ["method", "model", "easy_vqa", "ultra_medvqa"]
    cells = {(row[0], row[1]): row[2:] for row in rows}
    # By hand: top_k/llava finals 0.5, 0.6, 0.7 -> mean 0.6, sample std 0.1 (the FAILED seed 3 is left out);
    # f3ocus/nsga2 0.55, 0.75 -> 0.65 ± 0.2/sqrt(2) = 0.1414; single runs have no spread.
    assert cells == {("f3ocus/nsga2", "llava"): ["0.650 ± 0.141 n=2", "–"],
                     ("f3ocus/sa", "llava"): ["0.450 n=1", "–"],
                     ("top_k", "blip2"): ["–", "0.400 n=1"],
                     ("top_k", "llava"): ["0.600 ± 0.100 n=3", "–"]}
    assert "1 FAILED" in _section(page, "table")
    table = _embedded(page)["table"]
    topk = next(c for c in table["cells"] if (c["method"], c["family"]) == ("top_k", "llava"))
    assert topk["mean"] == pytest.approx(0.6) and topk["std"] == pytest.approx(0.1) and topk["seeds"] == ["0", "1", "2"]
    nsga2 = next(c for c in table["cells"] if c["method"] == "f3ocus/nsga2")
    assert nsga2["std"] == pytest.approx(math.sqrt(((0.55 - 0.65) ** 2 + (0.75 - 0.65) ** 2) / 1))
    assert mean_std([1.0]) == (1.0, None)


def test_every_panel_is_present_with_its_data(demo_report, mlflow_store):
    path, _ = demo_report
    _, ids = mlflow_store
    page = path.read_text()
    for name in PANELS:
        _section(page, name)
    for chart in ("acc", "comm", "fronts", "ranks", "sweep"):
        assert f'data-chart="{chart}"' in _section(page, chart)
    data = _embedded(page)
    runs = {r["name"]: r for r in data["runs"]}
    # Curves: every run with metrics, per round, as logged.
    assert runs["topk-s1"]["acc"] == [[step, pytest.approx(v)] for step, v in enumerate(acc_history(0.60))]
    assert runs["nsga2-s1"]["bytes_up"] == [[step, v] for step, v in enumerate(bytes_history(1))]
    assert runs["topk-s3"]["status"] == "FAILED" and runs["sweep"]["is_parent"] and runs["sweep"]["acc"] == []
    assert runs["nsga2-s0"]["parent"] == ids["sweep"]
    # Pareto fronts with the chosen points, per round, from selection/round_NNN.json.
    fronts = {f["run"]: f["rounds"] for f in data["fronts"]}
    assert set(fronts) == {ids["nsga2-s0"], ids["nsga2-s1"], ids["sa-s0"]}
    assert [(r["round"], r["front"], r["chosen"]) for r in fronts[ids["nsga2-s0"]]] == \
        [(k, front, chosen) for k, (front, chosen) in sorted(FRONTS.items())]
    # Unit-rank heatmaps from selection/unit_ranks.json.
    ranks = {r["run"]: r for r in data["ranks"]}
    assert set(ranks) == {ids["topk-s0"], ids["nsga2-s0"]}
    assert ranks[ids["topk-s0"]]["ranks"] == RANKS and ranks[ids["topk-s0"]]["num_clients"] == 3
    # Sweep: the params that differ between the 3 children, then the final accuracy.
    [sweep] = data["sweeps"]
    assert sweep["parent"] == ids["sweep"] and sweep["num_children"] == 3
    assert [(a["name"], a["kind"]) for a in sweep["axes"]] == [
        ("federation.lr", "numeric"), ("seed", "numeric"), ("selection.solver", "categorical"),
        ("eval/score (final)", "numeric")]
    assert sweep["axes"][2]["categories"] == ["nsga2", "sa"]
    lines = {line["name"]: line["values"] for line in sweep["lines"]}
    assert lines == {"nsga2-s0": [0.001, 0.0, "nsga2", 0.55], "nsga2-s1": [0.001, 1.0, "nsga2", 0.75],
                     "sa-s0": [0.002, 0.0, "sa", 0.45]}
    # Runs table: one row per run (9 in "demo") with its final accuracy.
    parser = _Tables()
    parser.feed(_section(page, "runs"))
    body = {row[0]: row for row in parser.tables[0][1:]}
    assert len(body) == 9 and body["topk-s2"][7] == "0.700" and body["sweep (sweep parent)"][7] == "–"


def test_page_is_self_contained(demo_report):
    page = demo_report[0].read_text()
    assert "<link" not in page and not re.search(r"""src\s*=\s*["']?(https?:)?//""", page)
    assert not re.search(r"""(fetch|XMLHttpRequest|import\()""", page)
    assert len(page) < 200_000


def test_cli_report_without_nested_runs_skips_the_sweep_panel(mlflow_store, tmp_path, capsys):
    uri, _ = mlflow_store
    out = tmp_path / "flat.html"
    assert main(["report", "--experiment", "flat", "--tracking-uri", uri, "--out", str(out)]) == 0
    assert f"wrote {out} (2 runs" in capsys.readouterr().out
    page = out.read_text()
    sweep = _section(page, "sweep")
    assert 'id="no-sweep"' in sweep and "data-chart" not in sweep
    assert 'data-chart="fronts"' not in page and 'data-chart="ranks"' not in page  # top_k runs without artifacts
    assert _embedded(page)["sweeps"] == []


def test_cli_report_errors_name_the_option(mlflow_store, tmp_path, capsys):
    uri, _ = mlflow_store
    assert main(["report", "--experiment", "nope", "--tracking-uri", uri, "--out", str(tmp_path / "x.html")]) == 2
    assert "config error: --experiment: no experiment 'nope'" in capsys.readouterr().err
    missing = f"sqlite:///{tmp_path}/missing.db"
    assert main(["report", "--experiment", "demo", "--tracking-uri", missing]) == 2
    assert "config error: --tracking-uri: no MLflow database" in capsys.readouterr().err
    assert not (tmp_path / "missing.db").exists() and not (tmp_path / "x.html").exists()
    assert main(["report", "--experiment", "demo", "--tracking-uri", "nosuchscheme://x"]) == 2
    assert capsys.readouterr().err.startswith("config error: --tracking-uri: cannot read MLflow at nosuchscheme://x")
    not_a_db = tmp_path / "junk.db"
    not_a_db.write_text("not sqlite")
    assert main(["report", "--experiment", "demo", "--tracking-uri", f"sqlite:///{not_a_db}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("config error: --tracking-uri: cannot read MLflow") and err.count("\n") == 1


def test_a_cell_that_pools_runs_differing_in_more_than_the_seed_says_so():
    from f3ocus.dashboard.collect import methods_by_tasks
    from f3ocus.dashboard.render import _methods_table

    def run(seed, lr, acc):
        return {"id": f"r{seed}{lr}", "status": "FINISHED", "final_acc": acc, "is_parent": False, "method": "top_k",
                "family": "llava", "task": "easy_vqa", "seed": str(seed),
                "params": {"seed": str(seed), "federation.lr": lr, "tracking.output_dir": f"runs/{seed}"}}

    table = methods_by_tasks([run(0, "0.001", 0.2), run(1, "0.002", 0.4)])
    [cell] = table["cells"]
    assert cell["differs_in"] == ["federation.lr"] and cell["mean"] == pytest.approx(0.3)
    assert cell["std"] == pytest.approx(math.sqrt(0.02))
    html = _methods_table(table)
    assert "0.300 ± 0.141" in html and "n=2 *" in html and "also differ in federation.lr" in html
