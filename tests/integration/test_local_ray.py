"""A real (in-process started) Ray instance: 2 rounds, 3 clients on 2 client actors, MLflow in sqlite.

Also: the same config and seed give identical final metrics, on Ray and on the local engine.
"""

import json

import pytest
from mlflow.tracking import MlflowClient

from f3ocus.config import load_config
from f3ocus.experiment import run_experiment

pytestmark = [pytest.mark.ray, pytest.mark.integration]


def _config(tmp_path, *extra):
    return load_config("configs/smoke/cpu_tiny.yaml",
                       [f"tracking.output_dir={tmp_path}", "data.samples_per_client=40", *extra])


def test_two_rounds_three_clients_two_actors(tmp_path, cache_env):
    result = run_experiment(_config(tmp_path), output_json=str(tmp_path / "out.json"), show=lambda _: None)
    assert result["rounds"] == 2 and len(result["history"]) == 3
    assert set(result["final"]["per_client"]) == {"bloodmnist", "dermamnist", "pathmnist"}
    assert 0.0 <= result["final"]["accuracy"] <= 1.0 and result["bytes_up_total"] > 0
    for key in ("majority_baseline", "mlflow_run_id", "history", "final"):
        assert key in json.loads((tmp_path / "out.json").read_text())
    # budgets [1, 2, 3]: each client uploads exactly its selected units (+ head)
    selected = result["history"][1]["selected"]
    assert [len(selected[c]) for c in ("bloodmnist", "dermamnist", "pathmnist")] == [1, 2, 3]
    sizes = result["unit_num_parameters"]
    for client, units in selected.items():
        expected = 4 * (sum(sizes[u] for u in units) + sizes["head"])  # float32
        assert result["history"][1]["bytes_up_per_client"][client] == expected

    client = MlflowClient(result["tracking_uri"])
    run = client.get_run(result["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["federation.rounds"] == "2" and run.data.params["model.family"] == "llava"
    history = client.get_metric_history(run.info.run_id, "eval/acc")
    assert [m.step for m in history] == [0, 1, 2]
    assert "client/pathmnist/acc" in run.data.metrics and "comm/bytes_up" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"summary.json", "config", "selection"} <= artifacts
    rounds = {a.path for a in client.list_artifacts(run.info.run_id, "selection")}
    # top_k has scores (unit ranks at the end) but no Pareto front (no front_round_NNN.png).
    assert rounds == {"selection/round_001.json", "selection/round_002.json", "selection/unit_ranks.json",
                      "selection/unit_ranks.png"}

    # Determinism: the same config and seed, on the in-process engine, give identical final metrics.
    again = run_experiment(_config(tmp_path, "federation.engine=local"), show=lambda _: None)
    assert again["final"] == result["final"]
    assert [r["selected"] for r in again["history"]] == [r["selected"] for r in result["history"]]
