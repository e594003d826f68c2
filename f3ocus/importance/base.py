"""The client-side importance role: (model, a batch of local data) -> one score per selectable unit.

Scorers run on the client, on the current global model, every round. They must leave the model as
they found it: weights, `.grad`, `requires_grad` and train/eval mode. Higher means more important; the
scores of one client are normalised to sum to 1 (as the paper's S_i^l, docs/METHOD.md §2), so the server
can compare clients. The LNTK scorer of the F3OCUS issue implements this same interface.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import ClassVar, Iterator, Protocol

import numpy as np
import torch
from torch import nn


class ImportanceScorer(Protocol):
    """Scores every unit of `model` (a `VqaModel`) on `inputs`/`labels`; returns (L,) floats summing to 1."""

    name: ClassVar[str]

    def score(self, model: nn.Module, inputs: dict[str, torch.Tensor], labels: torch.Tensor) -> np.ndarray:
        ...


def normalise(raw: np.ndarray) -> np.ndarray:
    """S^l = raw^l / sum_k raw^k (docs/METHOD.md §2); all-zero input gives the uniform distribution."""
    raw = np.clip(np.asarray(raw, dtype=np.float64), 0.0, None)  # (L,)
    total = raw.sum()
    return raw / total if total > 0 else np.full_like(raw, 1.0 / raw.size)


@contextmanager
def preserved_state(model: nn.Module) -> Iterator[None]:
    """Restore `requires_grad`, `.grad` and train/eval mode of `model` on exit (weights are never written)."""
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    grads = [p.grad for p in params]
    training = model.training
    try:
        yield
    finally:
        for param, flag, grad in zip(params, flags, grads):
            param.requires_grad_(flag)
            param.grad = grad
        model.train(training)
