"""Gradient-norm importance: S^l ∝ ||∂L/∂θ^l||² of the mean loss on a client batch.

A cheap first-order proxy (the trace of the layer's empirical Fisher for one aggregated batch), used
by the spine's `top_k` selector until the LNTK scorer lands. θ^l are the tensors the unit would train
in the current unit mode: the block's weights (layer mode) or its LoRA tensors (adapter mode).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from torch import nn

from f3ocus.importance.base import normalise, preserved_state
from f3ocus.models.losses import mean_loss


class GradNormScorer:
    """Squared gradient norm of each unit's trainable tensors, normalised over units."""

    name: ClassVar[str] = "grad_norm"

    def score(self, model: nn.Module, inputs: dict[str, torch.Tensor], labels: torch.Tensor) -> np.ndarray:
        """Args: model a VqaModel; inputs its encoded batch (B, ...); labels (B,) long, -1 = outside the answer set,
        or (B, C) float multi-hot for a multi-label batch (BCE; the scores are normalised, so the loss's scale
        does not matter).

        Returns: (L,) scores in `model.units` order, summing to 1.
        """
        unit_names = model.unit_parameter_names()
        if not any(unit_names[unit] for unit in model.units):  # e.g. prompt mode: units own no tensor
            return normalise(np.zeros(len(model.units)))
        params = dict(model.named_parameters())
        with preserved_state(model):
            model.eval()  # no dropout noise in the score
            for param in params.values():
                param.requires_grad_(False)
                param.grad = None
            for unit in model.units:
                for name in unit_names[unit]:
                    params[name].requires_grad_(True)
            logits = model(**inputs).float()  # (B, A), or (B, C) multi-label logits; float32 under autocast too
            loss = mean_loss(logits, labels)
            grads = dict(zip(
                [n for u in model.units for n in unit_names[u]],
                torch.autograd.grad(loss, [params[n] for u in model.units for n in unit_names[u]], allow_unused=True),
            ))
        raw = [sum(float(g.pow(2).sum()) for n in unit_names[u] if (g := grads[n]) is not None) for u in model.units]
        return normalise(np.array(raw))
