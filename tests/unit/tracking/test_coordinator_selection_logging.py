"""The coordinator logs each round's selection (metrics, JSON, front figure) and the unit-rank heatmap at the end."""

import json

import pytest

from f3ocus.config.schema import ExperimentConfig, FederationConfig, SelectionConfig, TrackingConfig
from f3ocus.federated.coordinator import Coordinator
from f3ocus.federated.state import Federation
from f3ocus.tracking import names
from tests.unit.federated.test_coordinator import FakePool


class RecordingLogger:
    """Keeps what the coordinator logs: metrics per step and artifact names (`folder/file`)."""

    run_id = None
    experiment_id = None

    def __init__(self):
        self.metrics, self.artifacts, self.dicts = {}, [], []

    def logged_steps(self, key):
        return None

    def log_params(self, params):
        pass

    def log_metrics(self, metrics, step, timestamp_ms=None):
        self.metrics.setdefault(step, {}).update(metrics)

    def log_dict(self, data, artifact_file):
        self.dicts.append(artifact_file)

    def log_artifact(self, path, artifact_path=None):
        assert path.exists() and path.stat().st_size > 0
        self.artifacts.append(f"{artifact_path}/{path.name}")

    def close(self, status="FINISHED"):
        pass


def _run(tmp_path, method):
    logger = RecordingLogger()
    cfg = ExperimentConfig(federation=FederationConfig(rounds=2, budgets=(1, 1, 2)),
                           selection=SelectionConfig(method=method, pop_size=10, max_evals=200),
                           tracking=TrackingConfig(mlflow=False))
    federation = Federation(("c0", "c1", "c2"), {"c0": 10, "c1": 20, "c2": 30}, (1, 1, 2), {c: 0.0 for c in "012"})
    summary = Coordinator(cfg, federation, str(tmp_path), FakePool, lambda run_id: logger).run()
    return summary, logger


def test_f3ocus_rounds_log_objectives_front_and_unit_ranks(tmp_path):
    summary, logger = _run(tmp_path, "f3ocus")
    for step in (1, 2):
        metrics = logger.metrics[step]
        assert {names.SELECT_IMPORTANCE, names.SELECT_VARIANCE, names.SELECT_FRONT_SIZE,
                names.SELECT_SOLVER_SECONDS, names.SELECT_DISTINCT_UNITS} <= set(metrics)
        record = summary["history"][step]
        assert record["selection"] == {"importance": pytest.approx(metrics[names.SELECT_IMPORTANCE]),
                                       "variance": pytest.approx(metrics[names.SELECT_VARIANCE]),
                                       "front_size": metrics[names.SELECT_FRONT_SIZE]}
        payload = json.loads((tmp_path / "selection" / f"round_{step:03d}.json").read_text())
        # The chosen masks' importance is the chosen front point's (same row normalisation as the solver).
        assert payload["front"][payload["chosen"]][0] == pytest.approx(payload["objectives"]["importance"])
        assert sum(map(len, record["selected"].values())) == sum(map(sum, payload["masks"])) == 4
    assert summary["history"][0]["selection"] is None
    assert not any(name.startswith("select/") for name in logger.metrics[0])
    assert {"selection/round_001.json", "selection/front_round_001.png", "selection/front_round_002.png",
            "selection/unit_ranks.json", "selection/unit_ranks.png"} <= set(logger.artifacts)
    ranks = json.loads((tmp_path / "selection" / "unit_ranks.json").read_text())
    assert ranks["rounds"] == [1, 2]
    # FakePool's client ck reports roll([0.5, 0.3, 0.2], k): c1 = (0.2, 0.5, 0.3) -> ranks (3, 1, 2).
    assert ranks["ranks"]["c1"] == [[3, 1, 2], [3, 1, 2]]


def test_rule_based_selector_without_scores_logs_no_front_and_no_heatmap(tmp_path):
    summary, logger = _run(tmp_path, "first_k")
    metrics = logger.metrics[1]
    assert names.SELECT_VARIANCE in metrics and names.SELECT_IMPORTANCE not in metrics
    assert names.SELECT_FRONT_SIZE not in metrics
    # first_k with budgets (1, 1, 2): histogram (3, 1, 0), mean 4/3, variance (25/9 + 1/9 + 16/9) / 3 = 14/9.
    assert metrics[names.SELECT_VARIANCE] == pytest.approx(14 / 9)
    assert summary["history"][1]["selection"] == {"importance": None, "variance": pytest.approx(14 / 9),
                                                  "front_size": None}
    assert "selection/round_001.json" in logger.artifacts
    assert not [a for a in logger.artifacts if a.endswith(".png") or "unit_ranks" in a]
