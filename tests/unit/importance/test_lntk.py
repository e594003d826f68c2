"""LNTK scorer (docs/METHOD.md §2): λ₁ per unit against a dense reference, the scorer contract, the registry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from f3ocus.importance._jacobian import jacobian_rows
from f3ocus.importance.lntk import LntkScorer
from f3ocus.importance.registry import SCORERS, build_scorer
from tests.unit.importance.conftest import reference_eigenvalues

LNTK_NAMES = sorted(name for name in SCORERS if name.startswith("lntk"))
TOLERANCE = {"exact": 1e-4, "matfree": 1e-2}
# Units of the tiny LLaVA checked against the dense reference (first vision block, connector, last LM
# block): enough to cover both towers, cheap enough for a 2-core CI box.
VLM_UNITS = ("vision.0", "connector", "language.3")
# Matrix-free runs ~5 full-batch vjp + jvp per unit: on the VLM it is checked on the last two only.
SOLVER_UNITS = {"exact": VLM_UNITS, "matfree": VLM_UNITS[1:]}
_REFERENCES: dict[tuple[int, str], np.ndarray] = {}


def _reference(model, inputs, labels, kernel) -> np.ndarray:
    """`reference_eigenvalues` on VLM_UNITS, computed once per (module-scoped model, kernel)."""
    key = (id(model), kernel)
    if key not in _REFERENCES:
        _REFERENCES[key] = reference_eigenvalues(model, inputs, labels, kernel, VLM_UNITS)
    return _REFERENCES[key]


def _relative_error(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    # Units whose λ₁ is ~0 next to the largest one (e.g. LoRA at B = 0) are compared on that scale.
    return np.abs(values - reference) / np.maximum(reference, 1e-9 * reference.max())


@pytest.mark.parametrize("solver", ["exact", "matfree"])
@pytest.mark.parametrize("kernel", ["logit", "grad"])
def test_tiny_module_matches_dense_reference(tiny_model, kernel, solver):
    model, inputs, labels = tiny_model
    reference = reference_eigenvalues(model, inputs, labels, kernel)  # (3,)

    values = LntkScorer(kernel, solver).eigenvalues(model, inputs, labels)

    assert reference.min() > 0
    assert _relative_error(values, reference).max() <= TOLERANCE[solver], (values, reference)


@pytest.mark.parametrize("solver", ["exact", "matfree"])
@pytest.mark.parametrize("kernel", ["logit", "grad"])
def test_scratch_vlm_matches_dense_reference(scratch_llava, kernel, solver):
    model, inputs, labels = scratch_llava
    units = SOLVER_UNITS[solver]
    reference = _reference(model, inputs, labels, kernel)[-len(units):]  # (len(units),)

    values = LntkScorer(kernel, solver).eigenvalues(model, inputs, labels, units)

    assert _relative_error(values, reference).max() <= TOLERANCE[solver], (values, reference)


@pytest.mark.parametrize("solver", ["exact", "matfree"])
def test_adapter_mode_matches_dense_reference(scratch_llava_adapter, solver):
    model, inputs, labels = scratch_llava_adapter
    units = SOLVER_UNITS[solver]
    reference = _reference(model, inputs, labels, "logit")[-len(units):]  # (len(units),)

    values = LntkScorer("logit", solver).eigenvalues(model, inputs, labels, units)

    assert _relative_error(values, reference).max() <= TOLERANCE[solver], (values, reference)


def test_adapter_at_init_scores_come_from_lora_b(scratch_llava_adapter_init):
    model, inputs, labels = scratch_llava_adapter_init
    names = model.unit_parameter_names()[model.units[-1]]

    rows = jacobian_rows(model, inputs, labels, "logit", names)
    scores = build_scorer("lntk").score(model, inputs, labels)

    assert all(not rows[name].any() for name in names if ".lora_A." in name)
    assert all(rows[name].any() for name in names if ".lora_B." in name)
    assert scores.shape == (len(model.units),) and scores.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("name", LNTK_NAMES)
def test_scores_are_a_distribution_in_unit_order(tiny_model, name):
    model, inputs, labels = tiny_model

    scores = build_scorer(name).score(model, inputs, labels)

    assert scores.shape == (3,)
    assert (scores >= 0).all()
    assert scores.sum() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("name", LNTK_NAMES)
def test_model_is_left_exactly_as_found(tiny_model, name):
    model, inputs, labels = tiny_model
    model.train()
    model.block1[1].weight.requires_grad_(False)
    model.block0.weight.grad = torch.full_like(model.block0.weight, 3.0)
    weights = {key: value.clone() for key, value in model.state_dict().items()}
    flags = {key: param.requires_grad for key, param in model.named_parameters()}
    grads = {key: None if param.grad is None else param.grad.clone() for key, param in model.named_parameters()}

    build_scorer(name).score(model, inputs, labels)

    assert model.training
    assert all(torch.equal(value, weights[key]) for key, value in model.state_dict().items())
    assert {key: param.requires_grad for key, param in model.named_parameters()} == flags
    for key, param in model.named_parameters():
        assert (param.grad is None) == (grads[key] is None), key
        assert param.grad is None or torch.equal(param.grad, grads[key]), key


def test_vlm_is_left_exactly_as_found(scratch_llava):
    model, inputs, labels = scratch_llava
    before = {key: value.clone() for key, value in model.state_dict().items()}
    model.set_trainable([index % 2 == 0 for index in range(len(model.units))])
    flags = {key: param.requires_grad for key, param in model.named_parameters()}

    build_scorer("lntk").score(model, inputs, labels)

    assert not model.training
    assert all(torch.equal(value, before[key]) for key, value in model.state_dict().items())
    assert {key: param.requires_grad for key, param in model.named_parameters()} == flags
    assert all(param.grad is None for param in model.parameters())
    model.set_trainable([True] * len(model.units))


@pytest.mark.parametrize("name", ["lntk_exact_logit", "lntk_matfree_grad"])
def test_same_inputs_give_same_scores(tiny_model, name):
    model, inputs, labels = tiny_model

    first = build_scorer(name).score(model, inputs, labels)
    second = build_scorer(name).score(model, inputs, labels)

    np.testing.assert_array_equal(first, second)


def test_exact_groups_units_under_a_small_budget(tiny_model):
    model, inputs, labels = tiny_model  # logit J: 20 rows × (56 | 88 | 8) floats
    whole = LntkScorer("logit", "exact").eigenvalues(model, inputs, labels)

    grouped = LntkScorer("logit", "exact", max_jacobian_bytes=20 * 88 * 4).eigenvalues(model, inputs, labels)

    np.testing.assert_allclose(grouped, whole, rtol=1e-12)
    with pytest.raises(MemoryError, match="matfree"):
        LntkScorer("logit", "exact", max_jacobian_bytes=100).eigenvalues(model, inputs, labels)


def test_registry_names_and_bad_arguments():
    assert {"grad_norm", "lntk", "lntk_exact_logit", "lntk_matfree_logit", "lntk_exact_grad",
            "lntk_matfree_grad"} <= set(SCORERS)
    assert "lntk_ghost_grad" in SCORERS and "lntk_ghost_logit" not in SCORERS
    default = build_scorer("lntk")
    assert (default.name, default.kernel, default.solver) == ("lntk", "grad", "ghost")
    assert build_scorer("lntk_matfree_grad").name == "lntk_matfree_grad"
    with pytest.raises(ValueError, match="kernel"):
        LntkScorer(kernel="hessian")
    with pytest.raises(ValueError, match="solver"):
        LntkScorer(solver="svd")
