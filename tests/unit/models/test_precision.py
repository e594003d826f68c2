"""`federation.precision: bf16` on the CPU: training and evaluation under bfloat16 autocast keep float32
weights, stay deterministic under a seed and land close to the float32 numbers."""

from __future__ import annotations

import math

import pytest
import torch

from f3ocus.models.registry import build_vqa_model
from f3ocus.models.training import encode_examples, evaluate, train_epochs

from .conftest import ANSWERS, synthetic_examples


def _trained(precision: str, epochs: int = 2):
    model = build_vqa_model("llava", "scratch", answers=ANSWERS, seed=0)
    images, questions, answers = synthetic_examples(12)
    shard = encode_examples(model, images, questions, answers)
    loss = train_epochs(model, shard, epochs=epochs, batch_size=4, lr=3e-3,
                        generator=torch.Generator().manual_seed(7), precision=precision)
    return model, shard, loss


def test_bf16_training_keeps_float32_weights_is_deterministic_and_close_to_fp32():
    model, shard, loss = _trained("bf16")
    _, _, again = _trained("bf16")
    _, _, reference = _trained("fp32")
    assert math.isfinite(loss) and loss == again  # same seed, same CPU kernels: bit-identical
    assert all(param.dtype == torch.float32 for param in model.parameters())
    assert loss != reference and abs(loss - reference) <= 0.05 * reference  # bf16 rounding, not another run


def test_bf16_evaluation_matches_fp32_within_bf16_rounding():
    model, shard, _ = _trained("fp32")
    full = evaluate(model, shard, precision="fp32")
    half = evaluate(model, shard, precision="bf16")
    assert half.n == full.n and half.predictions.dtype == torch.long
    assert abs(half.loss - full.loss) <= 0.02 * full.loss
    assert (half.predictions == full.predictions).float().mean() >= 0.75


def test_unknown_precision_is_refused_before_training():
    model = build_vqa_model("llava", "scratch", answers=ANSWERS, seed=0)
    images, questions, answers = synthetic_examples(4)
    shard = encode_examples(model, images, questions, answers)
    with pytest.raises(ValueError, match="precision must be one of"):
        train_epochs(model, shard, epochs=1, batch_size=4, lr=1e-3, generator=torch.Generator(), precision="fp16")
