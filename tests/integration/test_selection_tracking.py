"""MLflow receives the F3OCUS selection artifacts from a real in-process run (no Ray): metrics, front, ranks."""

import pytest

from f3ocus.config import load_config
from f3ocus.experiment import run_experiment

pytestmark = pytest.mark.integration


def test_f3ocus_run_logs_objectives_front_figure_and_rank_heatmap_to_mlflow(tmp_path):
    # Prepare
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = load_config("configs/smoke/cpu_tiny.yaml", [
        f"tracking.output_dir={tmp_path}", "tracking.mlflow=true", f"tracking.tracking_uri={uri}",
        "federation.engine=local", "federation.rounds=1", "data.samples_per_client=30", "selection.method=f3ocus",
        "selection.scorer=grad_norm", "selection.pop_size=20", "selection.max_evals=400"])
    # Execute
    result = run_experiment(cfg, show=lambda _: None)
    # Assert
    client = MlflowClient(uri)
    run_id = result["mlflow_run_id"]
    for name in ("select/importance", "select/variance", "select/front_size", "select/solver_seconds"):
        assert [m.step for m in client.get_metric_history(run_id, name)] == [1], name
    importance = client.get_metric_history(run_id, "select/importance")[0].value
    assert result["history"][1]["selection"]["importance"] == pytest.approx(importance)
    artifacts = {a.path for a in client.list_artifacts(run_id, "selection")}
    assert {"selection/round_001.json", "selection/front_round_001.png", "selection/unit_ranks.png",
            "selection/unit_ranks.json"} <= artifacts
    sizes = {a.path: a.file_size for a in client.list_artifacts(run_id, "selection")}
    assert sizes["selection/front_round_001.png"] > 0 and sizes["selection/unit_ranks.png"] > 0
