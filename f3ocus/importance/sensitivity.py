"""Parameter sensitivity: the paper's SPT baseline (He et al., ICCV 2023, "Sensitivity-aware visual
parameter-efficient fine-tuning").

SPT scores every parameter by the first-order Taylor estimate of the loss drop when that parameter
alone takes one gradient step, s_j = g_j² (g = ∂L/∂θ of the mean batch loss `unit_loss`), and tunes
the global top-τ fraction of parameters (the "sensitive" ones) across the whole model. Defined per
weight there; lifted to a unit by counting how many of the global top-τ parameters it holds:

    raw_u = |{j ∈ u : j among the ⌈τ P⌉ largest s over all unit tensors}| + ε · Σ_{j∈u} s_j / Σ_j s_j,

P the number of unit parameters. Only parameters with s_j > 0 count (a zero gradient is no
sensitivity). The second term (ε = `tie_weight` < 1) only orders units with equal counts, zero
included, by their share of the total sensitivity: it is below 1, so it never overturns a count.
Counting favours large units, as SPT's own per-matrix budget does. The gradient is that of the one
score batch; SPT accumulates g² over a few hundred samples. Memory: all P sensitivities are held at
once in float64 (8 bytes each) for the global top-τ.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from f3ocus.importance._unit_gradients import loss_gradients, unit_tensors
from f3ocus.importance.base import normalise

__all__ = ["SptScorer", "SPT_FRACTION"]

# τ: share of all unit parameters counted as sensitive. SPT's tuned budgets are ~0.5-1.5 % of a ViT-B's
# parameters; 1 % keeps the tiny presets' top set in the thousands.
SPT_FRACTION = 0.01


class SptScorer:
    """Count of each unit's parameters in the global top-τ of s_j = g_j², normalised over units.

    Attributes:
        fraction: τ, the share of unit parameters taken as the sensitive set (0 < τ ≤ 1).
        tie_weight: ε, weight of the sensitivity share that orders equal counts (0 ≤ ε < 1).
    """

    name: ClassVar[str] = "spt"

    def __init__(self, fraction: float = SPT_FRACTION, tie_weight: float = 1e-3) -> None:
        """Raises: ValueError for τ outside (0, 1] or ε outside [0, 1)."""
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        if not 0.0 <= tie_weight < 1.0:
            raise ValueError(f"tie_weight must be in [0, 1), got {tie_weight}")
        self.fraction = fraction
        self.tie_weight = tie_weight

    def score(self, model: nn.Module, inputs: dict[str, torch.Tensor], labels: torch.Tensor) -> np.ndarray:
        """Args: model a VqaModel; inputs its batch (B, ...); labels (B,) long or (B, C) multi-hot.

        Returns: (L,) scores in `model.units` order, summing to 1.
        """
        with unit_tensors(model) as tensors:
            grads = loss_gradients(model, inputs, labels, tensors)
        return normalise(self.counts(grads))

    def counts(self, grads: dict[str, list[torch.Tensor]]) -> np.ndarray:
        """raw_u (count + tie term) from the unit gradients {unit: [g per tensor]}. Returns (L,) float64."""
        device = next((grad.device for unit_grads in grads.values() for grad in unit_grads), torch.device("cpu"))
        parts = [torch.cat([grad.detach().double().pow(2).reshape(-1) for grad in unit_grads])
                 if unit_grads else torch.zeros(0, dtype=torch.float64, device=device) for unit_grads in grads.values()]
        sensitivity = torch.cat(parts)  # (P,)
        if sensitivity.numel() == 0:
            return np.zeros(len(parts))
        owner = torch.repeat_interleave(torch.arange(len(parts), device=sensitivity.device),
                                        torch.tensor([part.numel() for part in parts], device=sensitivity.device))
        top = torch.topk(sensitivity, math.ceil(self.fraction * sensitivity.numel())).indices
        top = top[sensitivity[top] > 0]
        counts = torch.bincount(owner[top], minlength=len(parts)).double()  # (L,)
        sums = torch.stack([part.sum() for part in parts])  # (L,)
        total = float(sums.sum())
        share = sums / total if total > 0 else torch.zeros_like(sums)
        return (counts + self.tie_weight * share).cpu().numpy()
