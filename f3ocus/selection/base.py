"""The selector role: (scores, budgets, rng) -> which units each client trains this round.

A selector sees only what the server may see: an (N, L) score matrix reported by the clients (or None
when it does not need scores) and the per-client budgets. It returns an (N, L) bool mask with exactly
`budgets[i]` True entries in row i (or every unit, for full fine-tuning). The F3OCUS solvers plug in
behind the same interface.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

import numpy as np

if TYPE_CHECKING:
    from f3ocus.config.schema import SelectionConfig


@dataclass(frozen=True)
class SelectionResult:
    """A selector's decision, plus its Pareto front when it solved a multi-objective problem.

    Attributes:
        masks: (N, L) bool, the chosen selection.
        front_F: (P, 2) objective values of the front (importance, variance), or None.
        front_masks: (P, N, L) bool masks of the front points (same order), or None.
        chosen: index of `masks` in the front, or None.
        n_evals: objective evaluations spent (0 for rule-based selectors).
        seconds: wall time of the decision.
    """

    masks: np.ndarray
    front_F: np.ndarray | None = None
    front_masks: np.ndarray | None = None
    chosen: int | None = None
    n_evals: int = 0
    seconds: float = 0.0


class Selector(Protocol):
    """Picks the units each client trains.

    `needs_scores`: the coordinator runs the scorers first (otherwise `scores` is None).
    `respects_budgets`: row i of the mask selects exactly `budgets[i]` units; False (full fine-tuning):
    every unit, so the coordinator checks the mask against L per client instead.
    """

    name: ClassVar[str]
    needs_scores: ClassVar[bool]
    respects_budgets: ClassVar[bool]

    @classmethod
    def from_config(cls, config: SelectionConfig | None = None, seed: int | None = None) -> Selector:
        """Build from the `selection` section (its knobs, for selectors that have some), or with the
        defaults when None; `seed` (the run's seed) seeds a selector's own random state, if it keeps one."""
        ...

    def select(self, scores: np.ndarray | None, budgets: np.ndarray, num_units: int,
               rng: np.random.Generator) -> SelectionResult:
        """Args: scores (N, L) float or None; budgets (N,) int; num_units L; rng. Returns: the decision."""
        ...


def check_mask(mask: np.ndarray, budgets: np.ndarray, num_units: int, *, exact: bool = True) -> None:
    """Raise ValueError unless `mask` is (N, L) bool and row i selects `budgets[i]` units (at most, if not exact)."""
    if mask.shape != (len(budgets), num_units) or mask.dtype != bool:
        raise ValueError(f"mask must be bool of shape {(len(budgets), num_units)}, got {mask.dtype} {mask.shape}")
    counts = mask.sum(axis=1)
    bad = np.flatnonzero(counts != budgets) if exact else np.flatnonzero(counts > budgets)
    if bad.size:
        raise ValueError(f"clients {bad.tolist()} select {counts[bad].tolist()} units, budgets {budgets[bad].tolist()}")


def top_k_mask(rank_keys: np.ndarray, budgets: np.ndarray) -> np.ndarray:
    """Row-wise top-`budgets[i]` of `rank_keys` (N, L); ties go to the lower unit index. Returns (N, L) bool."""
    mask = np.zeros(rank_keys.shape, dtype=bool)  # (N, L)
    for client, budget in enumerate(budgets):
        order = np.argsort(-rank_keys[client], kind="stable")  # (L,) best first
        mask[client, order[:budget]] = True
    return mask
