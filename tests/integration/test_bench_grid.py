"""`f3ocus bench paper` cells as Ray Tune trials on real `ray start` clusters on 127.0.0.1 (each test owns its
cluster and always stops it).

1. Two nodes of 1 CPU each (head `node_a`, worker `node_b`), three one-round cells, two at a time: the trials
   run on both nodes, the driver writes every cell's JSON, MLflow holds one parent and three children; a cell
   run on the cluster has the same figures as the same cell run in this process; a re-run skips the finished
   cells and re-runs the one whose config changed.
2. `ray job submit` of `ray_jobs/bench.py --smoke-test`: the two-cell smoke grid runs as a job.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from f3ocus.benchmarks import grid, paper
from tests.integration.local_cluster import BIN, LocalCluster

pytestmark = [pytest.mark.ray, pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
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
METHODS = ("last_k", "random", "full_ft")
OVERRIDES = ("model.checkpoint=scratch", "data.samples_per_client=30", "federation.rounds=1")


def _bench(tmp_path, env):
    command = [sys.executable, "-m", "f3ocus.cli", "bench", "paper", "--quick", "--tasks", "t3", "--models", "llava",
               "--methods", ",".join(METHODS), "--jobs", "2", "--tasks-dir", str(tmp_path / "tasks"),
               "--output-dir", str(tmp_path / "runs"), *(arg for key in OVERRIDES for arg in ("--set", key))]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, cwd=ROOT)


def _children(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("bench-paper").experiment_id])
    (parent,) = [run for run in runs if run.data.tags.get("f3ocus.bench.role") == "parent"]
    return parent, [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id]


def test_grid_cells_are_tune_trials_on_two_nodes_and_resume(cache_env, tmp_path):
    from ray.util.state import list_nodes

    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "t3_small.yaml").write_text(TASK)
    with LocalCluster() as cluster:
        cluster.start_head(num_cpus=1, resources={"node_a": 10})
        cluster.add_node(num_cpus=1, resources={"node_b": 10})
        env = {**cluster.env, "RAY_ADDRESS": cluster.gcs_address}
        run = _bench(tmp_path, env)
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:] + cluster.logs()
        nodes = {n.node_id: n.resources_total for n in list_nodes(address=cluster.dashboard_url)}
        cells_dir = tmp_path / "runs" / "bench" / "paper-quick" / "cells"
        cells = {path.stem: json.loads(path.read_text()) for path in cells_dir.glob("*.json")}
        assert set(cells) == {f"t3.llava.{method}.s0" for method in METHODS}
        assert all(cell["status"] == "ok" and len(cell["score_per_round"]) == 2 for cell in cells.values())
        assert sum(line.startswith("[") and "score" in line for line in run.stdout.splitlines()) == 3  # progress
        labels = {node: next(k for k in ("node_a", "node_b") if k in total) for node, total in nodes.items()}
        assert {labels[cell["ray_node_id"]] for cell in cells.values()} == {"node_a", "node_b"}

        parent, children = _children(tmp_path)
        assert parent.info.status == "FINISHED"
        assert sorted(run.data.tags["f3ocus.bench.cell"] for run in children) == sorted(cells)
        assert all(run.info.status == "FINISHED" and "eval/acc" in run.data.metrics for run in children)
        assert (tmp_path / "runs" / "bench" / "paper-quick" / "tables.md").exists()

        # The changed-config cell (a stale hash on disk is what an edited config leaves) runs again, alone.
        stale = cells_dir / "t3.llava.random.s0.json"
        stale.write_text(json.dumps({**cells["t3.llava.random.s0"], "config_hash": "0" * 16}))
        again = _bench(tmp_path, env)
        assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-4000:]
    assert "2 already done, 1 to run" in again.stdout
    assert json.loads(stale.read_text())["config_hash"] == cells["t3.llava.random.s0"]["config_hash"]
    assert len(_children(tmp_path)[1]) == 4

    # Same cell, same seed, in this process instead of a trial on the cluster: the same figures.
    (cell,) = grid.build_cells(grid.PROFILES["quick"], tasks=("t3",), methods=("last_k",), models=("llava",),
                               seeds=None, overrides=OVERRIDES, tasks_dir=tmp_path / "tasks",
                               tracking={"experiment": "in-process", "output_dir": str(tmp_path / "inproc")})
    assert cell.config_hash == cells[cell.id]["config_hash"]
    here = paper.run_cell(cell, f"sqlite:///{tmp_path / 'inproc.db'}", "none", str(tmp_path / "logs"))
    assert here["status"] == "ok", here.get("error")
    assert here["score_per_round"] == cells[cell.id]["score_per_round"]
    assert here["per_client"] == cells[cell.id]["per_client"]


def test_bench_smoke_grid_through_ray_job_submit(cache_env, tmp_path):
    output = tmp_path / "runs"
    with LocalCluster() as cluster:
        cluster.start_head(num_cpus=2)
        submit = [str(BIN / "ray"), "job", "submit", "--address", cluster.dashboard_url, "--working-dir", str(ROOT),
                  "--", "python", "ray_jobs/bench.py", "--smoke-test", "--output-dir", str(output)]
        job = subprocess.run(submit, env=cluster.env, capture_output=True, text=True, timeout=900, cwd=ROOT)
        assert job.returncode == 0, job.stdout[-4000:] + job.stderr[-3000:] + cluster.logs()
    assert "2 cells, 0 already done, 2 to run" in job.stdout
    cells = [json.loads(path.read_text()) for path in (output / "bench" / "paper-quick" / "cells").glob("*.json")]
    assert sorted(cell["method"] for cell in cells) == ["last_k", "random"]
    assert all(cell["status"] == "ok" for cell in cells)
