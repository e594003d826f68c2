"""Pruning saliencies lifted to units: the paper's Magnitude, SNIP, GraSP, GradFlow, RGN and SynFlow baselines.

The F3OCUS paper (docs/METHOD.md §5) compares its LNTK scores with layer-selection baselines, most of them
pruning criteria defined per *weight*. Each is lifted here to a per-unit importance that the `top_k`
selector turns into a per-client mask (higher = train it). θ_u are the tensors unit u trains in the
current unit mode (`VqaModel.unit_parameter_names()`: block weights in layer mode, LoRA tensors in
adapter mode, ...); g = ∂L/∂θ is the gradient of the mean batch loss `unit_loss` (cross-entropy, label
-1 ignored; binary cross-entropy for multi-label rows) w.r.t. ALL unit tensors at once, in eval mode;
the answer head is always trained and is never scored. Every raw score is ≥ 0 and goes through
`base.normalise`, so a client's scores sum to 1.

- `magnitude` (Han et al., NeurIPS 2015, "Learning both weights and connections"): mean |θ| over the
  unit. Data-free.
- `snip` (Lee, Ajanthan, Torr, ICLR 2019, connection sensitivity): Σ_{j∈u} |θ_j g_j|.
- `grasp` (Wang, Zhang, Grosse, ICLR 2020, "Picking winning tickets before training by preserving
  gradient flow"): per weight S(−θ) = −θ ⊙ Hg; unit importance x_u − min_v x_v,
  x_u = Σ_{j∈u} θ_j (Hg)_j.
- `gradflow` (gradient-norm preservation; Lubana & Dick, ICLR 2021, "A gradient flow framework for
  analyzing network pruning", on the gradient flow gᵀg of Wang et al. 2020): |x_u| = |θ_uᵀ (Hg)_u|.
- `rgn` (Lee et al., ICLR 2023, "Surgical fine-tuning improves adaptation to distribution shifts"):
  ||g_u|| / ||θ_u||.
- `synflow` (Tanaka et al., NeurIPS 2020, "Pruning neural networks without any data by iteratively
  conserving synaptic flow"): Σ_{j∈u} |θ_j ∂R/∂θ_j| on the |θ|-network with an all-ones image. Data-free
  up to the token ids.
Each class docstring says how the per-weight original is lifted. Hg is one Hessian-gradient product by
double backprop (`torch.autograd.grad(create_graph=True)`), through the math attention kernel (the fused
CPU/GPU kernels have no double backward).
"""

from __future__ import annotations

import copy
from typing import ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from f3ocus.importance._unit_gradients import (gradients, loss_gradients, unit_loss, unit_norms, unit_sums,
                                               unit_tensors)
from f3ocus.importance.base import normalise

__all__ = ["MagnitudeScorer", "SnipScorer", "GraspScorer", "GradFlowScorer", "RelativeGradientNormScorer",
           "SynFlowScorer", "theta_hessian_gradient"]


class MagnitudeScorer:
    """Weight magnitude: raw_u = mean_{j∈u} |θ_j| (data-free; `inputs` and `labels` are not read).

    Magnitude pruning keeps the weights of largest |θ_j|. Lifted to a unit by the MEAN over its
    tensors, not the sum: units differ in size (a language block has several times the weights of a
    vision block, a LoRA pair far fewer), and a sum would rank units by parameter count, not by how
    large their weights are. The mean is the size-normalised lift (the per-weight criterion's average).
    """

    name: ClassVar[str] = "magnitude"

    def score(self, model: nn.Module, inputs: dict[str, torch.Tensor], labels: torch.Tensor) -> np.ndarray:
        """Returns: (L,) scores in `model.units` order, summing to 1."""
        names = model.unit_parameter_names()
        params = dict(model.named_parameters())
        raw = []
        with torch.no_grad():
            for unit in model.units:
                tensors = [params[name] for name in names[unit]]
                count = sum(tensor.numel() for tensor in tensors)
                total = sum(float(tensor.detach().double().abs().sum()) for tensor in tensors)
                raw.append(total / count if count else 0.0)
        return normalise(np.array(raw))


class SnipScorer:
    """SNIP connection sensitivity: raw_u = Σ_{j∈u} |θ_j g_j|.

    SNIP keeps the weights with the largest |θ_j ∂L/∂θ_j| (the first-order loss change when weight j
    is removed, in absolute value). Lifted by the SUM over the unit: the sensitivities of the unit's
    weights add up, and the sum bounds the first-order loss change of removing the whole unit.
    """

    name: ClassVar[str] = "snip"

    def score(self, model: nn.Module, inputs: dict[str, torch.Tensor], labels: torch.Tensor) -> np.ndarray:
        """Args: model a VqaModel; inputs its batch (B, ...); labels (B,) long or (B, C) multi-hot.

        Returns: (L,) scores in `model.units` order, summing to 1.
        """
        with unit_tensors(model) as tensors:
            grads = loss_gradients(model, inputs, labels, tensors)
            raw = unit_sums({unit: [(tensor.detach() * grad).abs() for tensor, grad in zip(tensors[unit], grads[unit])]
                             for unit in tensors})
        return normalise(np.array(raw))


class RelativeGradientNormScorer:
    """Relative gradient norm (surgical fine-tuning's auto-RGN): raw_u = ||g_u|| / ||θ_u|| (0 if θ_u = 0).

    Defined per tensor in the original (Lee et al. 2023, §5: the RGN of each parameter tensor sets
    its learning rate); lifted by taking both norms over the unit's tensors together, so the unit's
    score is the size of its gradient relative to the size of its weights.
    """

    name: ClassVar[str] = "rgn"

    def score(self, model: nn.Module, inputs: dict[str, torch.Tensor], labels: torch.Tensor) -> np.ndarray:
        """Args: as `SnipScorer.score`. Returns: (L,) scores in `model.units` order, summing to 1."""
        with unit_tensors(model) as tensors:
            grads = loss_gradients(model, inputs, labels, tensors)
            grad_norms = unit_norms(grads)
            weight_norms = unit_norms({unit: [tensor.detach() for tensor in unit_list]
                                       for unit, unit_list in tensors.items()})
        raw = [grad / weight if weight > 0 else 0.0 for grad, weight in zip(grad_norms, weight_norms)]
        return normalise(np.array(raw))


def theta_hessian_gradient(model: nn.Module, inputs: dict[str, torch.Tensor], labels: torch.Tensor) -> np.ndarray:
    """x_u = θ_uᵀ (Hg)_u per unit: H and g of the mean `unit_loss` w.r.t. all unit tensors together.

    Hg = ∇_θ (gᵀ stop_grad(g)) by double backprop (one backward with `create_graph`, one more backward);
    H includes the cross-unit blocks, as GraSP's full-network Hessian does. Leaves the model as found.

    Returns:
        (L,) float64 in `model.units` order (signed).
    """
    with unit_tensors(model) as tensors, sdpa_kernel(SDPBackend.MATH), torch.enable_grad():
        grads = gradients(unit_loss(model, inputs, labels), tensors, create_graph=True)
        flow = sum(((grad * grad.detach()).sum() for unit_grads in grads.values() for grad in unit_grads), 0.0)
        if not torch.is_tensor(flow) or not flow.requires_grad:  # no unit tensor reaches the loss
            return np.zeros(len(tensors))
        hessian_grad = gradients(flow, tensors)
        products = {unit: [tensor.detach() * value for tensor, value in zip(tensors[unit], hessian_grad[unit])]
                    for unit in tensors}
        return np.array(unit_sums(products))


class GraspScorer:
    """GraSP: raw_u = x_u − min_v x_v, x_u = Σ_{j∈u} θ_j (Hg)_j (`theta_hessian_gradient`).

    GraSP scores weight j by S_j = −θ_j (Hg)_j, the first-order change (halved) of the gradient flow
    gᵀg when the weight is removed, and prunes the HIGHEST S first (removing them keeps or raises the
    flow). Lifted by summing over the unit: −x_u is the first-order flow change of removing the whole
    unit. Importance is the reverse order, x_u, which can be negative; it is shifted by the minimum
    over units (that own tensors; one without scores 0) so that it is ≥ 0: the least important unit
    gets 0, the ranking is GraSP's, equal x give the uniform distribution. A shift, not a clip at 0 nor
    the magnitude: both would change GraSP's order (|x| is `gradflow`). Not done here: GraSP's logit temperature (T = 200) and its
    iterative use at initialisation; the score batch is the client's batch.
    """

    name: ClassVar[str] = "grasp"

    def score(self, model: nn.Module, inputs: dict[str, torch.Tensor], labels: torch.Tensor) -> np.ndarray:
        """Args: as `SnipScorer.score`. Returns: (L,) scores in `model.units` order, summing to 1."""
        signed = theta_hessian_gradient(model, inputs, labels)  # (L,)
        names = model.unit_parameter_names()
        owned = np.array([bool(names[unit]) for unit in model.units])  # a unit without tensors scores 0
        if not owned.any():
            return normalise(np.zeros(len(owned)))
        return normalise(np.where(owned, signed - signed[owned].min(), 0.0))


class GradFlowScorer:
    """Gradient-flow (gradient-norm) preservation: raw_u = |x_u| = |Σ_{j∈u} θ_j (Hg)_j|.

    Under gradient flow dθ/dt = −g the loss falls at rate gᵀg (Wang et al. 2020); zeroing unit u
    changes that rate by −2 x_u to first order. GraSP keeps the units whose removal would *reduce* the
    flow most (signed x_u); gradient-norm preservation (Lubana & Dick 2021, their |θᵀHg| measure,
    defined per weight there) keeps the units whose removal would *change* it most in either direction,
    i.e. |x_u|, here taken over the unit as a whole (the unit is trained or frozen as one). It differs
    from `snip` (first order in the loss, Σ|θ g|) and from `grad_norm` (||g||², no weights, no curvature).
    """

    name: ClassVar[str] = "gradflow"

    def score(self, model: nn.Module, inputs: dict[str, torch.Tensor], labels: torch.Tensor) -> np.ndarray:
        """Args: as `SnipScorer.score`. Returns: (L,) scores in `model.units` order, summing to 1."""
        return normalise(np.abs(theta_hessian_gradient(model, inputs, labels)))


class SynFlowScorer:
    """SynFlow: raw_u = Σ_{j∈u} |θ_j ∂R/∂θ_j| with R = Σ model(ones)(|θ|), in float64 (`labels` not read).

    SynFlow replaces every parameter by its absolute value, feeds an all-ones input, takes R = the sum
    of the outputs and scores weight j by θ_j ∂R/∂θ_j (≥ 0 for a network of linear maps and ReLUs, where
    R is the total "synaptic flow" and the scores of a layer sum to R). Here it runs on a deep copy of
    the model (the model itself is never touched) cast to float64 (the products of |θ| over depth may
    overflow float32), in eval mode. A VLM needs valid inputs: the batch's keys are kept, `pixel_values`
    set to ones and the token ids kept, so it is data-free except for the questions' tokens. Lifted by
    the SUM over the unit (a layer's SynFlow scores sum to the flow through it).
    Approximation: a transformer is not a positive-homogeneous chain. LayerNorm divides out the scale
    SynFlow's conservation law relies on, softmax and GELU are not homogeneous and embeddings are
    looked up, not multiplied, so the per-layer sums are not equal to R and θ ∂R/∂θ can be negative;
    hence the absolute value. The original's iterative pruning (100 rounds) is a single pass here.
    """

    name: ClassVar[str] = "synflow"

    def score(self, model: nn.Module, inputs: dict[str, torch.Tensor], labels: torch.Tensor) -> np.ndarray:
        """Args: model a VqaModel; inputs its batch (B, ...). Returns: (L,) scores in `model.units` order, sum 1."""
        # The processor is no module and is not modified: shared with the copy, not copied.
        memo = {id(model.processor): model.processor} if hasattr(model, "processor") else {}
        linear = copy.deepcopy(model, memo).double().eval()
        with torch.no_grad():
            for param in linear.parameters():
                param.abs_()
        ones = {key: (torch.ones_like(value, dtype=torch.float64) if key == "pixel_values"
                      else value.double() if value.is_floating_point() else value) for key, value in inputs.items()}
        with unit_tensors(linear) as tensors, torch.enable_grad():
            flow = linear(**ones).sum()  # R
            grads = gradients(flow, tensors)
            raw = unit_sums({unit: [(tensor.detach() * grad).abs() for tensor, grad in zip(tensors[unit], grads[unit])]
                             for unit in tensors})
        del linear
        return normalise(np.array(raw))
