"""The F3OCUS server step as a selector (docs/METHOD.md §3–§4), and LNTK-only (the paper's client-only ablation).

`F3ocusSelector` builds the bi-objective problem from the reported scores, solves it with the configured
solver, picks one front point with the configured decision rule and returns it with the whole front.
Each client's revised ranking is its chosen units (by score) followed by the rest (by score); the client
trains its top-b_i of that ranking, which is exactly its row of the chosen mask (asserted).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from f3ocus.selection.base import SelectionResult, check_mask, top_k_mask
from f3ocus.selection.decide import choose
from f3ocus.selection.problem import SelectionProblem

if TYPE_CHECKING:
    from f3ocus.config.schema import SelectionConfig

log = logging.getLogger(__name__)


class F3ocusSelector:
    """Server-side bi-objective layer selection: max importance, min variance of the selection histogram.

    Args:
        solver: nsga2 | abc | aco | sa | mopso | flow | exact.
        pop_size, max_evals, archive_size: the shared solver budget (`SolverSettings`).
        decision: knee | pseudo_weights. decision_weight: importance weight for pseudo_weights.
    """

    name: ClassVar[str] = "f3ocus"
    needs_scores: ClassVar[bool] = True
    respects_budgets: ClassVar[bool] = True

    def __init__(self, solver: str = "nsga2", pop_size: int = 100, max_evals: int = 10000, archive_size: int = 100,
                 decision: str = "knee", decision_weight: float = 0.5):
        # Lazy: the solver stack imports pymoo and scipy (~1 s); the registry, and so config validation, must not.
        from f3ocus.selection.archive import SolverSettings
        from f3ocus.selection.solvers import build_solver

        self.solver = build_solver(solver)
        self.settings = SolverSettings(pop_size=pop_size, max_evals=max_evals, archive_size=archive_size)
        self.decision = decision
        self.decision_weight = decision_weight

    @classmethod
    def from_config(cls, config: SelectionConfig | None = None, seed: int | None = None) -> F3ocusSelector:
        """Build from the `selection` section (solver, pop_size, max_evals, archive_size, decision,
        decision_weight), or with the defaults above without one; `seed` is unused (the solvers draw from
        the round's generator)."""
        if config is None:
            return cls()
        return cls(solver=config.solver, pop_size=config.pop_size, max_evals=config.max_evals,
                   archive_size=config.archive_size, decision=config.decision, decision_weight=config.decision_weight)

    def select(self, scores: np.ndarray | None, budgets: np.ndarray, num_units: int,
               rng: np.random.Generator) -> SelectionResult:
        """Solve the round's problem and pick one front point.

        Args:
            scores: (N, L) non-negative; each row is normalised to sum to 1 (METHOD §2) before solving.
            budgets: (N,) int in [1, L]. num_units: L. rng: the round's generator.

        Returns:
            SelectionResult with masks (N, L), front_F (P, 2) as (importance, variance), front_masks (P, N, L),
            chosen, n_evals and seconds.

        Raises:
            ValueError: missing or invalid scores / budgets.
        """
        from f3ocus.selection.archive import as_rng
        from f3ocus.selection.objectives import to_objectives

        start = time.perf_counter()
        problem = SelectionProblem(normalise_rows(_require_scores(scores, self.name)), budgets)
        if problem.num_units != num_units:
            raise ValueError(f"scores have {problem.num_units} units, expected {num_units}")
        front = self.solver.solve(problem, as_rng(rng), self.settings)
        chosen = choose(front.F, self.decision, self.decision_weight)
        masks = front.masks(problem)  # (P, N, L)
        ranking = revised_ranking(masks[chosen], problem.scores)  # (N, L)
        trained = top_k_mask(-np.argsort(ranking, axis=1).astype(float), problem.budgets)  # (N, L) top-b of ranking
        assert np.array_equal(trained, masks[chosen]), "top-b of the revised ranking must equal the chosen mask"
        check_mask(masks[chosen], problem.budgets, num_units)
        log.info("f3ocus: solver=%s front=%d points, n_evals=%d", self.solver.name, len(front.F), front.n_evals)
        return SelectionResult(masks=masks[chosen].copy(), front_F=to_objectives(front.F), front_masks=masks,
                               chosen=chosen, n_evals=front.n_evals, seconds=time.perf_counter() - start)


class LntkOnlySelector:
    """LNTK-only: each client trains its own top-b_i units by score, no server step (the paper's ablation)."""

    name: ClassVar[str] = "lntk"
    needs_scores: ClassVar[bool] = True
    respects_budgets: ClassVar[bool] = True

    @classmethod
    def from_config(cls, config: SelectionConfig | None = None, seed: int | None = None) -> LntkOnlySelector:
        return cls()  # no knobs, no random state of its own

    def select(self, scores: np.ndarray | None, budgets: np.ndarray, num_units: int,
               rng: np.random.Generator) -> SelectionResult:
        """Row-wise top-b of the scores (ties -> lower unit index). Returns masks (N, L)."""
        start = time.perf_counter()
        values = np.asarray(_require_scores(scores, self.name), dtype=float)  # (N, L)
        return SelectionResult(top_k_mask(values, np.asarray(budgets)), seconds=time.perf_counter() - start)


def revised_ranking(mask: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per client, unit indices best first: the chosen units by descending score, then the others.

    Args:
        mask: (N, L) bool chosen selection. scores: (N, L).

    Returns:
        (N, L) int, row i a permutation of range(L) whose first b_i entries are client i's chosen units.
    """
    return np.lexsort((-scores, ~mask), axis=1)  # (N, L)


def normalise_rows(scores: np.ndarray) -> np.ndarray:
    """S_i / Σ_l S_il per row (METHOD §2); an all-zero row becomes uniform. Returns (N, L) float."""
    values = np.asarray(scores, dtype=float)  # (N, L)
    if values.ndim != 2:
        return values  # SelectionProblem reports the shape error
    totals = values.sum(axis=1, keepdims=True)  # (N, 1)
    return np.where(totals > 0, values / np.where(totals > 0, totals, 1.0), 1.0 / max(values.shape[1], 1))


def _require_scores(scores: np.ndarray | None, name: str) -> np.ndarray:
    if scores is None:
        raise ValueError(f"{name} needs an (N, L) score matrix")
    return scores
