"""Multi-objective simulated annealing (SA) on binary masks (docs/METHOD.md §3, one of the paper's five solvers).

pymoo has no SA, hence this numpy implementation. `pop_size` independent chains run in lock-step (one
vectorised evaluation per step). Each chain minimises a Tchebycheff scalarisation whose weight rotates:
every `rotate_every` steps the chains get a freshly shifted, evenly spread set of weights and restart from
the archive member best for their new weight (the archive-driven restart of AMOSA). Moves are
budget-keeping swaps; acceptance is Metropolis with a geometric temperature schedule. Every visited mask
goes to the shared non-dominated archive, which is what is returned. Chains start from the seeded
population (`local_search.seeded_start`) and the archive gets the shared Pareto local search at the end.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from f3ocus.selection.archive import Archive, Front, SolverSettings, as_rng, best_for_weights
from f3ocus.selection.solvers.local_search import finish, seeded_start
from f3ocus.selection.objectives import evaluate, normaliser, tchebycheff
from f3ocus.selection.operators import swap_mutation
from f3ocus.selection.problem import SelectionProblem


class AnnealingSolver:
    """Scalarised multi-chain SA with rotating weights.

    Args:
        start_temperature: initial temperature, in units of the archive-normalised Tchebycheff value (~[0, 1]).
        end_temperature: final temperature.
        rotate_every: steps between weight rotations / archive restarts.
        seeding: start from the supported points (see `local_search.seeded_start`).
        local_search: share of max_evals kept for the archive's Pareto local search (0: none).
    """

    name: ClassVar[str] = "sa"

    def __init__(self, start_temperature: float = 0.05, end_temperature: float = 1e-4, rotate_every: int = 10,
                 seeding: bool = True, local_search: float = 0.2):
        self.start_temperature = start_temperature
        self.end_temperature = end_temperature
        self.rotate_every = rotate_every
        self.seeding = seeding
        self.local_search = local_search

    def solve(self, problem: SelectionProblem, rng: int | np.random.Generator | None,
              settings: SolverSettings | None = None) -> Front:
        """Anneal pop_size chains for settings.max_evals evaluations in total."""
        settings, rng = settings or SolverSettings(), as_rng(rng)
        P = settings.pop_size
        X, spent, own = seeded_start(problem, settings, rng, self.seeding, self.local_search)  # (P, N·L)
        F = evaluate(X, problem)  # (P, 2)
        archive = Archive(settings.archive_size)
        archive.add(X, F)
        steps = own // P - 1
        cooling = (self.end_temperature / self.start_temperature) ** (1.0 / max(steps, 1))
        temperature = self.start_temperature
        for step in range(steps):
            if step % self.rotate_every == 0:
                weights = (np.arange(P) + rng.random()) / P  # (P,) stratified, shifted each rotation
                X, F = best_for_weights(archive, weights)  # (P, N·L), (P, 2)
            Y = swap_mutation(X, problem, 1.0 / problem.num_clients, rng, force=True)  # (P, N·L)
            FY = evaluate(Y, problem)  # (P, 2)
            archive.add(Y, FY)
            ideal, scale = normaliser(archive.F)  # (2,), (2,)
            delta = tchebycheff(FY, weights, ideal, scale) - tchebycheff(F, weights, ideal, scale)  # (P,)
            take = (delta <= 0) | (rng.random(P) < np.exp(-np.maximum(delta, 0) / temperature))  # (P,)
            X, F = np.where(take[:, None], Y, X), np.where(take[:, None], FY, F)
            temperature *= cooling
        return finish(archive, problem, settings, spent + P * (steps + 1), self.local_search)
