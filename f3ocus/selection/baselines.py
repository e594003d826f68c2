"""The simple selectors every comparison needs: full fine-tuning, random, first-k, last-k, top-k by score.

Unit order is `VqaModel.units` (input side first: vision, connector, q-former, language), so first-k
trains the blocks nearest the pixels and last-k the blocks nearest the answer head.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from f3ocus.selection.base import SelectionResult, top_k_mask


class FullSelector:
    """Full fine-tuning: every client trains every unit (budgets are ignored)."""

    name: ClassVar[str] = "full"
    needs_scores: ClassVar[bool] = False
    respects_budgets: ClassVar[bool] = False

    def select(self, scores: np.ndarray | None, budgets: np.ndarray, num_units: int,
               rng: np.random.Generator) -> SelectionResult:
        return SelectionResult(np.ones((len(budgets), num_units), dtype=bool))  # (N, L)


class RandomSelector:
    """Each client trains `budget` units drawn uniformly without replacement, fresh every round."""

    name: ClassVar[str] = "random"
    needs_scores: ClassVar[bool] = False

    def select(self, scores: np.ndarray | None, budgets: np.ndarray, num_units: int,
               rng: np.random.Generator) -> SelectionResult:
        keys = rng.random((len(budgets), num_units))  # (N, L)
        return SelectionResult(top_k_mask(keys, budgets))


class FirstKSelector:
    """Each client trains its first `budget` units (nearest the input)."""

    name: ClassVar[str] = "first_k"
    needs_scores: ClassVar[bool] = False

    def select(self, scores: np.ndarray | None, budgets: np.ndarray, num_units: int,
               rng: np.random.Generator) -> SelectionResult:
        return SelectionResult(top_k_mask(np.tile(-np.arange(num_units, dtype=float), (len(budgets), 1)), budgets))


class LastKSelector:
    """Each client trains its last `budget` units (nearest the answer head)."""

    name: ClassVar[str] = "last_k"
    needs_scores: ClassVar[bool] = False

    def select(self, scores: np.ndarray | None, budgets: np.ndarray, num_units: int,
               rng: np.random.Generator) -> SelectionResult:
        return SelectionResult(top_k_mask(np.tile(np.arange(num_units, dtype=float), (len(budgets), 1)), budgets))


class TopKSelector:
    """Each client trains its own `budget` highest-scoring units; no server-side coordination."""

    name: ClassVar[str] = "top_k"
    needs_scores: ClassVar[bool] = True

    def select(self, scores: np.ndarray | None, budgets: np.ndarray, num_units: int,
               rng: np.random.Generator) -> SelectionResult:
        if scores is None:
            raise ValueError("top_k needs an (N, L) score matrix")
        return SelectionResult(top_k_mask(np.asarray(scores, dtype=float), budgets))

