"""The dashboard's final figure is `eval/score` when a run logged it (F1 for multi-label clients), else `eval/acc`."""

from __future__ import annotations

import pytest


def test_eval_score_is_preferred_over_eval_acc(tmp_path):
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    from f3ocus.dashboard.collect import collect

    # Prepare: a T6-like run (eval/acc over its VQA clients, eval/score over all) and an older run (eval/acc only).
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    experiment = client.create_experiment("t6", artifact_location=(tmp_path / "artifacts").as_uri())
    for name, metrics in (("mixed", {"eval/acc": (0.1, 0.2), "eval/score": (0.3, 0.6)}),
                          ("older", {"eval/acc": (0.1, 0.4)})):
        run_id = client.create_run(experiment, run_name=name).info.run_id
        client.log_batch(run_id, metrics=[Metric(key, value, 1000 + step, step) for key, values in metrics.items()
                                          for step, value in enumerate(values)],
                         params=[Param("selection.method", "top_k"), Param("data.task", "multi_source")])
        client.set_terminated(run_id, "FINISHED")
    # Execute
    runs = {run["name"]: run for run in collect("t6", uri)["runs"]}
    # Assert
    assert runs["mixed"]["final_acc"] == pytest.approx(0.6) and [v for _, v in runs["mixed"]["acc"]] == [0.3, 0.6]
    assert runs["older"]["final_acc"] == pytest.approx(0.4)
