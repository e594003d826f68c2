"""Empirical Fisher importance: the paper's FishMask baseline (Sung, Nair, Raffel, NeurIPS 2021).

FishMask ("Training neural networks with fixed sparse masks") keeps the parameters with the largest
diagonal of the empirical Fisher, F̂_j = (1/n) Σ_i (∂ℓ_i/∂θ_j)², ℓ_i the loss of sample i: the mean of
the per-sample SQUARED gradients, not the square of the mean gradient (that is `grad_norm`). Defined
per weight there; lifted to a unit by summing over the unit's tensors (the trace of the unit's Fisher
block):

    raw_u = Σ_{j∈u} F̂_j = (1/n) Σ_i ||∇_{θ_u} ℓ_i||² = trace(K_u) / n,

K_u the n × n Gram of per-sample loss gradients of unit u — the "grad" LNTK kernel. So the default
("ghost") reuses the LNTK scorer's one-pass per-sample Grams (`_ghost.py`: one forward + one backward
with module hooks, exact, verified against one backward per sample) and reads their trace. That route
knows the cross-entropy loss only; multi-label rows ((B, C) float labels) and `solver="loop"` take
one forward of the per-sample `unit_loss` and one backward per sample.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
import torch
from torch import nn

from f3ocus.importance._unit_gradients import gradients, unit_loss, unit_sums, unit_tensors
from f3ocus.importance.base import normalise
from f3ocus.importance.lntk import LntkScorer

__all__ = ["FisherScorer"]


class FisherScorer:
    """Trace of each unit's empirical Fisher, (1/n) Σ_i ||∇_{θ_u} ℓ_i||², normalised over units.

    Attributes:
        solver: "ghost" (one-pass per-sample Grams, cross-entropy rows) or "loop" (one backward per sample).
    """

    name: ClassVar[str] = "fisher"

    def __init__(self, solver: Literal["ghost", "loop"] = "ghost") -> None:
        """Raises: ValueError for an unknown solver."""
        if solver not in ("ghost", "loop"):
            raise ValueError(f"solver must be 'ghost' or 'loop', got {solver!r}")
        self.solver = solver

    def score(self, model: nn.Module, inputs: dict[str, torch.Tensor], labels: torch.Tensor) -> np.ndarray:
        """Args: model a VqaModel; inputs its batch (n, ...); labels (n,) long (-1 ignored) or (n, C) multi-hot.

        Returns: (L,) scores in `model.units` order, summing to 1.
        """
        return normalise(self.fisher_traces(model, inputs, labels))

    def fisher_traces(self, model: nn.Module, inputs: dict[str, torch.Tensor], labels: torch.Tensor) -> np.ndarray:
        """Raw (1/n) Σ_i ||∇_{θ_u} ℓ_i||² per unit (same arguments as `score`). Returns (L,) float64 ≥ 0."""
        n = int(labels.shape[0])
        if self.solver == "ghost" and labels.dim() == 1:
            grams = LntkScorer(kernel="grad", solver="ghost").grams(model, inputs, labels)  # [(n, n)] per unit
            return np.array([float(torch.diagonal(gram).sum()) for gram in grams]) / n
        return _per_sample_squares(model, inputs, labels) / n


def _per_sample_squares(model: nn.Module, inputs: dict[str, torch.Tensor], labels: torch.Tensor) -> np.ndarray:
    """Σ_i ||∇_{θ_u} ℓ_i||² per unit: one forward, one backward per sample. Returns (L,) float64."""
    with unit_tensors(model) as tensors, torch.enable_grad():
        totals = np.zeros(len(tensors))
        losses = unit_loss(model, inputs, labels, reduction="none")  # (n,)
        if not losses.requires_grad:  # no unit tensor reaches the loss
            return totals
        for index in range(losses.shape[0]):
            grads = gradients(losses[index], tensors, retain_graph=True)
            totals += unit_sums({unit: [grad.double().pow(2) for grad in unit_grads]
                                 for unit, unit_grads in grads.items()})
        return totals
