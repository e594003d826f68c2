"""NSGA-II for the F3OCUS problem through pymoo, with budget-feasible sampling, set crossover, swap mutation
and the shared repair (docs/METHOD.md §3: the paper's first and default solver).

pymoo's own BinaryRandomSampling / bit-flip operators ignore the per-client budgets; they are replaced by
the operators in `f3ocus.selection.operators`. The initial population is seeded (`local_search.seeded_start`:
the exact supported points, the LNTK-only mask, random masks), every evaluated population is fed to the
shared archive, so the returned front is not limited to the final population, and the archive is polished
by the shared Pareto local search at the end.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.callback import Callback
from pymoo.core.duplicate import DuplicateElimination
from pymoo.optimize import minimize

from f3ocus.selection.archive import Archive, Front, SolverSettings, as_rng
from f3ocus.selection.solvers.local_search import finish, seeded_start
from f3ocus.selection.objectives import MaskProblem
from f3ocus.selection.operators import BudgetCrossover, BudgetRepair, BudgetSwapMutation
from f3ocus.selection.problem import SelectionProblem


class _ArchiveCallback(Callback):
    """Feeds each generation's population into an `Archive`."""

    def __init__(self, archive: Archive):
        super().__init__()
        self.archive = archive

    def notify(self, algorithm) -> None:
        pop = algorithm.pop
        self.archive.add(pop.get("X").astype(bool), pop.get("F"))  # (P, N·L), (P, 2)


class _MaskDuplicateElimination(DuplicateElimination):
    """Exact duplicate test on packed bit rows (a set of bytes) instead of pymoo's O(P²·N·L) float cdist,
    which dominated the run time at 100 clients x 64 units."""

    def _do(self, pop, other, is_duplicate):
        seen = set() if other is None else {row.tobytes() for row in _packed(other)}
        for index, row in enumerate(_packed(pop)):
            key = row.tobytes()
            is_duplicate[index] = key in seen
            seen.add(key)
        return is_duplicate


def _packed(pop) -> np.ndarray:
    return np.packbits(pop.get("X").astype(bool), axis=1)  # (P, ceil(N·L / 8)) uint8


class Nsga2Solver:
    """NSGA-II (pymoo) on binary masks.

    Args:
        crossover_prob: probability a mating applies set crossover (else parents are copied).
        mutation_rate: per-client-block swap probability; None = 1/N (at least one swap per child).
        seeding: start from the supported points (see `local_search.seeded_start`).
        local_search: share of max_evals kept for the archive's Pareto local search (0: none).
    """

    name: ClassVar[str] = "nsga2"

    def __init__(self, crossover_prob: float = 0.9, mutation_rate: float | None = None, seeding: bool = True,
                 local_search: float = 0.2):
        self.crossover_prob = crossover_prob
        self.mutation_rate = mutation_rate
        self.seeding = seeding
        self.local_search = local_search

    def solve(self, problem: SelectionProblem, rng: int | np.random.Generator | None,
              settings: SolverSettings | None = None) -> Front:
        """Run NSGA-II for settings.max_evals evaluations in all; the seed for pymoo is drawn from `rng`."""
        settings, rng = settings or SolverSettings(), as_rng(rng)
        X, spent, own = seeded_start(problem, settings, rng, self.seeding, self.local_search)  # (P, N·L)
        seed = int(rng.integers(2**31 - 1))
        archive = Archive(settings.archive_size)
        algorithm = NSGA2(pop_size=settings.pop_size, sampling=X, repair=BudgetRepair(),
                          crossover=BudgetCrossover(self.crossover_prob),
                          mutation=BudgetSwapMutation(self.mutation_rate), eliminate_duplicates=_MaskDuplicateElimination())
        result = minimize(MaskProblem(problem), algorithm, ("n_eval", own), seed=seed,
                          callback=_ArchiveCallback(archive), copy_algorithm=False, verbose=False)
        return finish(archive, problem, settings, spent + result.algorithm.evaluator.n_eval, self.local_search)
