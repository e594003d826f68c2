"""1,000 virtual clients through the coordinator: a round completes and no more than ~one update per worker
is held at a time (the coordinator's memory does not grow with the number of clients).

The pool here is a light stand-in for the workers (a few hundred floats per unit, no model): the same
federation with the real tiny model takes minutes per round on 2 CPUs (`bench/scale.py`, docs/BENCHMARKS.md
"Scale: virtual clients"), which is too long for the test suite.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from f3ocus.config.schema import ExperimentConfig, FederationConfig, SelectionConfig, TrackingConfig
from f3ocus.data.partition import client_names
from f3ocus.federated.aggregate import masked_fedavg
from f3ocus.federated.coordinator import Coordinator
from f3ocus.federated.state import Federation
from f3ocus.federated.messages import ClientUpdate, EvalReport, ModelInfo, ScoreReport
from f3ocus.federated.pool import FaultLog
from f3ocus.tracking.base import NullLogger
from f3ocus.tracking.mlflow_logger import MlflowLogger
from f3ocus.tracking.selection_artifacts import MAX_HEATMAP_CLIENTS

N = 1000
UNITS = ("u0", "u1", "u2", "u3")
SIZE = 256  # floats per unit tensor


class ManyClientPool:
    """Client k's update adds (k % 7 + 1) / 10 to each unit it trains; replies come back `window` at a time
    in reverse order (like several workers finishing out of order). Records the most updates alive at once
    (returned and not yet released by the coordinator)."""

    def __init__(self, window: int = 1):
        self.window = window
        self.sent: dict[int, tuple[int, dict]] = {}  # client index -> (num_examples, copy of its update)
        self.max_alive = 0
        self._alive: list[ClientUpdate] = []
        self.faults = FaultLog()  # nothing to recover from: every task answers

    def node_ids(self):
        return []

    def model_info(self):
        names = {u: (f"{u}.w",) for u in (*UNITS, "head")}
        tensors = {f"{u}.w": torch.zeros(SIZE) for u in (*UNITS, "head")}
        return ModelInfo(UNITS, names, {u: SIZE for u in names}, tensors)

    def map(self, method, state, tasks, on_done=None, attach=None):
        replies = [None] * len(tasks)
        for start in range(0, len(tasks), self.window):
            for i in reversed(range(start, min(start + self.window, len(tasks)))):
                replies[i] = getattr(self, method)(state, tasks[i])
                if isinstance(replies[i], ClientUpdate):
                    self._alive.append(replies[i])
                    self._alive = [u for u in self._alive if u.tensors]
                    self.max_alive = max(self.max_alive, len(self._alive))
                on_done and on_done(replies[i])
        return replies

    def score(self, state, task):
        k = int(task.client.split("_")[1])
        return ScoreReport(task.client, np.roll(np.array([0.4, 0.3, 0.2, 0.1]), k % 4), 0.0)

    def train(self, state, task):
        k = int(task.client.split("_")[1])
        chosen = [u for u, m in zip(UNITS, task.mask) if m] + ["head"]
        tensors = {f"{u}.w": state.tensors[f"{u}.w"] + (k % 7 + 1) / 10 for u in chosen}
        num_examples = 8 + k % 3
        self.sent[k] = (num_examples, {name: t.clone() for name, t in tensors.items()})
        return ClientUpdate(task.client, num_examples, tensors, 1.0, 0.0)

    def evaluate(self, state, task):
        return EvalReport(task.client, float(state.tensors["u0.w"][0]), 0.5, 2, 0.0)

    def shutdown(self):
        pass


@pytest.mark.parametrize("window", [1, 2])
def test_a_round_of_1000_clients_holds_one_update_per_worker(tmp_path, window):
    clients = tuple(client_names(N))
    assert clients[0] == "client_000" and clients[-1] == "client_999" and len(set(clients)) == N
    cfg = ExperimentConfig(federation=FederationConfig(rounds=1, budgets=2, min_clients=N),
                           selection=SelectionConfig(method="top_k"), tracking=TrackingConfig(mlflow=False))
    federation = Federation(clients, {c: 10 for c in clients}, (2,) * N, {c: 0.0 for c in clients})
    pool = ManyClientPool(window)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    make_logger = (lambda run_id: NullLogger()) if window == 1 else \
        (lambda run_id: MlflowLogger(uri, "many", "many", tmp_path / "mlartifacts"))
    coordinator = Coordinator(cfg, federation, str(tmp_path), lambda: pool, make_logger)
    before = dict(coordinator.state.tensors)
    coordinator.evaluate_initial()
    record = coordinator.run_round(1)
    summary = coordinator.finish()
    # Every client trained, was averaged and evaluated; nothing failed.
    assert len(record.per_client) == N and record.failed_clients == []
    assert len(record.bytes_up_per_client) == N and record.bytes_up == N * 3 * SIZE * 4
    # Exactly the masked FedAvg of all updates in client order, although they arrived out of order.
    expected = masked_fedavg(before, [pool.sent[k] for k in range(N)])
    assert all(torch.equal(coordinator.state.tensors[name], expected[name]) for name in expected)
    # Flat memory: an update is released once folded; at most `window` were alive at any time.
    assert pool.max_alive <= window
    # The selection artifacts cover all clients; the heatmap figure draws only the first few.
    ranks = json.loads((tmp_path / "selection" / "unit_ranks.json").read_text())
    assert len(ranks["clients"]) == N and (tmp_path / "selection" / "unit_ranks.png").stat().st_size > 0
    assert MAX_HEATMAP_CLIENTS < N and summary["rounds"] == 1
    if window > 1:  # 3 per-client metrics x 1,000 clients reached MLflow (sent in batches of 500)
        from mlflow.tracking import MlflowClient

        metrics = MlflowClient(uri).get_run(summary["mlflow_run_id"]).data.metrics
        assert sum(key.startswith("client/") for key in metrics) == 3 * N
        assert metrics["client/client_999/bytes_up"] == 3 * SIZE * 4

