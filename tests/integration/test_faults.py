"""Faults on a real local Ray: client actors that die or raise are replaced and retried, a killed coordinator
actor is restarted from the checkpoint, and the run ends with what an uninterrupted run gives.

One Ray instance serves the module (started here, so `run_on_ray` joins it instead of starting its own).
Fault injection lives in this file: a ClientWorker subclass that kills its own actor process
(`os._exit(1)`) for a chosen client and round, handed to `RayPool(worker_cls=...)`; the test module is
pickled by value so the coordinator and client actors can rebuild the class without importing `tests`.
"""

import functools
import os
import sys
import threading
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from f3ocus.config import load_config
from f3ocus.experiment import run_experiment
from f3ocus.federated import ray_engine
from f3ocus.federated.state import CHECKPOINT, FederationState, TooFewClientsError
from f3ocus.federated.messages import EvalTask, GlobalState, WorkerError
from f3ocus.federated.pool import RayPool
from f3ocus.federated.worker import ClientWorker

pytestmark = [pytest.mark.ray, pytest.mark.integration]

CLIENTS = ("bloodmnist", "dermamnist", "pathmnist")
VICTIM = "dermamnist"


@pytest.fixture(scope="module")
def ray_session(cache_env):
    import ray

    from f3ocus.experiment import OFFLINE_ENV

    assert not ray.is_initialized()
    env = {**OFFLINE_ENV, "F3OCUS_CACHE_DIR": str(cache_env), "OMP_NUM_THREADS": "1"}
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, runtime_env={"env_vars": env})
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray's own (vendored) cloudpickle
    try:
        yield ray
    finally:
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
        ray.shutdown()


@pytest.fixture(scope="module")
def output_dir(tmp_path_factory):
    """One output dir per module: the federated data store is built once and shared by every run."""
    return tmp_path_factory.mktemp("fault-runs")


def _config(output_dir, run_name, *extra):
    return load_config("configs/smoke/cpu_tiny.yaml",
                       [f"tracking.output_dir={output_dir}", f"tracking.run_name={run_name}",
                        "data.samples_per_client=40", "tracking.mlflow=false", *extra])


class FaultyWorker(ClientWorker):
    """`VICTIM`'s training kills its actor process once in round 1 (`os._exit(1)`: the process is gone, as
    with a crash or an OOM kill) and raises on every attempt in round 2. Marker files in `marker_dir` (set
    on a per-test subclass, see `_faulty_worker`) count the deaths across actors."""

    marker_dir = ""

    def train(self, state, task):
        if task.client == VICTIM and task.round_idx == 1:
            marker = Path(self.marker_dir) / "died-in-round-1"
            if not marker.exists():
                marker.touch()
                os._exit(1)
        if task.client == VICTIM and task.round_idx == 2:
            raise RuntimeError("injected fault")
        return super().train(state, task)


def _faulty_worker(marker_dir):
    # A fresh class per test: a class attribute set after the class was first pickled does not travel.
    return type("FaultyWorkerForTest", (FaultyWorker,), {"marker_dir": str(marker_dir)})


class Stub:
    """A worker with no model, for the pool alone: raises or dies on the chosen clients."""

    def __init__(self, marker_dir):
        self.marker_dir = Path(marker_dir)

    def evaluate(self, state, task):
        if task.client == "raises":
            raise ValueError("bad shard")
        if task.client == "dies-once" and not (self.marker_dir / "died").exists():
            (self.marker_dir / "died").touch()
            os._exit(1)
        return f"{task.client} on pid {os.getpid()}"


def test_ray_pool_replaces_a_dead_actor_and_retries_a_raising_task(ray_session, tmp_path):
    pool = RayPool(str(tmp_path), 2, {"num_cpus": 0}, retries=1, worker_cls=Stub)
    try:
        tasks = [EvalTask(client, 1) for client in ("a", "dies-once", "raises", "b")]
        done = []
        replies = pool.map("evaluate", GlobalState(0, {}), tasks, done.append)
        assert len(done) == 4  # on_done once per task, with its final reply
        assert replies[0].startswith("a on") and replies[1].startswith("dies-once on")
        assert replies[2] == WorkerError("raises", "ValueError: bad shard")  # raised on both attempts
        assert replies[3].startswith("b on")
        assert pool.faults.actors_replaced == 1
        reasons = dict(pool.faults.retries)
        assert sorted(reasons) == ["dies-once", "raises"] and reasons["dies-once"].startswith("ActorDiedError")
        # The replacement serves later calls: both actors answer.
        again = pool.map("evaluate", GlobalState(0, {}), [EvalTask(c, 2) for c in "cdef"])
        assert all(isinstance(reply, str) for reply in again) and pool.faults.actors_replaced == 1
    finally:
        pool.shutdown()


def test_a_client_actor_that_dies_mid_round_is_replaced_and_the_run_completes(ray_session, output_dir, tmp_path,
                                                                               monkeypatch):
    worker_cls = _faulty_worker(tmp_path)
    monkeypatch.setattr(ray_engine, "RayPool", functools.partial(RayPool, worker_cls=worker_cls))
    lines = []
    result = run_experiment(_config(output_dir, "client-dies", "federation.client_retries=1", "tracking.mlflow=true"),
                            show=lines.append)
    assert (tmp_path / "died-in-round-1").exists()
    assert result["rounds"] == 2 and set(result["final"]["per_client"]) == set(CLIENTS)
    first, second = result["history"][1], result["history"][2]
    # Round 1: the victim's actor died; a new actor took its place and the retry succeeded.
    assert first["failed_clients"] == [] and set(first["bytes_up_per_client"]) == set(CLIENTS)
    assert first["actors_replaced"] == 1 and first["retries"] == {VICTIM: 1}
    assert first["retry_reasons"][VICTIM][0].startswith("train: ActorDiedError")
    # Round 2: its training raised on both attempts: left out of the average, the others' round completes.
    assert second["failed_clients"] == [VICTIM] and VICTIM not in second["bytes_up_per_client"]
    assert second["actors_replaced"] == 0 and second["retries"] == {VICTIM: 1}
    assert second["failure_reasons"] == {VICTIM: "train: RuntimeError: injected fault"}
    assert len(second["bytes_up_per_client"]) == 2 and set(second["per_client"]) == set(CLIENTS)
    assert any(f"failed ['{VICTIM}']" in line for line in lines)
    history = MlflowClient(result["tracking_uri"]).get_metric_history(result["mlflow_run_id"], "fed/failed_clients")
    assert [(m.step, m.value) for m in history] == [(0, 0), (1, 0), (2, 1)]


def test_too_few_clients_stops_a_ray_run_with_the_reasons_and_keeps_the_checkpoint(ray_session, output_dir,
                                                                                    tmp_path, monkeypatch):
    class FailsInRoundOne(ClientWorker):
        def train(self, state, task):
            if task.client == VICTIM:
                raise RuntimeError("injected fault")
            return super().train(state, task)

    monkeypatch.setattr(ray_engine, "RayPool", functools.partial(RayPool, worker_cls=FailsInRoundOne))
    cfg = _config(output_dir, "too-few", "federation.min_clients=3", "federation.client_retries=0",
                  "federation.rounds=1")
    with pytest.raises(TooFewClientsError) as caught:  # the coordinator's error, not a RayTaskError traceback
        run_experiment(cfg, show=lambda _: None)
    assert str(caught.value).startswith("round 1: only 2 of 3 clients reported a usable update, fewer than "
                                        "federation.min_clients=3")
    assert f"failed: {VICTIM}: RuntimeError: injected fault. The checkpoint of round 0 is intact" in str(caught.value)
    [run_dir] = output_dir.glob("too-few-*")
    assert FederationState.load(run_dir / CHECKPOINT).round_idx == 0


@pytest.fixture(scope="module")
def uninterrupted(output_dir, cache_env):
    """The reference: 4 rounds on the in-process engine (identical to Ray's, see test_local_ray)."""
    return run_experiment(_config(output_dir, "reference", "federation.rounds=4", "federation.engine=local"),
                          show=lambda _: None)


@pytest.mark.slow
def test_a_killed_coordinator_is_restarted_from_the_checkpoint(ray_session, output_dir, uninterrupted, monkeypatch):
    import ray

    coordinators = []

    def start_and_remember(*args, **kwargs):
        coordinators.append(ray_engine_start(*args, **kwargs))
        return coordinators[-1]

    ray_engine_start = ray_engine._start_coordinator
    monkeypatch.setattr(ray_engine, "_start_coordinator", start_and_remember)

    def kill_in_round_3():
        first = coordinators[0]
        while ray.get(first.progress.remote()).round_idx < 3:  # the actor answers progress() mid-round
            time.sleep(0.01)
        ray.kill(first, no_restart=True)

    def show(line):
        lines.append(line)
        if line.startswith("round 2/4:") and len(coordinators) == 1:
            threading.Thread(target=kill_in_round_3, daemon=True).start()

    lines = []
    result = run_experiment(_config(output_dir, "coordinator-dies", "federation.rounds=4"), show=show)
    assert len(coordinators) == 2
    assert any(line.startswith("coordinator died") and "checkpoint of round 2" in line for line in lines), lines
    assert [record["round"] for record in result["history"]] == [0, 1, 2, 3, 4]  # no round redone or lost
    assert result["final"] == uninterrupted["final"]
    assert [r["per_client"] for r in result["history"]] == [r["per_client"] for r in uninterrupted["history"]]
