"""The paper's layer-selection baseline scorers (docs/METHOD.md §5) against explicit references, and their contract.

References are computed independently of the scorers: gradients from a plain forward + `autograd.grad`,
per-sample gradients from one forward per sample, the Hessian densely (`torch.autograd.functional.hessian`),
SynFlow in closed form on a linear chain, FedSelect with `torch.optim.SGD` on a deep copy.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from f3ocus.importance._unit_gradients import unit_loss
from f3ocus.importance.base import normalise
from f3ocus.importance.fisher import FisherScorer
from f3ocus.importance.local_update import FedSelectScorer
from f3ocus.importance.pruning_scores import theta_hessian_gradient
from f3ocus.importance.registry import SCORERS, build_scorer
from f3ocus.importance.sensitivity import SptScorer
from tests.unit.importance.conftest import TinyUnitModel, vlm_batch

BASELINES = ("magnitude", "snip", "grasp", "gradflow", "rgn", "synflow", "fisher", "spt", "fedselect")


def _unit_params(model: nn.Module) -> dict[str, list[torch.Tensor]]:
    params = dict(model.named_parameters())
    return {unit: [params[name] for name in model.unit_parameter_names()[unit]] for unit in model.units}


def _reference_gradients(model: nn.Module, inputs: dict, labels: torch.Tensor) -> dict[str, list[torch.Tensor]]:
    """∂/∂θ of the mean cross-entropy over labelled rows, for every unit tensor (model left as found)."""
    tensors = _unit_params(model)
    flat = [tensor for unit_list in tensors.values() for tensor in unit_list]
    loss = F.cross_entropy(model(**inputs), labels, ignore_index=-1)
    values = iter(torch.autograd.grad(loss, flat))
    return {unit: [next(values) for _ in unit_list] for unit, unit_list in tensors.items()}


def _unit_sum(values) -> np.ndarray:
    return np.array([sum(float(value.double().sum()) for value in unit_values) for unit_values in values.values()])


# ----------------------------------------------------------------------------- hand-checked values
def test_magnitude_is_the_mean_absolute_weight_of_each_unit(tiny_model):
    model, inputs, labels = tiny_model
    tensors = _unit_params(model)
    expected = normalise(np.array([sum(float(t.detach().double().abs().sum()) for t in unit_list)
                                   / sum(t.numel() for t in unit_list) for unit_list in tensors.values()]))

    scores = build_scorer("magnitude").score(model, inputs, labels)

    np.testing.assert_allclose(scores, expected, rtol=1e-12)


def test_snip_and_rgn_match_explicit_gradients(tiny_model):
    model, inputs, labels = tiny_model
    grads = _reference_gradients(model, inputs, labels)
    tensors = _unit_params(model)
    snip = _unit_sum({unit: [(t.detach() * g).abs() for t, g in zip(tensors[unit], grads[unit])]
                      for unit in grads})
    rgn = np.sqrt(_unit_sum({unit: [g.pow(2) for g in grads[unit]] for unit in grads})
                  / _unit_sum({unit: [t.detach().pow(2) for t in tensors[unit]] for unit in grads}))

    snip_scores = build_scorer("snip").score(model, inputs, labels)
    rgn_scores = build_scorer("rgn").score(model, inputs, labels)

    np.testing.assert_allclose(snip_scores, normalise(snip), rtol=1e-6)
    np.testing.assert_allclose(rgn_scores, normalise(rgn), rtol=1e-6)


@pytest.mark.parametrize("solver", ["ghost", "loop"])
def test_fisher_is_the_mean_per_sample_squared_gradient(tiny_model, solver):
    model, inputs, labels = tiny_model
    n = labels.shape[0]
    squares = np.zeros(len(model.units))
    for index in range(n):  # one forward per sample: nothing shared between samples
        row = {key: value[index:index + 1] for key, value in inputs.items()}
        loss = F.cross_entropy(model(**row), labels[index:index + 1], ignore_index=-1, reduction="sum")
        if labels[index] >= 0:
            tensors = _unit_params(model)
            values = iter(torch.autograd.grad(loss, [t for unit_list in tensors.values() for t in unit_list]))
            squares += _unit_sum({unit: [next(values).pow(2) for _ in unit_list]
                                  for unit, unit_list in tensors.items()})
    mean_gradient = _unit_sum({unit: [g.pow(2) for g in unit_grads]
                               for unit, unit_grads in _reference_gradients(model, inputs, labels).items()})

    raw = FisherScorer(solver).fisher_traces(model, inputs, labels)

    np.testing.assert_allclose(raw, squares / n, rtol=1e-5)
    # The per-sample square, not the square of the mean gradient (that ranks otherwise here: grad_norm).
    assert not np.allclose(normalise(raw), normalise(mean_gradient), rtol=1e-2)


def _dense_theta_hessian_gradient(model: nn.Module, inputs: dict, labels: torch.Tensor) -> np.ndarray:
    """x_u = Σ_{j∈u} θ_j (Hg)_j with H from `torch.autograd.functional.hessian` over all unit tensors, float64."""
    model = copy.deepcopy(model).double()
    names = model.unit_parameter_names()
    params = dict(model.named_parameters())
    order = [name for unit in model.units for name in names[unit]]
    sizes = [params[name].numel() for name in order]
    inputs = {key: value.double() for key, value in inputs.items()}

    def loss(flat: torch.Tensor) -> torch.Tensor:
        tensors = {name: part.reshape(params[name].shape) for name, part in zip(order, flat.split(sizes))}
        return F.cross_entropy(functional_call(model, tensors, (), inputs), labels, ignore_index=-1)

    theta = torch.cat([params[name].detach().reshape(-1) for name in order])  # (P,)
    hessian = torch.autograd.functional.hessian(loss, theta)  # (P, P)
    gradient = torch.autograd.functional.jacobian(loss, theta)  # (P,)
    product = (theta * (hessian @ gradient)).split([sum(params[n].numel() for n in names[u]) for u in model.units])
    return np.array([float(part.sum()) for part in product])


def test_grasp_and_gradflow_match_a_dense_hessian(tiny_model):
    model, inputs, _ = tiny_model
    labels = torch.tensor([1, 2, 0, 4])  # with these, unit 0 has x < 0 < x of units 1, 2
    signed = _dense_theta_hessian_gradient(model, inputs, labels)  # (3,)

    grasp = build_scorer("grasp").score(model, inputs, labels)
    gradflow = build_scorer("gradflow").score(model, inputs, labels)

    assert (signed < 0).any() and (signed > 0).any()  # the shift and the absolute value both matter here
    np.testing.assert_allclose(grasp, normalise(signed - signed.min()), atol=1e-5)
    np.testing.assert_allclose(gradflow, normalise(np.abs(signed)), atol=1e-5)
    assert grasp.argmin() == signed.argmin() and not np.allclose(grasp, gradflow, atol=1e-3)


class LinearChain(nn.Module):
    """pixel_values (B, 3) -> three Linear units -> Linear head (B, 2); no non-linearity: SynFlow's closed form."""

    units = ("first", "second", "third")

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(3)
        self.first, self.second, self.third = nn.Linear(3, 4), nn.Linear(4, 5), nn.Linear(5, 4)
        self.head = nn.Linear(4, 2)
        with torch.no_grad():
            for param in self.parameters():
                param.copy_(torch.randn(param.shape, generator=generator))

    def unit_parameter_names(self) -> dict[str, list[str]]:
        names = {unit: [f"{unit}.weight", f"{unit}.bias"] for unit in self.units}
        return {**names, "head": ["head.weight", "head.bias"]}

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.third(self.second(self.first(pixel_values))))


def test_synflow_on_a_linear_chain_matches_the_closed_form():
    model = LinearChain().eval()
    inputs = {"pixel_values": torch.randn(2, 3), "input_ids": torch.tensor([[1], [2]])}  # the pixels are ignored
    layers = [model.first, model.second, model.third]
    # h_l = |W_l| h_{l-1} + |b_l| from h_0 = 1; u_l = |W_{l+1}|ᵀ u_{l+1} from u_3 = |W_head|ᵀ 1;
    # unit l (weight and bias): Σ |θ ∂R/∂θ| = B u_lᵀ h_l, B = 2 rows.
    hidden, flows = [torch.ones(3, dtype=torch.float64)], []
    for layer in layers:
        hidden.append(layer.weight.detach().double().abs() @ hidden[-1] + layer.bias.detach().double().abs())
    upstream = model.head.weight.detach().double().abs().T @ torch.ones(2, dtype=torch.float64)
    for index in (2, 1, 0):
        flows.insert(0, 2 * float(upstream @ hidden[index + 1]))
        upstream = layers[index].weight.detach().double().abs().T @ upstream

    scores = build_scorer("synflow").score(model, inputs, torch.tensor([0, 1]))

    np.testing.assert_allclose(scores, normalise(np.array(flows)), rtol=1e-10)
    assert not np.allclose(scores, 1 / 3, atol=1e-3)


def test_spt_counts_the_global_top_fraction_and_orders_ties_by_sensitivity():
    grads = {"a": [torch.tensor([3.0, 0.0])], "b": [torch.tensor([1.0, 1.0])], "c": [torch.tensor([0.5])]}
    # P = 5, τ = 0.2 -> the single largest g² (9, in a); shares of Σ g² = 11.25: a 9, b 2, c 0.25.

    raw = SptScorer(fraction=0.2, tie_weight=1e-3).counts(grads)

    np.testing.assert_allclose(raw, [1 + 1e-3 * 9 / 11.25, 1e-3 * 2 / 11.25, 1e-3 * 0.25 / 11.25], rtol=1e-12)
    assert SptScorer(fraction=1.0).counts(grads)[:2].round().tolist() == [1, 2]  # zero gradients never count


def test_spt_matches_explicit_gradients_on_the_tiny_model(tiny_model):
    model, inputs, labels = tiny_model
    grads = _reference_gradients(model, inputs, labels)
    squares = [torch.cat([g.double().pow(2).reshape(-1) for g in unit_grads]) for unit_grads in grads.values()]
    everything = torch.cat(squares)
    threshold = everything.sort(descending=True).values[math.ceil(0.1 * everything.numel()) - 1]
    counts = np.array([int((part >= threshold).sum()) for part in squares])
    shares = np.array([float(part.sum()) for part in squares]) / float(everything.sum())

    scores = SptScorer(fraction=0.1).score(model, inputs, labels)

    np.testing.assert_allclose(scores, normalise(counts + 1e-3 * shares), rtol=1e-5)


def test_fedselect_matches_sgd_on_a_copy(tiny_model):
    model, inputs, labels = tiny_model
    trained = copy.deepcopy(model)
    tensors = _unit_params(trained)
    before = {unit: [t.detach().clone() for t in unit_list] for unit, unit_list in tensors.items()}
    optimizer = torch.optim.SGD([t for unit_list in tensors.values() for t in unit_list], lr=0.3)
    for _ in range(2):
        for rows in torch.arange(4).split(3):  # batches [0, 1, 2] (row 2 labelled -1), [3]
            optimizer.zero_grad()
            loss = F.cross_entropy(trained(x=inputs["x"][rows]), labels[rows], ignore_index=-1)
            loss.backward()
            optimizer.step()
    change = _unit_sum({unit: [(t.detach() - b).pow(2) for t, b in zip(tensors[unit], before[unit])]
                        for unit in tensors})
    size = _unit_sum({unit: [b.pow(2) for b in before[unit]] for unit in tensors})

    scores = FedSelectScorer(learning_rate=0.3, batch_size=3, epochs=2).score(model, inputs, labels)

    np.testing.assert_allclose(scores, normalise(np.sqrt(change / size)), rtol=1e-5)


def test_multi_label_rows_use_binary_cross_entropy(tiny_model):
    model, inputs, _ = tiny_model
    targets = torch.tensor([[1, 0, 0, 1, 0], [0, 0, 0, 0, 0], [1, 1, 1, 0, 0], [0, 1, 0, 0, 1]], dtype=torch.float32)
    logits = model(**inputs)
    per_sample = F.binary_cross_entropy_with_logits(logits, targets, reduction="none").sum(dim=1)  # (4,): l_i sums BCE over classes (f3ocus.models.losses)
    tensors = _unit_params(model)
    squares = np.zeros(3)
    for index in range(4):
        flat = [t for unit_list in tensors.values() for t in unit_list]
        values = iter(torch.autograd.grad(per_sample[index], flat, retain_graph=True))
        squares += _unit_sum({unit: [next(values).pow(2) for _ in unit_list]
                              for unit, unit_list in tensors.items()})

    loss = unit_loss(model, inputs, targets).detach()
    fisher = FisherScorer().fisher_traces(model, inputs, targets)  # the ghost route knows CE only: loop

    assert float(loss) == pytest.approx(float(F.binary_cross_entropy_with_logits(logits.detach(), targets)), rel=1e-6)
    np.testing.assert_allclose(fisher, squares / 4, rtol=1e-5)
    for name in BASELINES:
        scores = build_scorer(name).score(model, inputs, targets)
        assert np.isfinite(scores).all() and scores.sum() == pytest.approx(1.0)


def test_a_batch_without_labelled_rows_gives_zero_gradients_not_nan(tiny_model):
    model, inputs, _ = tiny_model
    unlabelled = torch.full((4,), -1)

    assert float(unit_loss(model, inputs, unlabelled).detach()) == 0.0
    for name in ("snip", "rgn", "fisher", "spt", "fedselect"):
        np.testing.assert_array_equal(build_scorer(name).score(model, inputs, unlabelled), np.full(3, 1 / 3))


# ----------------------------------------------------------------------------- the scorer contract
def _snapshot(model: nn.Module) -> tuple:
    return ({key: value.clone() for key, value in model.state_dict().items()},
            {key: param.requires_grad for key, param in model.named_parameters()},
            {key: None if param.grad is None else param.grad.clone() for key, param in model.named_parameters()},
            model.training)


def _assert_unchanged(model: nn.Module, snapshot: tuple) -> None:
    weights, flags, grads, training = snapshot
    assert model.training == training
    assert all(torch.equal(value, weights[key]) for key, value in model.state_dict().items())
    assert {key: param.requires_grad for key, param in model.named_parameters()} == flags
    for key, param in model.named_parameters():
        assert (param.grad is None) == (grads[key] is None), key
        assert param.grad is None or torch.equal(param.grad, grads[key]), key


@pytest.mark.parametrize("name", BASELINES)
def test_tiny_model_contract(tiny_model, name):
    model, inputs, labels = tiny_model
    model.train()
    model.block1[1].weight.requires_grad_(False)
    model.block0.weight.grad = torch.full_like(model.block0.weight, 3.0)
    snapshot = _snapshot(model)

    first = build_scorer(name).score(model, inputs, labels)
    second = build_scorer(name).score(model, inputs, labels)

    _assert_unchanged(model, snapshot)
    assert first.shape == (3,) and (first >= 0).all() and first.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_array_equal(first, second)
    assert build_scorer(name).name == name and name in SCORERS


class EmptyUnitModel(TinyUnitModel):
    """TinyUnitModel with a fourth unit that owns no tensor in this (imagined) unit mode."""

    units = ("block.0", "block.1", "scale", "empty")

    def unit_parameter_names(self) -> dict[str, list[str]]:
        return {**super().unit_parameter_names(), "empty": []}


@pytest.mark.parametrize("name", BASELINES)
def test_a_unit_without_tensors_scores_zero(name):
    generator = torch.Generator().manual_seed(1)
    inputs, labels = {"x": torch.randn(4, 6, generator=generator)}, torch.tensor([0, 3, 1, 4])

    scores = build_scorer(name).score(EmptyUnitModel().eval(), inputs, labels)

    assert scores.shape == (4,) and scores[3] == 0.0 and scores.sum() == pytest.approx(1.0)


@pytest.fixture(scope="module", params=[("llava", "layer"), ("vilt", "adapter")], ids=lambda p: "-".join(p))
def tiny_vlm(request):
    """A scratch VLM (LoRA B made non-zero in adapter mode) and 4 encoded samples, one labelled -1."""
    return vlm_batch(*request.param, n=4)


def test_real_vlm_contract(tiny_vlm):
    model, inputs, labels = tiny_vlm
    model.set_trainable([index % 2 == 0 for index in range(len(model.units))])
    model.train()
    snapshot = _snapshot(model)
    try:
        for name in BASELINES:
            scores = build_scorer(name).score(model, inputs, labels)

            _assert_unchanged(model, snapshot)
            assert scores.shape == (len(model.units),), name
            assert np.isfinite(scores).all() and (scores >= 0).all() and scores.sum() == pytest.approx(1.0), name
            assert scores.max() > scores.min(), name  # every baseline tells the units apart
    finally:
        model.set_trainable([True] * len(model.units))
        model.eval()


def test_real_vlm_fisher_routes_agree(tiny_vlm):
    model, inputs, labels = tiny_vlm

    ghost = FisherScorer("ghost").fisher_traces(model, inputs, labels)
    loop = FisherScorer("loop").fisher_traces(model, inputs, labels)

    np.testing.assert_allclose(ghost, loop, rtol=1e-4, atol=1e-9 * loop.max())


def test_real_vlm_hessian_gradient_matches_finite_differences(tiny_vlm):
    """θ_uᵀ(Hg)_u by double backprop (float32, math attention) vs central differences of g in float64."""
    model, inputs, labels = tiny_vlm
    twin = copy.deepcopy(model, {id(model.processor): model.processor}).double().eval()
    inputs64 = {key: value.double() if value.is_floating_point() else value for key, value in inputs.items()}
    tensors = _unit_params(twin)
    for unit_list in tensors.values():
        for tensor in unit_list:
            tensor.requires_grad_(True)
    gradient = _reference_gradients(twin, inputs64, labels)
    step = 1e-5

    def shifted_gradients(sign: float) -> dict[str, list[torch.Tensor]]:
        with torch.no_grad():
            for unit in tensors:
                for tensor, value in zip(tensors[unit], gradient[unit]):
                    tensor.add_(sign * step * value)
        values = _reference_gradients(twin, inputs64, labels)
        with torch.no_grad():
            for unit in tensors:
                for tensor, value in zip(tensors[unit], gradient[unit]):
                    tensor.sub_(sign * step * value)
        return values

    plus, minus = shifted_gradients(1.0), shifted_gradients(-1.0)
    reference = _unit_sum({unit: [t.detach() * (p - m) / (2 * step) for t, p, m in zip(tensors[unit], plus[unit],
                                                                                        minus[unit])]
                           for unit in tensors})

    values = theta_hessian_gradient(model, inputs, labels)

    np.testing.assert_allclose(values, reference, rtol=1e-3, atol=1e-4 * np.abs(reference).max())
