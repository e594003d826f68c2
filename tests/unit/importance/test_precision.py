"""LNTK under `federation.precision: bf16`: the forward/backward run under bfloat16 autocast, the Grams and
their eigenvalues do not (they are formed with autocast off, in float32 / float64)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from f3ocus.importance import _ghost as ghost_module
from f3ocus.importance.lntk import LntkScorer
from f3ocus.utils.device import autocast
from tests.unit.importance.conftest import vlm_batch

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def adapter_llava():
    return vlm_batch("llava", "adapter", n=4)


def test_ghost_gram_products_run_with_autocast_off(monkeypatch, adapter_llava):
    model, inputs, labels = adapter_llava
    seen = {"forward": [], "grams": []}
    original = ghost_module._linear_grams

    def spy(*args, **kwargs):
        seen["grams"].append(torch.is_autocast_enabled("cpu"))
        return original(*args, **kwargs)

    monkeypatch.setattr(ghost_module, "_linear_grams", spy)
    handle = model.head.register_forward_hook(lambda *_: seen["forward"].append(torch.is_autocast_enabled("cpu")))
    try:
        with autocast(CPU, "bf16"):
            grams = LntkScorer().grams(model, inputs, labels)
    finally:
        handle.remove()
    assert seen["forward"] == [True]  # the model itself ran under bf16 autocast
    assert seen["grams"] and not any(seen["grams"])  # every Linear's Gram was formed with autocast off
    assert all(gram.dtype == torch.float64 and gram.device == CPU for gram in grams)
    assert not torch.is_autocast_enabled("cpu")


@pytest.mark.parametrize("name", ["lntk", "lntk_exact_grad", "lntk_exact_logit"])
def test_bf16_eigenvalues_are_close_to_fp32(adapter_llava, name):
    from f3ocus.importance.registry import build_scorer

    model, inputs, labels = adapter_llava
    scorer = build_scorer(name)
    full = scorer.eigenvalues(model, inputs, labels)
    with autocast(CPU, "bf16"):
        half = scorer.eigenvalues(model, inputs, labels)
    assert not np.array_equal(half, full)  # bf16 did run
    np.testing.assert_allclose(half, full, rtol=0.05, atol=1e-3 * full.max())


def test_matrix_free_operator_runs_in_full_precision_under_bf16(adapter_llava):
    """Its operator is J(Jᵀx) from jvp/vjp: in bf16 the two round differently, the operator is not symmetric
    and Lanczos misses λ₁ (seen on a GPU). With autocast off inside, bf16 gives the fp32 values exactly."""
    model, inputs, labels = adapter_llava
    scorer = LntkScorer(kernel="logit", solver="matfree", max_iter=8)
    full = scorer.eigenvalues(model, inputs, labels, units=model.units[:3])
    with autocast(CPU, "bf16"):
        half = scorer.eigenvalues(model, inputs, labels, units=model.units[:3])
    np.testing.assert_array_equal(half, full)
