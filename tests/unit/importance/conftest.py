"""Fixtures for the LNTK tests: a tiny nn.Module with the VqaModel unit API, a tiny scratch LLaVA, and
the dense reference λ₁ (explicit Jacobian via `torch.func.jacrev` -> kernel -> `eigvalsh`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.func import functional_call, jacrev

ANSWERS = ("red", "yes", "no")


class TinyUnitModel(nn.Module):
    """Three units + head on x (B, 6) -> logits (B, 5); unit "scale" has fewer tensors (8) than outputs."""

    units = ("block.0", "block.1", "scale")

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.block0 = nn.Linear(6, 8)
        self.block1 = nn.Sequential(nn.LayerNorm(8), nn.Linear(8, 8))
        self.scale = nn.Parameter(1.0 + 0.1 * torch.randn(8, generator=generator))
        self.head = nn.Linear(8, 5)
        with torch.no_grad():
            for param in (*self.block0.parameters(), *self.block1.parameters(), *self.head.parameters()):
                param.copy_(0.5 * torch.randn(param.shape, generator=generator))

    def unit_parameter_names(self) -> dict[str, list[str]]:
        names = [name for name, _ in self.named_parameters()]
        return {"block.0": [n for n in names if n.startswith("block0.")],
                "block.1": [n for n in names if n.startswith("block1.")],
                "scale": ["scale"], "head": [n for n in names if n.startswith("head.")]}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = torch.tanh(self.block0(x))  # (B, 8)
        hidden = torch.tanh(self.block1(hidden)) * self.scale  # (B, 8)
        return self.head(hidden)  # (B, 5)


def reference_eigenvalues(model: nn.Module, inputs: dict[str, torch.Tensor], labels: torch.Tensor,
                          kernel: str, units: tuple[str, ...] | None = None) -> np.ndarray:
    """Dense λ₁ per unit (default all): full-batch J (m, p) by jacrev, J Jᵀ in float64, eigvalsh. (len(units),)"""
    names = model.unit_parameter_names()
    own = {name: param.detach() for name, param in model.named_parameters()}
    values = []
    for unit in model.units if units is None else units:
        primals = {name: own[name] for name in names[unit]}

        def outputs(tensors: dict[str, torch.Tensor]) -> torch.Tensor:
            logits = functional_call(model, {**own, **tensors}, args=(), kwargs=inputs)  # (n, k)
            if kernel == "logit":
                return logits.reshape(-1)
            return F.cross_entropy(logits, labels, ignore_index=-1, reduction="none")

        jacobian = jacrev(outputs)(primals)
        dense = torch.cat([jacobian[name].reshape(jacobian[name].shape[0], -1) for name in names[unit]], 1)
        dense = dense.to(torch.float64)  # (m, p)
        values.append(float(torch.linalg.eigvalsh(dense @ dense.T)[-1]))
    return np.array(values)


@pytest.fixture()
def tiny_model() -> tuple[nn.Module, dict[str, torch.Tensor], torch.Tensor]:
    """(model in eval mode, inputs {"x": (4, 6)}, labels (4,) with one -1)."""
    generator = torch.Generator().manual_seed(1)
    inputs = {"x": torch.randn(4, 6, generator=generator)}
    return TinyUnitModel().eval(), inputs, torch.tensor([0, 3, -1, 4])


def _scratch_vlm(unit_mode: str, lora_b_std: float = 0.0) -> tuple[nn.Module, dict[str, torch.Tensor], torch.Tensor]:
    from f3ocus.models.registry import build_vqa_model
    from f3ocus.models.training import encode_examples

    model = build_vqa_model("llava", "scratch", answers=list(ANSWERS), unit_mode=unit_mode)
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(2)]
    shard = encode_examples(model, images, ["what color is it", "is it red"], ["red", "no"])
    if lora_b_std > 0:  # as after some training: B != 0, so J w.r.t. A is not zero either
        generator = torch.Generator().manual_seed(2)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if ".lora_B." in name:
                    param.copy_(lora_b_std * torch.randn(param.shape, generator=generator))
    return model, shard.batch(torch.arange(2)), shard.labels


@pytest.fixture(scope="module")
def scratch_llava() -> tuple[nn.Module, dict[str, torch.Tensor], torch.Tensor]:
    """Tiny scratch LLaVA (layer mode), 2 encoded samples, 3 answers."""
    return _scratch_vlm("layer")


@pytest.fixture(scope="module")
def scratch_llava_adapter_init() -> tuple[nn.Module, dict[str, torch.Tensor], torch.Tensor]:
    """Tiny scratch LLaVA in adapter mode as built (LoRA B = 0), 2 samples, 3 answers."""
    return _scratch_vlm("adapter")


@pytest.fixture(scope="module")
def scratch_llava_adapter() -> tuple[nn.Module, dict[str, torch.Tensor], torch.Tensor]:
    """Tiny scratch LLaVA in adapter mode with LoRA B made non-zero, 2 samples, 3 answers."""
    return _scratch_vlm("adapter", lora_b_std=0.05)


# ---------------------------------------------------------------- ghost-kernel fixtures and reference
QUESTIONS = ("what color is it", "is it red", "is there a big blue shape in this image", "what shape")
GHOST_ANSWERS = ("red", "no", "blue", "square")  # the last is outside ANSWERS + "blue": label -1


def vlm_batch(family: str, unit_mode: str, n: int = 4,
              lora_b_std: float = 0.05) -> tuple[nn.Module, dict[str, torch.Tensor], torch.Tensor]:
    """Tiny scratch `family` model in `unit_mode` (LoRA B made non-zero in adapter mode, as after some
    training, so that A has gradients too) and n encoded samples of different question lengths (so rows
    are padded), answers over ("red", "yes", "no", "blue"), sample 3 labelled -1."""
    from f3ocus.models.registry import build_vqa_model
    from f3ocus.models.training import encode_examples

    model = build_vqa_model(family, "scratch", answers=[*ANSWERS, "blue"], unit_mode=unit_mode)
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(n)]
    questions = [QUESTIONS[index % len(QUESTIONS)] for index in range(n)]
    answers = [GHOST_ANSWERS[index % len(GHOST_ANSWERS)] for index in range(n)]
    shard = encode_examples(model, images, questions, answers)
    if unit_mode == "adapter" and lora_b_std > 0:
        generator = torch.Generator().manual_seed(2)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if ".lora_B." in name:
                    param.copy_(lora_b_std * torch.randn(param.shape, generator=generator))
    return model, shard.batch(torch.arange(n)), shard.labels


def per_sample_reference_grams(model: nn.Module, inputs: dict[str, torch.Tensor], labels: torch.Tensor,
                               units: tuple[str, ...] | None = None) -> list[torch.Tensor]:
    """Dense per-unit Gram of per-sample loss gradients: one full-batch forward, then one backward PER
    SAMPLE (∂ℓ_i/∂θ, nothing assumed about how samples flow through the model) -> rows in float64 -> J Jᵀ.

    Returns:
        [(n, n) float64] in `units` order (default `model.units`). The model is left as found.
    """
    names = model.unit_parameter_names()
    units = model.units if units is None else units
    params = dict(model.named_parameters())
    wanted = [name for unit in units for name in names[unit]]
    flags = {name: param.requires_grad for name, param in params.items()}
    try:
        for name, param in params.items():
            param.requires_grad_(name in wanted)
        losses = F.cross_entropy(model(**inputs), labels, ignore_index=-1, reduction="none")  # (n,)
        rows = []
        for index in range(losses.shape[0]):
            grads = torch.autograd.grad(losses[index], [params[name] for name in wanted],
                                        retain_graph=True, allow_unused=True)
            rows.append({name: (torch.zeros_like(params[name]) if value is None else value).reshape(-1).double()
                         for name, value in zip(wanted, grads)})
    finally:
        for name, param in params.items():
            param.requires_grad_(flags[name])
    grams = []
    for unit in units:
        jacobian = torch.stack([torch.cat([row[name] for name in names[unit]]) for row in rows])  # (n, p)
        grams.append(jacobian @ jacobian.T)
    return grams
