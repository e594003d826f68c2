"""The round loop on a fake pool: phases in order, masked aggregation, byte counts, failures reported."""

import numpy as np
import pytest
import torch

from f3ocus.config.schema import ExperimentConfig, FederationConfig, SelectionConfig, TrackingConfig
from f3ocus.federated.coordinator import Coordinator
from f3ocus.federated.state import CHECKPOINT, Federation, FederationState
from f3ocus.federated.messages import ClientUpdate, EvalReport, ModelInfo, ScoreReport, WorkerError
from f3ocus.federated.pool import FaultLog
from f3ocus.tracking.base import NullLogger

UNITS = ("u0", "u1", "u2")


class FakePool:
    """Unit ui holds one tensor 'ui.w' of 2 floats; client k adds (k+1) to every unit it trains."""

    def __init__(self, fail_train=()):
        self.calls = []
        self.fail_train = set(fail_train)
        self.faults = FaultLog()  # nothing to recover from: a failing task fails at once

    def node_ids(self):
        return []

    def model_info(self):
        names = {u: (f"{u}.w",) for u in UNITS}
        names["head"] = ("head.w",)
        tensors = {f"{u}.w": torch.zeros(2) for u in (*UNITS, "head")}
        return ModelInfo(UNITS, names, {u: 2 for u in names}, tensors)

    def map(self, method, state, tasks, on_done=None, attach=None):
        self.calls.append(method)
        replies = [getattr(self, method)(state, attach(task) if attach else task) for task in tasks]
        for reply in replies:
            on_done and on_done(reply)
        return replies

    def score(self, state, task):
        k = int(task.client[-1])
        return ScoreReport(task.client, np.roll(np.array([0.5, 0.3, 0.2]), k), 0.0)

    def train(self, state, task):
        if task.client in self.fail_train:
            return WorkerError(task.client, "RuntimeError: boom")
        k = int(task.client[-1])
        chosen = [u for u, m in zip(UNITS, task.mask) if m] + ["head"]
        tensors = {f"{u}.w": state.tensors[f"{u}.w"] + (k + 1) for u in chosen}
        return ClientUpdate(task.client, 10 * (k + 1), tensors, 1.0 / (k + 1), 0.0)

    def evaluate(self, state, task):
        return EvalReport(task.client, float(state.tensors["u0.w"][0]) / 10, 0.5, 20, 0.0)

    def shutdown(self):
        pass


def _coordinator(tmp_path, pool, method="top_k", budgets=(1, 1, 2)):
    cfg = ExperimentConfig(federation=FederationConfig(rounds=2, budgets=budgets),
                           selection=SelectionConfig(method=method), tracking=TrackingConfig(mlflow=False))
    federation = Federation(("c0", "c1", "c2"), {"c0": 10, "c1": 20, "c2": 30}, budgets,
                            {"c0": 0.5, "c1": 0.25, "c2": 0.0})
    return Coordinator(cfg, federation, str(tmp_path), lambda: pool, lambda run_id: NullLogger())


def test_round_runs_phases_in_order_and_aggregates_masked(tmp_path):
    pool = FakePool()
    coordinator = _coordinator(tmp_path, pool)
    coordinator.evaluate_initial()
    record = coordinator.run_round(1)
    assert pool.calls == ["evaluate", "score", "train", "evaluate"]
    # top_k on rolled scores: c0 -> u0; c1 -> u1; c2 (budget 2) -> u2, u0.
    assert record.selected == {"c0": ["u0"], "c1": ["u1"], "c2": ["u0", "u2"]}
    tensors = coordinator.state.tensors
    # u0 trained by c0 (+1, 10 ex) and c2 (+3, 30 ex): (10*1 + 30*3) / 40 = 2.5
    assert torch.allclose(tensors["u0.w"], torch.full((2,), 2.5))
    assert torch.allclose(tensors["u1.w"], torch.full((2,), 2.0))
    assert torch.allclose(tensors["u2.w"], torch.full((2,), 3.0))
    # head trained by all: (10*1 + 20*2 + 30*3) / 60 = 140/60
    assert torch.allclose(tensors["head.w"], torch.full((2,), 140 / 60))
    # bytes: each update = (selected units + head) x 2 floats x 4 bytes; down = 4 tensors x 8 bytes x 3 clients
    assert record.bytes_up_per_client == {"c0": 16, "c1": 16, "c2": 24}
    assert record.bytes_up == 56 and record.bytes_down == 32 * 3
    assert record.accuracy == pytest.approx(0.25)


def test_run_writes_a_checkpoint_and_summary(tmp_path):
    coordinator = _coordinator(tmp_path, FakePool(), method="first_k")
    summary = coordinator.run()
    assert summary["rounds"] == 2 and len(summary["history"]) == 3  # round 0 + 2 rounds
    assert summary["majority_baseline"]["accuracy"] == pytest.approx(0.25)
    assert summary["bytes_up_total"] == sum(r["bytes_up"] for r in summary["history"])
    state = FederationState.load(tmp_path / CHECKPOINT)
    assert state.round_idx == 2 and torch.equal(state.tensors["u0.w"], coordinator.state.tensors["u0.w"])


def test_failed_client_is_left_out_and_reported(tmp_path):
    coordinator = _coordinator(tmp_path, FakePool(fail_train={"c2"}))
    record = coordinator.run_round(1)
    assert record.failed_clients == ["c2"]
    assert "c2" not in record.bytes_up_per_client
    assert torch.allclose(coordinator.state.tensors["u0.w"], torch.full((2,), 1.0))  # only c0 trained u0


def test_every_client_failing_stops_with_the_reasons(tmp_path):
    coordinator = _coordinator(tmp_path, FakePool(fail_train={"c0", "c1", "c2"}))
    with pytest.raises(RuntimeError, match="boom"):
        coordinator.run_round(1)


def test_upload_outside_the_selection_is_rejected(tmp_path):
    class Cheater(FakePool):
        def train(self, state, task):
            update = super().train(state, task)
            return ClientUpdate(update.client, update.num_examples, {**update.tensors, "u1.w": torch.ones(2)}, 0, 0)

    coordinator = _coordinator(tmp_path, Cheater(), method="first_k", budgets=(1, 1, 1))
    with pytest.raises(RuntimeError, match="outside its selection"):
        coordinator.run_round(1)
