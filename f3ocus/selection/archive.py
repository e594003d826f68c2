"""What every F3OCUS solver shares besides the operators: the non-dominated archive, the `Front` it
returns, and the common budget (`SolverSettings`: population size, evaluation budget, archive bound).

The archive keeps only mutually non-dominated, distinct solutions (pymoo `NonDominatedSorting`), one per
objective vector, bounded by dropping the most crowded points (pymoo crowding distance, extremes kept).
Its contents are sorted by objective, so the same inputs always give the same front.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pymoo.operators.survival.rank_and_crowding.metrics import calc_crowding_distance
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from f3ocus.selection.objectives import normaliser, tchebycheff
from f3ocus.selection.problem import SelectionProblem


@dataclass(frozen=True)
class SolverSettings:
    """Budget shared by the heuristics (`flow` and `exact` read none of it: they return their whole front).

    Attributes:
        pop_size: individuals / ants / bees / chains / particles per iteration.
        max_evals: objective evaluations before stopping (generations = max_evals // pop_size).
        archive_size: most points kept on the returned front.
    """

    pop_size: int = 100
    max_evals: int = 20000
    archive_size: int = 100

    def __post_init__(self) -> None:
        if self.pop_size < 2 or self.max_evals < self.pop_size or self.archive_size < 2:
            raise ValueError(f"need pop_size >= 2, max_evals >= pop_size, archive_size >= 2; got {self}")

    @property
    def generations(self) -> int:
        """Iterations of pop_size evaluations each that fit in max_evals."""
        return self.max_evals // self.pop_size


@dataclass(frozen=True)
class Front:
    """A solver's answer: non-dominated feasible masks and their minimised objectives.

    Attributes:
        X: (K, N·L) bool, sorted by F[:, 0] (most important first).
        F: (K, 2) float, (−importance, variance).
        n_evals: objective evaluations spent (for `flow`: weighted solves; for `exact`: weighted solves + MILPs).
    """

    X: np.ndarray
    F: np.ndarray
    n_evals: int

    def masks(self, problem: SelectionProblem) -> np.ndarray:
        """(K, N, L) bool view of X."""
        return self.X.reshape(len(self.X), problem.num_clients, problem.num_units)


class Archive:
    """Bounded external archive of mutually non-dominated, distinct solutions."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.X = np.zeros((0, 0), dtype=bool)  # (K, N·L)
        self.F = np.zeros((0, 2))  # (K, 2)

    def add(self, X: np.ndarray, F: np.ndarray) -> None:
        """Merge candidates X (P, N·L) with objectives F (P, 2) and keep the bounded non-dominated set."""
        X = np.asarray(X, dtype=bool)  # (P, N·L)
        if self.X.shape[1] != X.shape[1]:
            self.X = np.zeros((0, X.shape[1]), dtype=bool)  # (0, N·L)
        X_all = np.concatenate([self.X, X])  # (K+P, N·L)
        F_all = np.concatenate([self.F, F])  # (K+P, 2)
        keep = non_dominated_unique(F_all)  # (K',)
        keep = keep[truncate_by_crowding(F_all[keep], self.capacity)]  # (<= capacity,)
        order = np.lexsort((F_all[keep, 1], F_all[keep, 0]))  # (K',) by −importance, then variance
        self.X, self.F = X_all[keep[order]], F_all[keep[order]]

    def front(self, n_evals: int) -> Front:
        """The archive as a `Front` (copies)."""
        return Front(self.X.copy(), self.F.copy(), int(n_evals))


def non_dominated_unique(F: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated rows of F (P, 2), one per distinct objective vector (first wins).

    Identical masks have identical objectives, so this also removes duplicate masks.
    """
    if len(F) == 0:
        return np.zeros(0, dtype=int)
    _, first = np.unique(np.round(F, 12), axis=0, return_index=True)  # (U,)
    first = np.sort(first)  # (U,)
    front = NonDominatedSorting().do(F[first], only_non_dominated_front=True)  # (K,)
    return first[np.sort(front)]


def truncate_by_crowding(F: np.ndarray, capacity: int) -> np.ndarray:
    """Indices (<= capacity,) that survive removing the smallest-crowding point one at a time.

    Removing one by one and recomputing (rather than cutting once) keeps the spread even; the two
    extremes have infinite crowding distance and are never removed.
    """
    alive = np.arange(len(F))  # (K,)
    while len(alive) > capacity:
        crowding = calc_crowding_distance(F[alive])  # (K,)
        alive = np.delete(alive, int(np.argmin(crowding)))
    return alive


def as_rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    """A Generator from a seed, or the Generator itself (never the global numpy state)."""
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def best_for_weights(archive: Archive, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The archive member with the best Tchebycheff value for each weight (K,): X (K, N·L), F (K, 2) (copies).

    ABC's scouts and SA's restarts both continue from these members.
    """
    ideal, scale = normaliser(archive.F)  # (2,), (2,)
    M, K = len(archive.F), len(weights)
    values = tchebycheff(np.repeat(archive.F, K, axis=0), np.tile(weights, M), ideal, scale)  # (M·K,)
    best = values.reshape(M, K).argmin(axis=0)  # (K,)
    return archive.X[best].copy(), archive.F[best].copy()
