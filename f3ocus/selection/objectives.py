"""The two F3OCUS objectives (docs/METHOD.md §3) as vectorised pure functions, plus the pymoo `Problem` adapter.

Decision matrix X is (P, N·L) bool: row p is a flattened (N, L) mask, client-major. F is (P, 2) and
minimised, as pymoo expects: F[:, 0] = −importance, F[:, 1] = histogram variance.
"""

from __future__ import annotations

import numpy as np
from pymoo.core.problem import Problem

from f3ocus.selection.problem import SelectionProblem


def importance(X: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Objective 1 (maximised): Σ_i Σ_l m_il S_il per row of X.

    Args:
        X: (P, N·L) bool decision matrix.
        scores: (N, L) float.

    Returns:
        (P,) float total selected importance.
    """
    return np.asarray(X, dtype=float) @ scores.ravel()  # (P,)


def histogram(X: np.ndarray, L: int) -> np.ndarray:
    """n_l = Σ_i m_il: how many clients train unit l. X (P, N·L) bool -> (P, L) int."""
    P = X.shape[0]
    return X.reshape(P, -1, L).sum(axis=1)  # (P, L)


def square_sum(X: np.ndarray, L: int) -> np.ndarray:
    """Σ_l n_l² per row of X (P, N·L) bool -> (P,) int64: the exact integer the variance is a function of."""
    counts = histogram(X, L).astype(np.int64)  # (P, L)
    return np.einsum("pl,pl->p", counts, counts)  # (P,)


def variance_from_squares(squares: np.ndarray, total: np.ndarray | int, L: int) -> np.ndarray:
    """(1/L) Σ_l (n_l − n̄)² = (L·Σ n_l² − (Σ n_l)²) / L², from the integers Σ n_l² (P,) and Σ n_l (P,) or ().

    The numerator is an exact integer and the one division is correctly rounded, so two masks with the same
    Σ n_l² (and the same budgets) get bit-identical variances and compare equal in the archive. numpy's
    `var` sums (n_l − n̄)² in float: when L is not a power of two n̄ is inexact, and histograms with the same
    Σ n_l² came out one ulp apart, which kept exactly dominated points on the fronts.
    """
    numerator = L * np.asarray(squares, dtype=np.int64) - np.asarray(total, dtype=np.int64) ** 2  # (P,) exact
    return numerator / float(L * L)  # (P,)


def histogram_variance(X: np.ndarray, L: int) -> np.ndarray:
    """Objective 2 (minimised): population variance (1/L) Σ_l (n_l − n̄)² of the selection histogram.

    Computed from the integer Σ n_l² (`variance_from_squares`), so equal histograms' square sums give equal floats.

    Args:
        X: (P, N·L) bool decision matrix.
        L: number of units.

    Returns:
        (P,) float.
    """
    X = np.asarray(X)
    total = X.reshape(X.shape[0], -1).sum(axis=1)  # (P,) Σ_l n_l = Σ_i (units client i selected)
    return variance_from_squares(square_sum(X, L), total, L)  # (P,)


def evaluate(X: np.ndarray, problem: SelectionProblem) -> np.ndarray:
    """F (P, 2) = (−importance, variance) for X (P, N·L) bool; both columns minimised."""
    X = np.atleast_2d(X)  # (P, N·L)
    return np.column_stack([-importance(X, problem.scores), histogram_variance(X, problem.num_units)])  # (P, 2)


def to_objectives(F: np.ndarray) -> np.ndarray:
    """Minimised F (P, 2) -> reported (importance, variance) (P, 2), i.e. the first column un-negated."""
    return np.column_stack([-F[:, 0], F[:, 1]]) if len(F) else np.zeros((0, 2))  # (P, 2)


def tchebycheff(F: np.ndarray, weights: np.ndarray, ideal: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Weighted Tchebycheff value max_k w_k (F_k − z*_k) / s_k, row-wise.

    DEVIATION: the paper's ABC / ACO / SA are not specified in detail; ours decompose the front with this
    scalarisation (one weight per source / colony / chain). Unlike a weighted sum it reaches non-supported
    Pareto points, which the histogram variance (a
    discrete, non-convex front) has many of.

    Args:
        F: (P, 2) minimised objectives.
        weights: (P,) weight on objective 0 (importance); 1 − w goes to variance.
        ideal: (2,) reference point z*; scale: (2,) positive normalisers.

    Returns:
        (P,) float, lower is better.
    """
    W = np.column_stack([weights, 1.0 - weights])  # (P, 2)
    return np.max(W * (F - ideal) / scale, axis=1)  # (P,)


def normaliser(F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ideal point (2,) and positive per-objective range (2,) of a set of points F (K, 2)."""
    ideal = F.min(axis=0)  # (2,)
    span = F.max(axis=0) - ideal  # (2,)
    return ideal, np.where(span > 1e-12, span, 1.0)


class MaskProblem(Problem):
    """pymoo view of a `SelectionProblem`: N·L binary variables, two minimised objectives, no constraints.

    Budgets are enforced by `BudgetRepair` (exactly b_i ones per client block), so no G is declared:
    every evaluated individual is feasible.
    """

    def __init__(self, selection: SelectionProblem):
        super().__init__(n_var=selection.n_var, n_obj=2, xl=0, xu=1, vtype=bool)
        self.selection = selection

    def _evaluate(self, X, out, *args, **kwargs):
        out["F"] = evaluate(np.asarray(X, dtype=bool), self.selection)  # (P, 2)

