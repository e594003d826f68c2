"""Multi-objective Artificial Bee Colony (ABC) on binary masks (docs/METHOD.md §3, one of the paper's five solvers).

pymoo has no ABC, hence this numpy implementation. Food sources are feasible masks, each bound to a fixed
weight on the Tchebycheff scalarisation (weights spread over [0, 1]) so the colony covers the whole front;
every visited mask also goes to the shared non-dominated archive, which is what is returned.
Phases per cycle: employed bees (a neighbour of every source), onlookers (neighbours of sources picked by
Pareto rank), scouts (sources stuck for `limit` trials restart one swap away from the archive member
best for their weight). The archive starts with the seeded population (`local_search.seeded_start`), each
source at its member best for the source's weight, and gets the shared Pareto local search at the end.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from f3ocus.selection.archive import Archive, Front, SolverSettings, as_rng, best_for_weights
from f3ocus.selection.solvers.local_search import finish, seeded_start
from f3ocus.selection.objectives import evaluate, normaliser, tchebycheff
from f3ocus.selection.operators import swap_mutation
from f3ocus.selection.problem import SelectionProblem


class BeeColonySolver:
    """MO-ABC with a swap neighbourhood.

    Args:
        limit: failed improvement trials before a source is abandoned (scout phase).
        partner_rate: per-client probability of copying the partner source's block (the binary analogue of
            ABC's x + φ(x − x_k) step); the swap move is always applied on top.
        seeding: start from the supported points (see `local_search.seeded_start`).
        local_search: share of max_evals kept for the archive's Pareto local search (0: none).
    """

    name: ClassVar[str] = "abc"

    def __init__(self, limit: int = 8, partner_rate: float = 0.2, seeding: bool = True, local_search: float = 0.2):
        self.limit = limit
        self.partner_rate = partner_rate
        self.seeding = seeding
        self.local_search = local_search

    def solve(self, problem: SelectionProblem, rng: int | np.random.Generator | None,
              settings: SolverSettings | None = None) -> Front:
        """Run employed / onlooker / scout cycles until settings.max_evals evaluations are spent."""
        settings, rng = settings or SolverSettings(), as_rng(rng)
        S = max(settings.pop_size // 2, 2)  # food sources
        weights = np.linspace(0.0, 1.0, S)  # (S,) weight on importance per source
        start, spent, own = seeded_start(problem, settings, rng, self.seeding, self.local_search)  # (P, N·L)
        archive = Archive(settings.archive_size)
        archive.add(start, evaluate(start, problem))
        X, F = best_for_weights(archive, weights)  # (S, N·L), (S, 2)
        trials = np.zeros(S, dtype=int)  # (S,)
        n_evals = len(start)
        while n_evals + S <= own:
            employed = np.arange(S)  # (S,)
            onlookers = _pick_by_rank(F, rng)  # (S,)
            for sources in (employed, onlookers):
                if n_evals + S > own:
                    break
                n_evals += self._forage(sources, X, F, trials, weights, archive, problem, rng)
            n_evals += self._scout(X, F, trials, weights, archive, problem, rng, own - n_evals)
        return finish(archive, problem, settings, spent + n_evals, self.local_search)

    def _forage(self, sources: np.ndarray, X: np.ndarray, F: np.ndarray, trials: np.ndarray, weights: np.ndarray,
                archive: Archive, problem: SelectionProblem, rng: np.random.Generator) -> int:
        """One neighbour per entry of `sources`, greedy replacement on the source's weight. Mutates X, F, trials."""
        partners = rng.integers(0, len(X), size=len(sources))  # (S,)
        V = _neighbour(X[sources], X[partners], self.partner_rate, problem, rng)  # (S, N·L)
        FV = evaluate(V, problem)  # (S, 2)
        archive.add(V, FV)
        ideal, scale = normaliser(archive.F)  # (2,), (2,)
        new = tchebycheff(FV, weights[sources], ideal, scale)  # (S,)
        for row, source in enumerate(sources):  # sequential: onlookers may revisit a source
            if new[row] <= tchebycheff(F[source:source + 1], weights[source:source + 1], ideal, scale)[0]:
                improved = np.any(FV[row] < F[source])
                X[source], F[source] = V[row], FV[row]
                trials[source] = 0 if improved else trials[source] + 1
            else:
                trials[source] += 1
        return len(sources)

    def _scout(self, X: np.ndarray, F: np.ndarray, trials: np.ndarray, weights: np.ndarray, archive: Archive,
               problem: SelectionProblem, rng: np.random.Generator, budget_left: int) -> int:
        """Abandoned sources restart next to the archive member best for their weight. Returns evaluations spent."""
        stuck = np.flatnonzero(trials > self.limit)[:max(budget_left, 0)]  # (K,)
        if stuck.size == 0:
            return 0
        members, _ = best_for_weights(archive, weights[stuck])  # (K, N·L)
        X[stuck] = swap_mutation(members, problem, 1.0 / problem.num_clients, rng, force=True)
        F[stuck] = evaluate(X[stuck], problem)
        archive.add(X[stuck], F[stuck])
        trials[stuck] = 0
        return int(stuck.size)


def _neighbour(X: np.ndarray, partners: np.ndarray, partner_rate: float, problem: SelectionProblem,
               rng: np.random.Generator) -> np.ndarray:
    """Copy some client blocks from the partners, then at least one budget-keeping swap. Returns (S, N·L)."""
    S, N, L = len(X), problem.num_clients, problem.num_units
    copy = rng.random((S, N, 1)) < partner_rate  # (S, N, 1)
    V = np.where(copy, partners.reshape(S, N, L), X.reshape(S, N, L)).reshape(S, N * L)  # (S, N·L)
    return swap_mutation(V, problem, 1.0 / N, rng, force=True)


def _pick_by_rank(F: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Onlooker choice: roulette with probability ∝ 1 / (1 + Pareto rank). Returns (S,) source indices."""
    ranks = NonDominatedSorting().do(F, return_rank=True)[1]  # (S,)
    fitness = 1.0 / (1.0 + ranks)  # (S,)
    return rng.choice(len(F), size=len(F), p=fitness / fitness.sum())
