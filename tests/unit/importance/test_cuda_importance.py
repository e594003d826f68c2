"""On a CUDA device (`pytest -m cuda`; skipped without one): the LNTK solvers against their dense references
computed on the device, every scorer on the device against the same scorer on the CPU, and bf16 autocast
with the Grams formed in full precision.

TF32 is off in these tests (float32 on both sides), so the CPU and the device differ only by summation
order. `F3OCUS_CUDA_TESTS_ON_CPU=1` runs them on the CPU (see `cuda_device` in tests/conftest.py).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from f3ocus.importance import _ghost as ghost_module
from f3ocus.importance.lntk import LntkScorer
from f3ocus.importance.registry import SCORERS, build_scorer
from f3ocus.models.registry import FAMILIES
from f3ocus.utils.device import autocast, to_device
from tests.unit.importance.conftest import per_sample_reference_grams, reference_eigenvalues, vlm_batch

pytestmark = [pytest.mark.cuda, pytest.mark.usefixtures("no_tf32")]


def _on(device: torch.device, family: str = "llava", unit_mode: str = "adapter", n: int = 4):
    """(CPU model, inputs, labels) and the same on `device`."""
    model, inputs, labels = vlm_batch(family, unit_mode, n=n)
    return (model, inputs, labels), (copy.deepcopy(model).to(device), to_device(inputs, device), labels.to(device))


def _relative(values: np.ndarray, reference: np.ndarray) -> float:
    return float(np.max(np.abs(values - reference) / np.maximum(np.abs(reference), 1e-12 * np.abs(reference).max())))


@pytest.mark.parametrize("unit_mode", ["layer", "adapter"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_ghost_grams_match_the_per_sample_reference_on_the_device(cuda_device, family, unit_mode):
    (_, _, _), (model, inputs, labels) = _on(cuda_device, family, unit_mode)
    grams = LntkScorer().grams(model, inputs, labels)
    reference = per_sample_reference_grams(model, inputs, labels)  # one backward per sample, on the device
    assert all(gram.dtype == torch.float64 and gram.device.type == "cpu" for gram in grams)
    top = np.array([float(torch.linalg.eigvalsh(gram)[-1]) for gram in grams])
    top_reference = np.array([float(torch.linalg.eigvalsh(gram.cpu())[-1]) for gram in reference])
    assert _relative(top, top_reference) <= 1e-4


@pytest.mark.parametrize(("kernel", "solver", "tolerance"), [("grad", "exact", 1e-4), ("logit", "exact", 1e-4),
                                                             ("grad", "matfree", 1e-2), ("logit", "matfree", 1e-2)])
def test_exact_and_matrix_free_solvers_match_jacrev_on_the_device(cuda_device, kernel, solver, tolerance):
    (_, _, _), (model, inputs, labels) = _on(cuda_device, "llava", "layer", n=2)
    values = LntkScorer(kernel=kernel, solver=solver).eigenvalues(model, inputs, labels)
    reference = reference_eigenvalues(model, inputs, labels, kernel)  # jacrev -> dense J Jᵀ -> eigvalsh
    assert _relative(values, reference) <= tolerance


@pytest.mark.parametrize("name", sorted(SCORERS))
def test_every_scorer_gives_its_cpu_scores_on_the_device(cuda_device, name):
    (cpu_model, cpu_inputs, cpu_labels), (model, inputs, labels) = _on(cuda_device)
    on_cpu = build_scorer(name).score(cpu_model, cpu_inputs, cpu_labels)
    on_device = build_scorer(name).score(model, inputs, labels)
    assert on_device.shape == on_cpu.shape and on_device.sum() == pytest.approx(1.0)
    # SPT counts parameters in a global top 1 %: one at the threshold may swap between the two (~1/500 of a count).
    np.testing.assert_allclose(on_device, on_cpu, rtol=1e-3, atol=5e-3 if name == "spt" else 1e-6)


@pytest.mark.parametrize("name", sorted(SCORERS))
def test_every_scorer_runs_under_bf16_autocast_on_the_device(cuda_device, name):
    (_, _, _), (model, inputs, labels) = _on(cuda_device)
    full = build_scorer(name).score(model, inputs, labels)
    with autocast(cuda_device, "bf16"):
        half = build_scorer(name).score(model, inputs, labels)
    assert np.isfinite(half).all() and half.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(half, full, atol=0.05)  # scores sum to 1 over 9 units: bf16 moves them by < 0.05


def test_lntk_grams_are_formed_with_autocast_off_on_the_device(cuda_device, monkeypatch):
    (_, _, _), (model, inputs, labels) = _on(cuda_device)
    seen = []
    original = ghost_module._linear_grams

    def spy(*args, **kwargs):
        seen.append(torch.is_autocast_enabled(cuda_device.type))
        return original(*args, **kwargs)

    monkeypatch.setattr(ghost_module, "_linear_grams", spy)
    full = LntkScorer().eigenvalues(model, inputs, labels)
    seen.clear()
    with autocast(cuda_device, "bf16"):
        half = LntkScorer().eigenvalues(model, inputs, labels)
    assert seen and not any(seen)
    np.testing.assert_allclose(half, full, rtol=0.05, atol=1e-3 * full.max())
