"""`federation.upload_dtype`: what a client sends (dtype, bytes) and what the coordinator averages."""

import dataclasses

import pytest
import torch

from f3ocus.config import load_config
from f3ocus.config.schema import (ConfigError, DataConfig, ExperimentConfig, FederationConfig, ModelConfig,
                                  PartitionConfig, SelectionConfig, TrackingConfig)
from f3ocus.federated.coordinator import Coordinator
from f3ocus.federated.state import Federation
from f3ocus.federated.messages import ClientUpdate, GlobalState, TrainTask, cast_floating
from f3ocus.tracking.base import NullLogger
from tests.unit.federated.test_coordinator import FakePool

BYTES_PER_VALUE = {"float32": 4, "float16": 2, "bfloat16": 2}
CLIENTS = ("c0", "c1", "c2")
SELECTED = (0, 2, 5)  # vision.0, vision.2, language.0 of tiny llava


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    from f3ocus.data.prepare import prepare_federated_data

    data = DataConfig(task="ultra_medvqa", modalities=("pathmnist", "bloodmnist"), samples_per_client=20,
                      partition=PartitionConfig(scheme="natural", by="source"))
    return str(prepare_federated_data(data, tmp_path_factory.mktemp("store"), seed=0).root)


@pytest.fixture(scope="module")
def updates(store_dir):
    """One training task (same state, seed, mask) run by a real ClientWorker in each upload dtype."""
    from f3ocus.federated.worker import ClientWorker, WorkerSpec

    replies = {}
    for dtype in BYTES_PER_VALUE:
        cfg = ExperimentConfig(model=ModelConfig(checkpoint="scratch"),
                               federation=FederationConfig(batch_size=8, upload_dtype=dtype),
                               tracking=TrackingConfig(mlflow=False))
        worker = ClientWorker(WorkerSpec(cfg, store_dir, None, num_threads=1))
        info = worker.model_info()
        mask = tuple(index in SELECTED for index in range(len(info.units)))
        replies[dtype] = worker.train(GlobalState(0, info.initial_tensors), TrainTask("pathmnist", 1, 7, mask))
    return info, replies


@pytest.mark.parametrize("dtype", list(BYTES_PER_VALUE))
def test_bytes_per_update_are_selected_units_plus_head_times_bytes_per_value(updates, dtype):
    info, replies = updates
    update = replies[dtype]
    values = sum(info.unit_num_parameters[info.units[index]] for index in SELECTED) + info.unit_num_parameters["head"]
    assert update.num_bytes == values * BYTES_PER_VALUE[dtype]
    assert {t.dtype for t in update.tensors.values()} == {getattr(torch, dtype)}


def test_half_precision_upload_is_exactly_half_and_the_rounded_float32_update(updates):
    _, replies = updates
    full, half, brain = replies["float32"], replies["float16"], replies["bfloat16"]
    assert 2 * half.num_bytes == full.num_bytes and 2 * brain.num_bytes == full.num_bytes
    # Same state, seed and mask: the same training; only the cast on the way out differs.
    assert half.train_loss == full.train_loss
    for name, tensor in full.tensors.items():
        assert torch.equal(half.tensors[name], tensor.to(torch.float16))
        assert torch.equal(brain.tensors[name], tensor.to(torch.bfloat16))


class HalfPool(FakePool):
    """FakePool whose clients upload `value + 0.1 * (k + 1)` (not representable in fp16) cast to float16."""

    def train(self, state, task):
        update = super().train(state, task)
        tensors = {name: tensor + 0.1 * (int(task.client[-1]) + 1) for name, tensor in update.tensors.items()}
        self.sent = getattr(self, "sent", {})
        self.sent[task.client] = cast_floating(tensors, torch.float16)
        return ClientUpdate(update.client, update.num_examples, self.sent[task.client], update.train_loss, 0.0)


def test_coordinator_averages_the_float32_cast_of_the_half_precision_upload(tmp_path):
    # first_k with budgets (1, 1, 2): u0 by c0, c1, c2; u1 by c2 only; u2 by nobody; head by everyone.
    budgets = (1, 1, 2)
    cfg = ExperimentConfig(federation=FederationConfig(rounds=1, budgets=budgets, upload_dtype="float16"),
                           selection=SelectionConfig(method="first_k"), tracking=TrackingConfig(mlflow=False))
    federation = Federation(CLIENTS, {"c0": 10, "c1": 20, "c2": 30}, budgets, {c: 0.0 for c in CLIENTS})
    pool = HalfPool()
    coordinator = Coordinator(cfg, federation, str(tmp_path), lambda: pool, lambda run_id: NullLogger())
    record = coordinator.run_round(1)
    tensors = coordinator.state.tensors
    assert {t.dtype for t in tensors.values()} == {torch.float32}
    # A unit trained by one client: exactly the float32 value of its fp16-rounded upload (3 + 0.3 -> fp16).
    sent = pool.sent["c2"]["u1.w"]
    assert sent.dtype == torch.float16 and sent[0].item() != pytest.approx(3.3, abs=1e-6)
    assert torch.equal(tensors["u1.w"], sent.to(torch.float32))
    # Several clients: the |D_i|-weighted mean of the float32 casts (accumulated in float64).
    expected = sum(n * pool.sent[c]["u0.w"].to(torch.float64) for c, n in federation.num_examples.items()) / 60
    assert torch.equal(tensors["u0.w"], expected.to(torch.float32))
    assert torch.equal(tensors["u2.w"], torch.zeros(2))
    # Bytes are those of the fp16 tensors sent: (units + head) x 2 values x 2 bytes.
    assert record.bytes_up_per_client == {"c0": 8, "c1": 8, "c2": 12}


def test_upload_dtype_is_validated_by_name(tmp_path):
    assert load_config("configs/smoke/cpu_tiny.yaml", ["federation.upload_dtype=bfloat16"]).federation.upload_dtype \
        == "bfloat16"
    with pytest.raises(ConfigError) as error:
        load_config("configs/smoke/cpu_tiny.yaml", ["federation.upload_dtype=int8"])
    assert error.value.field == "federation.upload_dtype"
    with pytest.raises(ConfigError, match="upload_dtype"):
        dataclasses.replace(FederationConfig(), upload_dtype="float64")


def test_round_record_has_phase_and_worker_seconds(tmp_path):
    cfg = ExperimentConfig(federation=FederationConfig(rounds=1, budgets=(1, 1, 2)),
                           selection=SelectionConfig(method="top_k"), tracking=TrackingConfig(mlflow=False))
    federation = Federation(CLIENTS, {"c0": 10, "c1": 20, "c2": 30}, (1, 1, 2), {c: 0.0 for c in CLIENTS})
    coordinator = Coordinator(cfg, federation, str(tmp_path), FakePool, lambda run_id: NullLogger())
    initial = coordinator.evaluate_initial()
    assert set(initial.phase_seconds) == {"evaluate", "log"}
    record = coordinator.run_round(1)
    phases = record.phase_seconds
    assert list(phases) == ["score", "select", "train", "aggregate", "evaluate", "log"]
    assert all(seconds >= 0 for seconds in phases.values())
    assert sum(phases[p] for p in phases if p != "log") <= record.seconds
    assert set(record.worker_seconds) == {"score", "train", "evaluate"}  # FakePool replies report 0 s
