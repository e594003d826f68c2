"""Client faults without Ray: pool retries, NaN/Inf updates rejected, min_clients, the fault config knobs."""

import math

import pytest
import torch

from f3ocus.config.schema import ConfigError, ExperimentConfig, FederationConfig, SelectionConfig, TrackingConfig
from f3ocus.config.validate import check_min_clients
from f3ocus.federated.coordinator import Coordinator
from f3ocus.federated.state import CHECKPOINT, Federation, FederationState, TooFewClientsError
from f3ocus.federated.messages import ClientUpdate, EvalTask, GlobalState, WorkerError
from f3ocus.federated.pool import FaultLog, LocalPool
from f3ocus.tracking.base import NullLogger
from tests.unit.federated.test_coordinator import FakePool


class Flaky:
    """A stand-in worker (no model): `evaluate` raises on the first `fails` calls per client, then answers."""

    fails = 1

    def __init__(self, spec):
        self.spec = spec
        self.calls: dict[str, int] = {}

    def evaluate(self, state, task):
        self.calls[task.client] = self.calls.get(task.client, 0) + 1
        if self.calls[task.client] <= self.fails:
            raise RuntimeError(f"flaky {task.client}")
        return f"ok {task.client}"


def _map(pool, clients=("c0", "c1")):
    done = []
    replies = pool.map("evaluate", GlobalState(0, {}), [EvalTask(c, 1) for c in clients], done.append)
    return replies, done


def test_local_pool_retries_a_raising_task_and_succeeds_on_the_second_attempt():
    pool = LocalPool(spec=None, retries=1, worker_cls=Flaky)
    replies, done = _map(pool)
    assert replies == ["ok c0", "ok c1"] and done == replies  # on_done once per task, with the final reply
    assert pool._worker.calls == {"c0": 2, "c1": 2}
    assert pool.faults.retries == [("c0", "RuntimeError: flaky c0"), ("c1", "RuntimeError: flaky c1")]


@pytest.mark.parametrize("retries, fails, attempts", [(0, 1, 1), (2, 5, 3)])
def test_local_pool_gives_a_worker_error_when_the_retries_are_spent(retries, fails, attempts):
    worker_cls = type("AlwaysFlaky", (Flaky,), {"fails": fails})
    pool = LocalPool(spec=None, retries=retries, worker_cls=worker_cls)
    replies, _ = _map(pool, ("c0",))
    assert replies == [WorkerError("c0", "RuntimeError: flaky c0")]
    assert pool._worker.calls == {"c0": attempts} and len(pool.faults.retries) == retries


# ------------------------------------------------------------------------------------ coordinator
def _coordinator(tmp_path, pool, min_clients=1, budgets=(1, 1, 2)):
    cfg = ExperimentConfig(federation=FederationConfig(rounds=3, budgets=budgets, min_clients=min_clients),
                           selection=SelectionConfig(method="top_k"), tracking=TrackingConfig(mlflow=False))
    federation = Federation(("c0", "c1", "c2"), {"c0": 10, "c1": 20, "c2": 30}, budgets,
                            {"c0": 0.5, "c1": 0.25, "c2": 0.0})
    return Coordinator(cfg, federation, str(tmp_path), lambda: pool, lambda run_id: NullLogger())


class Poisoned(FakePool):
    """FakePool whose `poisoned` clients upload NaN in one tensor, or report a non-finite loss."""

    def __init__(self, poisoned=(), how="nan_tensor", **kwargs):
        super().__init__(**kwargs)
        self.poisoned, self.how = set(poisoned), how
        self.train_tasks = []

    def train(self, state, task):
        self.train_tasks.append(task.client)
        update = super().train(state, task)
        if task.client not in self.poisoned or isinstance(update, WorkerError):
            return update
        if self.how == "nan_tensor":
            tensors = {**update.tensors, "head.w": torch.tensor([1.0, math.nan])}
            return ClientUpdate(update.client, update.num_examples, tensors, update.train_loss, 0.0)
        if self.how == "inf_tensor":
            tensors = {name: torch.full_like(t, math.inf) for name, t in update.tensors.items()}
            return ClientUpdate(update.client, update.num_examples, tensors, update.train_loss, 0.0)
        return ClientUpdate(update.client, update.num_examples, update.tensors, math.nan, 0.0)


@pytest.mark.parametrize("how, words", [("nan_tensor", "NaN/Inf in 1 tensor"), ("inf_tensor", "NaN/Inf in 2 tensor"),
                                        ("nan_loss", "train_loss is nan")])
def test_non_finite_update_is_rejected_and_not_aggregated(tmp_path, how, words):
    coordinator = _coordinator(tmp_path, Poisoned(poisoned={"c1"}, how=how))
    record = coordinator.run_round(1)
    # top_k (see test_coordinator): c0 -> u0 (+1, 10 ex), c1 -> u1 (+2, 20 ex, rejected), c2 -> u0, u2 (+3, 30 ex)
    assert record.selected == {"c0": ["u0"], "c1": ["u1"], "c2": ["u0", "u2"]}
    tensors = coordinator.state.tensors
    assert torch.equal(tensors["u0.w"], torch.full((2,), (10 * 1 + 30 * 3) / 40))  # 2.5
    assert torch.equal(tensors["u1.w"], torch.zeros(2))  # only c1 trained it: keeps the global value
    assert torch.equal(tensors["u2.w"], torch.full((2,), 3.0))
    assert torch.equal(tensors["head.w"], torch.full((2,), (10 * 1 + 30 * 3) / 40))  # c1's 20 examples not counted
    assert record.failed_clients == ["c1"] and "c1" not in record.bytes_up_per_client
    assert record.failure_reasons["c1"].startswith("train: rejected: ") and words in record.failure_reasons["c1"]
    assert record.train_loss == pytest.approx((1.0 + 1 / 3) / 2)  # c1's loss is not averaged in

    # The same as a round in which c1 never answered.
    without = _coordinator(tmp_path / "without", FakePool(fail_train={"c1"}))
    without.run_round(1)
    assert all(torch.equal(tensors[name], without.state.tensors[name]) for name in tensors)


def test_too_few_clients_retries_the_round_once_then_stops_with_the_reasons(tmp_path):
    pool = Poisoned(poisoned={"c2"}, fail_train={"c1"})
    coordinator = _coordinator(tmp_path, pool, min_clients=2)
    coordinator.evaluate_initial()
    before = FederationState.load(tmp_path / CHECKPOINT)
    with pytest.raises(TooFewClientsError) as caught:
        coordinator.run_round(1)
    message = str(caught.value)
    assert "round 1: only 1 of 3 clients reported a usable update" in message
    assert "federation.min_clients=2" in message
    assert "c1: RuntimeError: boom" in message and "c2: rejected: NaN/Inf" in message
    assert pool.train_tasks == ["c0", "c1", "c2", "c1", "c2"]  # the failed clients' training, retried once
    assert pool.calls == ["evaluate", "score", "train", "train"]  # nothing evaluated or aggregated after
    after = FederationState.load(tmp_path / CHECKPOINT)
    assert after.round_idx == before.round_idx == 0 and len(after.history) == 1
    assert all(torch.equal(after.tensors[n], before.tensors[n]) for n in before.tensors)


def test_a_round_retry_that_succeeds_completes_the_round(tmp_path):
    class FailsFirstTime(FakePool):
        def train(self, state, task):
            if self.calls.count("train") > 1:  # the round's retry
                self.fail_train.discard(task.client)
            return super().train(state, task)

    coordinator = _coordinator(tmp_path, FailsFirstTime(fail_train={"c1", "c2"}), min_clients=3)
    record = coordinator.run_round(1)
    assert record.failed_clients == [] and set(record.bytes_up_per_client) == {"c0", "c1", "c2"}
    assert record.retries == {"c1": 1, "c2": 1}
    assert record.retry_reasons["c1"] == ["train (round retry): RuntimeError: boom"]
    # The same global state as a round in which nobody failed.
    clean = _coordinator(tmp_path / "clean", FakePool())
    clean.run_round(1)
    assert all(torch.equal(coordinator.state.tensors[n], clean.state.tensors[n]) for n in clean.state.tensors)


def test_pool_retries_are_recorded_per_round(tmp_path):
    class RetryingPool(FakePool):
        def __init__(self):
            super().__init__()
            self.faults = FaultLog()

        def map(self, method, state, tasks, on_done=None, attach=None):
            if method == "train":  # as if c0's actor died once and the retry on a new actor succeeded
                self.faults.retries.append(("c0", "ActorDiedError: The actor died"))
                self.faults.actors_replaced += 1
            return super().map(method, state, tasks, on_done)

    coordinator = _coordinator(tmp_path, RetryingPool())
    first, second = coordinator.run_round(1), coordinator.run_round(2)
    for record in (first, second):
        assert record.failed_clients == [] and record.actors_replaced == 1
        assert record.retries == {"c0": 1}
        assert record.retry_reasons == {"c0": ["train: ActorDiedError: The actor died"]}


# ------------------------------------------------------------------------------------------ config
@pytest.mark.parametrize("overrides, field", [({"client_retries": -1}, "client_retries"),
                                              ({"min_clients": 0}, "min_clients")])
def test_fault_knobs_are_validated(overrides, field):
    with pytest.raises(ConfigError) as caught:
        FederationConfig(**overrides)
    assert caught.value.field == field


def test_min_clients_cannot_exceed_the_number_of_clients():
    cfg = ExperimentConfig(federation=FederationConfig(min_clients=4))
    check_min_clients(cfg, num_clients=None)  # unknown yet: checked once the data is built
    check_min_clients(cfg, num_clients=4)
    with pytest.raises(ConfigError, match="only 3 clients") as caught:
        check_min_clients(cfg, num_clients=3)
    assert caught.value.field == "federation.min_clients"


def test_the_cli_reports_a_stopped_run_in_one_line(monkeypatch, capsys):
    import f3ocus.experiment
    from f3ocus.cli import main

    def stop(*args, **kwargs):
        raise TooFewClientsError("round 3: only 1 of 3 clients reported a usable update")

    monkeypatch.setattr(f3ocus.experiment, "run_experiment", stop)
    assert main(["run", "configs/smoke/cpu_tiny.yaml"]) == 1
    assert capsys.readouterr().err == "run stopped: round 3: only 1 of 3 clients reported a usable update\n"
