"""One-pass "ghost" LNTK grad kernel (`_ghost.py`): per-unit Grams of per-sample loss gradients against a
dense reference (one backward per sample), on every registry family in both unit modes, plus the cases
the hooks cannot handle (which must fall back, exactly)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from f3ocus.importance import _ghost as ghost_module
from f3ocus.importance._ghost import _ghost_gram, unit_grams
from f3ocus.importance.lntk import LntkScorer
from f3ocus.importance.registry import build_scorer
from f3ocus.models.registry import FAMILIES
from tests.unit.importance.conftest import per_sample_reference_grams, reference_eigenvalues, vlm_batch

CASES = [(family, mode) for family in sorted(FAMILIES) for mode in ("layer", "adapter")]
TOLERANCE = 1e-4  # relative, on λ₁ and on the largest Gram entry (float32 models: measured ≤ 4.2e-7)


@pytest.fixture(scope="module", params=CASES, ids=[f"{family}-{mode}" for family, mode in CASES])
def vlm(request):
    """(model, inputs (4 samples, padded), labels with one -1) for each family × unit mode."""
    return vlm_batch(*request.param)


def _ghost(model, inputs, labels, **kwargs) -> list[torch.Tensor]:
    scorer = LntkScorer("grad", "ghost", **kwargs)
    grams = scorer.grams(model, inputs, labels)
    assert scorer.last_fallback == []  # the tiny presets need no per-sample backward at all
    return grams


def _top(gram: torch.Tensor) -> float:
    return float(torch.linalg.eigvalsh(gram)[-1])


def test_lambda_matches_per_sample_reference(vlm):
    model, inputs, labels = vlm
    reference = per_sample_reference_grams(model, inputs, labels)

    grams = _ghost(model, inputs, labels)
    values = LntkScorer("grad", "ghost").eigenvalues(model, inputs, labels)

    expected = np.array([_top(gram) for gram in reference])  # (L,)
    assert expected.min() > 0
    np.testing.assert_allclose(values, expected, rtol=TOLERANCE, atol=0)
    for gram, dense in zip(grams, reference):
        assert float((gram - dense).abs().max()) <= TOLERANCE * float(dense.abs().max())


def test_gram_is_symmetric_psd_with_zero_ignored_row(vlm):
    model, inputs, labels = vlm
    ignored = int((labels == -1).nonzero()[0, 0])

    for gram in _ghost(model, inputs, labels):
        eigenvalues = torch.linalg.eigvalsh(gram)
        assert torch.equal(gram, gram.T)
        assert float(eigenvalues[0]) >= -1e-6 * float(eigenvalues[-1])
        assert (gram.diagonal() >= 0).all()
        assert not gram[ignored].any() and not gram[:, ignored].any()  # label -1: loss 0, zero gradient


def test_padding_and_ignored_rows_do_not_change_the_rest(vlm):
    model, inputs, labels = vlm
    kept = (labels != -1).nonzero()[:, 0]  # (3,)
    padded = _pad_columns(inputs, model, extra=3)
    assert not inputs["attention_mask"].all()  # the questions differ in length: some rows are padded already

    base = _ghost(model, inputs, labels)
    more_padding = _ghost(model, padded, labels)
    without_ignored = _ghost(model, {key: value[kept] for key, value in inputs.items()}, labels[kept])

    for gram, other, small in zip(base, more_padding, without_ignored):
        scale = float(gram.abs().max())
        assert float((other - gram).abs().max()) <= 1e-5 * scale
        assert float((small - gram[kept][:, kept]).abs().max()) <= 1e-5 * scale


def test_verified_layout_gives_the_same_grams(vlm):
    model, inputs, labels = vlm

    checked = _ghost(model, inputs, labels, verify=True)  # every module's rows checked by a weighted backward

    for gram, plain in zip(checked, _ghost(model, inputs, labels)):
        torch.testing.assert_close(gram, plain, rtol=0, atol=0)


def test_ghost_blocks_equal_materialised_per_sample_gradients(monkeypatch):
    model, inputs, labels = vlm_batch("llava", "layer")
    units = {unit: model.unit_parameter_names()[unit] for unit in model.units}
    for param in model.parameters():
        param.requires_grad_(False)

    monkeypatch.setattr(ghost_module, "_GHOST_DISCOUNT", 0.0)  # materialise every weight that fits
    materialised = unit_grams(model, inputs, labels, units)
    all_ghost = unit_grams(model, inputs, labels, units, max_block_bytes=1)  # nothing fits: ghost, 1 sample a block

    modules = dict(model.named_modules())
    weights = sum(name.endswith(".weight") and isinstance(modules[name.rpartition(".")[0]], nn.Linear)
                  for names in units.values() for name in names)
    assert materialised.ghost == [] and len(all_ghost.ghost) == weights > 0
    for unit in units:
        torch.testing.assert_close(all_ghost.grams[unit], materialised.grams[unit], rtol=1e-5, atol=1e-9)


def test_adapter_at_init_matches_reference():
    model, inputs, labels = vlm_batch("llava", "adapter", lora_b_std=0.0)  # B = 0: every LoRA A gradient is 0

    grams = _ghost(model, inputs, labels)

    for gram, dense in zip(grams, per_sample_reference_grams(model, inputs, labels)):
        assert float(dense.abs().max()) > 0
        assert float((gram - dense).abs().max()) <= TOLERANCE * float(dense.abs().max())


def test_ghost_gram_formula_on_random_factors():
    generator = torch.Generator().manual_seed(0)
    a, g = torch.randn(3, 5, 4, generator=generator), torch.randn(3, 5, 2, generator=generator)  # (n, T, d)
    per_sample = torch.einsum("nto,nti->noi", g, a).reshape(3, -1).double()  # ∇_W ℓ_i = g_iᵀ a_i

    expected = per_sample @ per_sample.T
    torch.testing.assert_close(_ghost_gram(a, g, max_block_bytes=10**9), expected, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- what the hooks cannot take: exact fallbacks
class Scale(nn.Module):
    """x * weight: a parameterised module of unknown type (per-sample gradients by `torch.func`)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.linspace(0.5, 1.5, size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight


class OddModel(nn.Module):
    """x (n, T, 3) -> logits (n, 3); one unit per awkward case:
    "tied": its weight is also read outside the module (F.linear) -> fallback, its bias is not;
    "seqfirst": called on token-major flattened rows (T·n, d) -> the layout check fails -> fallback;
    "flat": Linear + LayerNorm on sample-major flattened rows (n·T, d) -> verified, hooks;
    "scale": a custom module -> per-sample `torch.func` gradients; "root": a bare root tensor -> fallback;
    "inplace": its output is changed in place later -> fallback; "dead": run but never read -> fallback (zero)."""

    units = ("tied", "seqfirst", "flat", "scale", "root", "inplace", "dead")

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.embed = nn.Linear(3, 4)
        self.tied = nn.Linear(4, 4)
        self.seqfirst = nn.Linear(4, 4)
        self.flat = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
        self.scale = Scale(4)
        self.root = nn.Parameter(torch.ones(4))
        self.inplace = nn.Linear(4, 4)
        self.dead = nn.Linear(4, 4)
        self.head = nn.Linear(4, 3)
        with torch.no_grad():
            for name, param in self.named_parameters():
                if name not in ("scale.weight", "root"):
                    param.copy_(0.7 * torch.randn(param.shape, generator=generator))

    def unit_parameter_names(self) -> dict[str, list[str]]:
        names = [name for name, _ in self.named_parameters()]
        return {unit: [name for name in names if name.split(".")[0] == unit] for unit in (*self.units, "head")}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = torch.tanh(self.embed(x))  # (n, T, 4)
        hidden = torch.tanh(self.tied(hidden)) + 0.5 * torch.tanh(F.linear(hidden, self.tied.weight))
        n, tokens, width = hidden.shape
        token_major = self.seqfirst(hidden.transpose(0, 1).reshape(tokens * n, width))  # (T·n, 4)
        hidden = torch.tanh(token_major.reshape(tokens, n, width).transpose(0, 1))  # (n, T, 4)
        hidden = torch.tanh(self.flat(hidden.reshape(n * tokens, width)).reshape(n, tokens, width))
        hidden = self.scale(hidden) * self.root
        changed = self.inplace(hidden)
        changed.mul_(0.5)
        hidden = torch.tanh(changed) + hidden
        self.dead(hidden)
        return self.head(hidden.mean(dim=1))  # (n, 3)


def test_unhandled_tensors_fall_back_exactly():
    model = OddModel().eval()
    inputs = {"x": torch.randn(3, 5, 3, generator=torch.Generator().manual_seed(1))}
    labels = torch.tensor([0, 2, 1])
    scorer = LntkScorer("grad", "ghost")

    grams = scorer.grams(model, inputs, labels)
    reference = per_sample_reference_grams(model, inputs, labels)

    assert sorted(scorer.last_fallback) == ["dead.bias", "dead.weight", "inplace.bias", "inplace.weight", "root",
                                            "seqfirst.bias", "seqfirst.weight", "tied.weight"]
    assert reference[-1].abs().max() == 0 and reference[:-1][-1].abs().max() > 0
    for gram, dense in zip(grams, reference):
        torch.testing.assert_close(gram, dense, rtol=1e-5, atol=1e-7)
    assert all(not module._forward_hooks for module in model.modules())


def test_forced_fallback_equals_hooks_and_tiny_module_matches_jacrev(tiny_model):
    model, inputs, labels = tiny_model
    names = model.unit_parameter_names()
    units = {unit: names[unit] for unit in model.units}

    hooks = unit_grams(model, inputs, labels, units)
    forced = unit_grams(model, inputs, labels, units, force_fallback=[name for unit in units for name in units[unit]])

    assert hooks.fallback == ["scale"]  # a bare root tensor; the Linear and LayerNorm tensors are hooked
    for unit in units:
        torch.testing.assert_close(hooks.grams[unit], forced.grams[unit], rtol=1e-5, atol=1e-9)
    values = LntkScorer("grad", "ghost").eigenvalues(model, inputs, labels)
    np.testing.assert_allclose(values, reference_eigenvalues(model, inputs, labels, "grad"), rtol=TOLERANCE)


def test_default_lntk_is_ghost_and_logit_has_no_ghost():
    default = build_scorer("lntk")

    assert (default.name, default.kernel, default.solver) == ("lntk", "grad", "ghost")
    assert build_scorer("lntk_ghost_grad").solver == "ghost"
    assert (build_scorer("lntk_exact_grad").solver, LntkScorer("logit").solver) == ("exact", "exact")
    with pytest.raises(ValueError, match="ghost"):
        LntkScorer("logit", "ghost")
    with pytest.raises(ValueError, match="ghost"):
        LntkScorer("grad", "exact").grams(None, {}, torch.zeros(1))


def _pad_columns(inputs: dict[str, torch.Tensor], model, extra: int) -> dict[str, torch.Tensor]:
    """`inputs` with `extra` more padding columns on the tokenizer's padding side (input_ids: pad id;
    attention_mask / token_type_ids: 0)."""
    tokenizer = model.processor.tokenizer
    width = inputs["input_ids"].shape[1]
    left = tokenizer.padding_side == "left"
    out = {}
    for key, value in inputs.items():
        if value.dim() == 2 and value.shape[1] == width and key in ("input_ids", "attention_mask", "token_type_ids"):
            fill = tokenizer.pad_token_id if key == "input_ids" else 0
            pad = torch.full((value.shape[0], extra), fill, dtype=value.dtype)
            value = torch.cat([pad, value] if left else [value, pad], dim=1)
        out[key] = value
    return out
