"""`f3ocus bench study` end to end on a small slice of the protocol: real runs, MLflow parent + children,
statistics and figures, resume."""

import json

import pytest
from mlflow.tracking import MlflowClient

from f3ocus.cli import main

pytestmark = pytest.mark.integration


def _study(tmp_path, *extra):
    return main(["bench", "study", "--tasks", "t1", "--models", "vilt12", "--methods", "f3ocus,lntk_only",
                 "--seeds", "2", "--output-dir", str(tmp_path / "runs"), "--figures-dir", str(tmp_path / "figs"),
                 "--set", "model.checkpoint=scratch", "--set", "data.samples_per_client=20",
                 "--set", "federation.rounds=2", "--set", "selection.score_batch_size=4",
                 "--set", "selection.pop_size=20", "--set", "selection.max_evals=200", *extra])


def test_study_runs_paired_cells_reports_contrasts_and_resumes(tmp_path, capsys):
    assert _study(tmp_path) == 0

    bench_dir = tmp_path / "runs" / "bench" / "study-main"
    cells = {path.stem: json.loads(path.read_text()) for path in (bench_dir / "cells").glob("*.json")}
    assert set(cells) == {f"t1.vilt12.{m}.s{s}" for m in ("f3ocus", "lntk_only") for s in (0, 1)}
    for cell in cells.values():
        assert cell["status"] == "ok" and len(cell["score_per_round"]) == 3  # round 0 + 2 rounds
        assert cell["num_units"] == 12 and len(cell["distinct_units_per_round"]) == 2
        assert all(1 <= count <= 12 for count in cell["distinct_units_per_round"])
    report = json.loads((bench_dir / "study.json").read_text())
    primary = report["contrasts"][0]
    assert (primary["a"], primary["b"], primary["n"]) == ("f3ocus", "lntk_only", 2)
    assert set(report["coverage"]) == {"t1.vilt12.s0", "t1.vilt12.s1"}
    assert "F3OCUS − LNTK-only | 2 |" in (tmp_path / "figs" / "study-main.md").read_text()
    assert (tmp_path / "figs" / "study_rounds.png").stat().st_size > 0
    assert (tmp_path / "figs" / "study_paired.png").stat().st_size > 0

    client = MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("bench-study").experiment_id])
    (parent,) = [run for run in runs if run.data.tags.get("f3ocus.bench.role") == "parent"]
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(run.data.tags["f3ocus.bench.cell"] for run in children) == sorted(cells)
    assert all("select/distinct_units" in run.data.metrics for run in children)
    artifacts = {item.path for item in client.list_artifacts(parent.info.run_id, "study")}
    assert {"study/study_rounds.png", "study/study_paired.png", "study/study.md"} <= artifacts

    capsys.readouterr()
    assert _study(tmp_path) == 0  # the same command again: nothing to run
    assert "4 already done, 0 to run" in capsys.readouterr().out


def test_study_rejects_unknown_task_and_method_before_running(tmp_path, capsys):
    assert main(["bench", "study", "--tasks", "t9", "--output-dir", str(tmp_path / "runs")]) == 2
    assert "config error: --tasks: unknown study task(s) ['t9']" in capsys.readouterr().err
    assert main(["bench", "study", "--methods", "nosuch", "--output-dir", str(tmp_path / "runs")]) == 2
    assert "unknown study method(s) ['nosuch']" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
