"""On a CUDA device (`pytest -m cuda`; skipped without one): every family in every unit mode builds, trains,
evaluates and hands its state over on the GPU, with the numbers of the same run on the CPU.

Each test runs the same seeded work on a CPU copy and on the device, with TF32 off (float32 on both, so
the two differ only by summation order) and compares. Losses must agree closely; weights only within AdamW's
reach: a weight whose gradient is rounding noise (its sign can differ between the two) still moves by ±lr
per step, which changes the loss only at second order. `F3OCUS_CUDA_TESTS_ON_CPU=1` runs them on the CPU
(a rehearsal of the test code; see `cuda_device` in tests/conftest.py).
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from f3ocus.federated.aggregate import masked_fedavg
from f3ocus.models.peft_modes import UNIT_MODES
from f3ocus.models.registry import FAMILIES, build_vqa_model
from f3ocus.models.training import encode_examples, evaluate, train_epochs

from .conftest import ANSWERS, synthetic_examples

pytestmark = [pytest.mark.cuda, pytest.mark.usefixtures("no_tf32")]


def _pair(family: str, unit_mode: str, device: torch.device, n: int = 8):
    """(CPU model, the same model on `device`, shard) for a tiny scratch model of `family` in `unit_mode`."""
    model = build_vqa_model(family, "scratch", answers=ANSWERS, unit_mode=unit_mode, seed=0)
    images, questions, answers = synthetic_examples(n)
    shard = encode_examples(model, images, questions, answers)
    return model, copy.deepcopy(model).to(device), shard


LR, BATCH = 3e-3, 4


def _train(model, shard, precision: str = "fp32") -> float:
    return train_epochs(model, shard, epochs=1, batch_size=BATCH, lr=LR, generator=torch.Generator().manual_seed(3),
                        precision=precision)


@pytest.mark.parametrize("unit_mode", UNIT_MODES)
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_and_mode_trains_and_evaluates_on_the_device_as_on_the_cpu(cuda_device, family, unit_mode):
    cpu_model, model, shard = _pair(family, unit_mode, cuda_device)
    assert all(param.device.type == cuda_device.type for param in model.parameters())
    loss_cpu, loss_device = _train(cpu_model, shard), _train(model, shard)
    assert math.isfinite(loss_device) and loss_device == pytest.approx(loss_cpu, rel=1e-3, abs=1e-5)
    on_cpu, on_device = evaluate(cpu_model, shard), evaluate(model, shard)
    assert on_device.loss == pytest.approx(on_cpu.loss, rel=1e-3, abs=1e-5)
    assert on_device.predictions.device.type == "cpu"
    state = model.trainable_state()
    assert all(tensor.device.type == "cpu" for tensor in state.values())
    steps = math.ceil(len(shard) / BATCH)
    for name, tensor in cpu_model.trainable_state().items():  # AdamW moves any weight by at most ~lr a step
        torch.testing.assert_close(state[name], tensor, rtol=0, atol=2 * LR * steps)


@pytest.mark.parametrize("unit_mode", ["layer", "adapter"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_bf16_autocast_on_the_device_keeps_float32_weights_and_lands_near_fp32(cuda_device, family, unit_mode):
    _, model, shard = _pair(family, unit_mode, cuda_device)
    full = copy.deepcopy(model)
    loss_bf16, loss_fp32 = _train(model, shard, "bf16"), _train(full, shard, "fp32")
    assert all(param.dtype == torch.float32 for param in model.parameters())
    assert math.isfinite(loss_bf16) and loss_bf16 == pytest.approx(loss_fp32, rel=0.05)
    assert evaluate(model, shard, precision="bf16").loss == pytest.approx(evaluate(model, shard).loss, rel=0.05)


def test_state_moves_between_cpu_broadcasts_and_device_models(cuda_device):
    cpu_model, model, shard = _pair("llava", "adapter", cuda_device)
    _train(cpu_model, shard)
    model.load_trainable_state(cpu_model.trainable_state())  # a CPU broadcast loaded into a GPU model
    for name, param in model.named_parameters():
        if name in cpu_model.trainable_state():
            assert param.device.type == cuda_device.type
    assert evaluate(model, shard).loss == pytest.approx(evaluate(cpu_model, shard).loss, rel=1e-4, abs=1e-6)


def test_fedavg_of_device_updates_lands_on_the_global_device(cuda_device):
    global_tensors = {"w": torch.zeros(3), "b": torch.ones(2)}
    updates = [(1, {"w": torch.tensor([1.0, 2.0, 3.0], device=cuda_device)}),
               (3, {"w": torch.tensor([5.0, 6.0, 7.0], device=cuda_device), "b": torch.zeros(2, device=cuda_device)})]
    result = masked_fedavg(global_tensors, updates)
    assert result["w"].device.type == "cpu" and result["b"].device.type == "cpu"
    torch.testing.assert_close(result["w"], torch.tensor([4.0, 5.0, 6.0]))  # (1·[1,2,3] + 3·[5,6,7]) / 4
    torch.testing.assert_close(result["b"], torch.zeros(2))
