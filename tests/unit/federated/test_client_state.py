"""Per-client state: the on-disk store, its place in the checkpoint, and the coordinator's use of it (fake pool).

The fake pool's clients keep one tensor "p" of their own: client k's update sets every trained unit to
global + (k + 1) (as `FakePool`) and its state to old state + 10 (k + 1) + round, so averaged and never-averaged
values can be told apart by hand.
"""

import math

import pytest
import torch

from f3ocus.config.schema import ExperimentConfig, FederationConfig, SelectionConfig, TrackingConfig
from f3ocus.federated.checkpoint import CheckpointError
from f3ocus.federated.client_state import CLIENT_STATE_DIR, ClientStateStore, client_folder
from f3ocus.federated.coordinator import Coordinator
from f3ocus.federated.messages import ClientUpdate, EvalReport, ModelInfo, WorkerError
from f3ocus.federated.state import CHECKPOINT, Federation, FederationState
from f3ocus.tracking.base import NullLogger
from tests.unit.federated.test_coordinator import FakePool


# ------------------------------------------------------------------------------------------ the store
def test_store_round_trip_index_and_checksum(tmp_path):
    store = ClientStateStore(tmp_path / "s")
    assert store.load("a") is None and store.index() == {}
    store.save("a", 1, {"p": torch.tensor([1.0, 2.0])})
    store.save("b/odd name", 1, {"p": torch.tensor([3.0])})
    assert torch.equal(store.load("a")["p"], torch.tensor([1.0, 2.0]))
    index = store.index()
    assert sorted(index) == ["a", "b/odd name"] and index["a"][0] == 1 and len(index["a"][1]) == 64
    # A second store opened on the same index (a resumed run) reads the same state
    assert torch.equal(ClientStateStore(tmp_path / "s", index).load("b/odd name")["p"], torch.tensor([3.0]))
    # A file that changed after it was written is refused, naming it
    path = tmp_path / "s" / client_folder("a") / "000001.safetensors"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="does not match the checksum"):
        store.verify()
    path.unlink()
    with pytest.raises(CheckpointError, match="unreadable"):
        store.load("a")
    assert client_folder("b/odd name") != client_folder("b_odd name")  # made file-safe, never colliding


def test_store_keeps_what_the_current_and_previous_checkpoints_name(tmp_path):
    store = ClientStateStore(tmp_path)
    folder = tmp_path / client_folder("a")

    def rounds():
        return sorted(int(path.stem) for path in folder.glob("*.safetensors"))

    for round_idx in (1, 2, 3, 4):
        store.save("a", round_idx, {"p": torch.full((1,), float(round_idx))})
        store.commit()  # the checkpoint of this round was written
    # Round 4's save kept 2 and 3 (then the previous and current checkpoints' states): pruning runs on a save
    assert rounds() == [2, 3, 4]
    store.save("a", 5, {"p": torch.zeros(1)})  # round 5 running: 3 (the fallback) and 4 stay, 2 goes
    assert rounds() == [3, 4, 5]


# ------------------------------------------------------------------------------------------ checkpoint
def test_client_state_index_round_trips_through_the_checkpoint(tmp_path):
    store = ClientStateStore(tmp_path / CLIENT_STATE_DIR)
    store.save("c0", 2, {"p": torch.tensor([7.0])})
    state = FederationState(2, {"w": torch.ones(2)}, [{"round": 0}], client_states=store.index())
    state.save(tmp_path / CHECKPOINT)
    loaded = FederationState.load(tmp_path / CHECKPOINT)
    assert loaded.client_states == store.index()
    assert torch.equal(ClientStateStore(tmp_path / CLIENT_STATE_DIR, loaded.client_states).load("c0")["p"],
                       torch.tensor([7.0]))
    # A checkpoint of a run without client state holds an empty index
    FederationState(1, {"w": torch.ones(2)}).save(tmp_path / "plain.safetensors")
    assert FederationState.load(tmp_path / "plain.safetensors").client_states == {}


# ------------------------------------------------------------------------------------------ coordinator
class StatefulPool(FakePool):
    """FakePool whose clients keep a state "p": new = old (zeros if none) + 10 (k + 1) + round."""

    def __init__(self, poisoned_rounds=None, **kwargs):
        super().__init__(**kwargs)
        self.poisoned_rounds = poisoned_rounds or {}  # client -> rounds in which its update holds NaN
        self.seen_states: dict[tuple[str, int], torch.Tensor | None] = {}
        self.eval_states: dict[str, torch.Tensor | None] = {}

    def model_info(self):
        info = super().model_info()
        return ModelInfo(info.units, info.unit_parameter_names, info.unit_num_parameters, info.initial_tensors,
                         client_state_names=("p",))

    def train(self, state, task):
        update = super().train(state, task)
        if isinstance(update, WorkerError):
            return update
        k = int(task.client[-1])
        old = task.client_state["p"] if task.client_state is not None else torch.zeros(2)
        self.seen_states[(task.client, task.round_idx)] = None if task.client_state is None else old.clone()
        new = old + 10 * (k + 1) + task.round_idx
        if task.round_idx in self.poisoned_rounds.get(task.client, ()):
            new = torch.full((2,), math.nan)
        return ClientUpdate(update.client, update.num_examples, update.tensors, update.train_loss, 0.0,
                            client_state={"p": new})

    def evaluate(self, state, task):
        self.eval_states[task.client] = None if task.client_state is None else task.client_state["p"].clone()
        own = float(task.client_state["p"][0]) / 100 if task.client_state is not None else 0.0
        return EvalReport(task.client, 0.1, 0.5, 20, 0.0, personal=EvalReport(task.client, own, 0.4, 20, 0.0))


def _coordinator(tmp_path, pool, resume=None):
    budgets = (1, 1, 2)
    cfg = ExperimentConfig(federation=FederationConfig(rounds=3, budgets=budgets),
                           selection=SelectionConfig(method="full"), tracking=TrackingConfig(mlflow=False))
    federation = Federation(("c0", "c1", "c2"), {"c0": 10, "c1": 20, "c2": 30}, budgets,
                            {"c0": 0.5, "c1": 0.25, "c2": 0.0})
    return Coordinator(cfg, federation, str(tmp_path), lambda: pool, lambda run_id: NullLogger(), resume=resume)


def test_shared_tensors_are_averaged_and_personal_state_never_is(tmp_path):
    pool = StatefulPool()
    coordinator = _coordinator(tmp_path, pool)
    coordinator.evaluate_initial()
    record = coordinator.run_round(1)
    # Shared (every unit + head, `full`): (10*1 + 20*2 + 30*3) / 60 = 140/60, the |D_i|-weighted mean
    for name in ("u0.w", "u1.w", "u2.w", "head.w"):
        assert torch.allclose(coordinator.state.tensors[name], torch.full((2,), 140 / 60))
    assert "p" not in coordinator.state.tensors  # the state is no part of the global model
    # Personal: each client's own value, 10 (k + 1) + 1, untouched by the others
    store = coordinator.client_states
    assert {c: store.load(c)["p"].tolist() for c in ("c0", "c1", "c2")} == {
        "c0": [11.0, 11.0], "c1": [21.0, 21.0], "c2": [31.0, 31.0]}
    # Round 2 starts from each client's own state; evaluation scored each client's own model
    assert pool.eval_states["c1"].tolist() == [21.0, 21.0]
    assert record.per_client["c1"]["personal"]["accuracy"] == pytest.approx(0.21)
    assert record.personal["accuracy"] == pytest.approx((0.11 + 0.21 + 0.31) / 3)
    coordinator.run_round(2)
    assert pool.seen_states[("c2", 2)].tolist() == [31.0, 31.0]
    assert store.load("c2")["p"].tolist() == [31.0 + 30 + 2] * 2
    # Bytes of state: round 1 = 3 up + 3 down for evaluation (nobody had a state to send down yet),
    # round 2 = 3 down + 3 up + 3 down; 8 bytes each (2 float32). Never in bytes_up.
    history = coordinator.state.history
    assert [r["state_bytes"] for r in history] == [0, 6 * 8, 9 * 8]
    assert history[1]["state_bytes_up_per_client"] == {"c0": 8, "c1": 8, "c2": 8}
    assert history[1]["bytes_up"] == 3 * 4 * 8  # 3 units + head, 2 float32 each, per client


def test_a_rejected_client_keeps_its_previous_state(tmp_path):
    pool = StatefulPool(poisoned_rounds={"c1": {2}})
    coordinator = _coordinator(tmp_path, pool)
    coordinator.run_round(1)
    record = coordinator.run_round(2)
    assert record.failed_clients == ["c1"] and "NaN/Inf" in record.failure_reasons["c1"]
    assert coordinator.client_states.load("c1")["p"].tolist() == [21.0, 21.0]  # round 1's, not the NaN
    coordinator.run_round(3)
    assert pool.seen_states[("c1", 3)].tolist() == [21.0, 21.0]
    # A client that failed outright (WorkerError) keeps its state too
    failing = StatefulPool(fail_train={"c0"})
    other = _coordinator(tmp_path / "failing", failing)
    other.run_round(1)
    assert other.client_states.load("c0") is None and other.client_states.load("c2")["p"].tolist() == [31.0, 31.0]


def test_a_resumed_coordinator_continues_with_the_checkpointed_states(tmp_path):
    first = _coordinator(tmp_path, StatefulPool())
    first.evaluate_initial()
    first.run_round(1)
    first.run_round(2)
    uninterrupted = [first.client_states.load(c)["p"].tolist() for c in ("c0", "c1", "c2")]
    # A run killed after round 1: its checkpoint names round 1's states (round 2's files exist but are not named)
    killed = tmp_path / "killed"
    second = _coordinator(killed, StatefulPool())
    second.evaluate_initial()
    second.run_round(1)
    second.client_states.save("c0", 2, {"p": torch.full((2,), -1.0)})  # a half-done round 2, then the kill
    resumed_pool = StatefulPool()
    resumed = _coordinator(killed, resumed_pool, resume=FederationState.load(killed / CHECKPOINT))
    assert resumed.next_round() == 2
    resumed.run_round(2)
    assert resumed_pool.seen_states[("c0", 2)].tolist() == [11.0, 11.0]
    assert [resumed.client_states.load(c)["p"].tolist() for c in ("c0", "c1", "c2")] == uninterrupted
    saved = FederationState.load(killed / CHECKPOINT)
    assert saved.client_states == resumed.client_states.index()
    assert saved.client_states["c1"][1] == first.client_states.index()["c1"][1]  # same bytes, same sha256


def test_a_state_other_than_the_declared_one_is_a_protocol_error(tmp_path):
    class Wrong(StatefulPool):
        def train(self, state, task):
            update = super().train(state, task)
            return ClientUpdate(update.client, update.num_examples, update.tensors, update.train_loss, 0.0,
                                client_state={"q": torch.zeros(1)})

    with pytest.raises(RuntimeError, match="returned client-state tensors"):
        _coordinator(tmp_path, Wrong()).run_round(1)
