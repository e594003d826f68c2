"""`f3ocus bench paper` end to end on a two-cell grid: real runs, MLflow parent + children, resume, errors."""

import json

import pytest
from mlflow.tracking import MlflowClient

from f3ocus.cli import main

pytestmark = pytest.mark.integration

TASK = """\
name: t3_small
data:
  task: ultra_medvqa
  modalities: [pathmnist, bloodmnist]
  partition: {scheme: natural, by: source}
federation:
  budgets: [1, 2]
  batch_size: 16
"""


def _bench(tmp_path, *extra):
    return main(["bench", "paper", "--quick", "--tasks", "t3", "--methods", "last_k,full_ft", "--models", "llava",
                 "--tasks-dir", str(tmp_path / "tasks"), "--output-dir", str(tmp_path / "runs"),
                 "--set", "model.checkpoint=scratch", "--set", "data.samples_per_client=30", *extra])


def _runs(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("bench-paper")
    return client.search_runs([experiment.experiment_id])


def test_bench_runs_cells_as_nested_mlflow_runs_and_resumes(tmp_path, capsys):
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "t3_small.yaml").write_text(TASK)
    (tmp_path / "tasks" / "t3_small_real.yaml").write_text(TASK)  # real variants are not offline cells

    assert _bench(tmp_path, "--jobs", "2") == 0  # two Tune trials at a time, behind a local MLflow server
    bench_dir = tmp_path / "runs" / "bench" / "paper-quick"
    cells = {path.stem: json.loads(path.read_text()) for path in (bench_dir / "cells").glob("*.json")}
    assert set(cells) == {"t3.llava.last_k.s0", "t3.llava.full_ft.s0"}
    assert all(cell["status"] == "ok" and 0.0 <= cell["score"] <= 1.0 for cell in cells.values())
    full, last_k = cells["t3.llava.full_ft.s0"], cells["t3.llava.last_k.s0"]
    assert full["gflop_per_client_round"] > 0  # counted for Table B rows
    # full fine-tuning uploads every unit, last-k only 1 or 2 of them: more parameters, more Mbit
    assert full["trainable_params_per_client_round"] > last_k["trainable_params_per_client_round"]
    assert full["upload_mbit_per_client_round"] == pytest.approx(full["trainable_params_per_client_round"] * 32 / 1e6)
    tables = (bench_dir / "tables.md").read_text()
    assert "| Last-K |" in tables and "| Full fine-tuning |" in tables and "T3 [1, 2]" in tables

    runs = _runs(tmp_path)
    (parent,) = [run for run in runs if run.data.tags.get("f3ocus.bench.role") == "parent"]
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(run.data.tags["f3ocus.bench.cell"] for run in children) == sorted(cells)
    assert all(run.info.status == "FINISHED" and "eval/acc" in run.data.metrics for run in children)
    assert parent.info.status == "FINISHED"

    capsys.readouterr()
    assert _bench(tmp_path) == 0  # same command again: nothing to run, same parent
    assert "2 already done, 0 to run" in capsys.readouterr().out
    assert len(_runs(tmp_path)) == 3

    assert _bench(tmp_path, "--set", "federation.lr=0.002") == 0  # a changed config re-runs its cells
    assert len(_runs(tmp_path)) == 5


def test_bench_rejects_an_unknown_method_before_running(tmp_path, capsys):
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "t3_small.yaml").write_text(TASK)
    assert main(["bench", "paper", "--methods", "nosuch", "--tasks-dir", str(tmp_path / "tasks"),
                 "--output-dir", str(tmp_path / "runs")]) == 2
    assert "config error: --methods: unknown method(s) ['nosuch']" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
