"""Binary multi-objective PSO (MOPSO) on masks (docs/METHOD.md §3, one of the paper's five solvers).

pymoo has no binary MOPSO, hence this numpy implementation. It follows Kennedy & Eberhart's binary PSO:
velocities v are real, bit j is set with probability sigmoid(v_j), and v accumulates the pulls towards the
particle's personal best and a leader (no inertia decay, |v| <= v_max, so converged bits stay put). The
sampled bits are repaired to exactly b_i per client with sigmoid(v) as the repair priority, then a small
swap turbulence is applied. Leaders come from the archive by binary tournament on crowding distance (less
crowded wins); personal bests follow Pareto dominance (ties: coin flip). Particles start at the seeded
population (`local_search.seeded_start`) and the archive gets the shared Pareto local search at the end.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pymoo.operators.survival.rank_and_crowding.metrics import calc_crowding_distance

from f3ocus.selection.archive import Archive, Front, SolverSettings, as_rng
from f3ocus.selection.solvers.local_search import finish, seeded_start
from f3ocus.selection.objectives import evaluate
from f3ocus.selection.operators import repair, swap_mutation
from f3ocus.selection.problem import SelectionProblem


class BinaryPsoSolver:
    """Binary MOPSO with archive leaders.

    Args:
        inertia: ω multiplying the previous velocity (1.0 = the original binary PSO).
        c_personal, c_social: acceleration towards the personal best / the leader.
        v_max: velocity clamp (sigmoid(4) ≈ 0.98).
        turbulence: per-client-block swap probability after the move.
        seeding: start from the supported points (see `local_search.seeded_start`).
        local_search: share of max_evals kept for the archive's Pareto local search (0: none).
    """

    name: ClassVar[str] = "mopso"

    def __init__(self, inertia: float = 1.0, c_personal: float = 1.5, c_social: float = 1.5, v_max: float = 4.0,
                 turbulence: float = 0.05, seeding: bool = True, local_search: float = 0.2):
        self.seeding = seeding
        self.local_search = local_search
        self.inertia = inertia
        self.c_personal = c_personal
        self.c_social = c_social
        self.v_max = v_max
        self.turbulence = turbulence

    def solve(self, problem: SelectionProblem, rng: int | np.random.Generator | None,
              settings: SolverSettings | None = None) -> Front:
        """Fly pop_size particles for settings.generations iterations."""
        settings, rng = settings or SolverSettings(), as_rng(rng)
        P, N, L = settings.pop_size, problem.num_clients, problem.num_units
        X, spent, own = seeded_start(problem, settings, rng, self.seeding, self.local_search)  # (P, N·L)
        F = evaluate(X, problem)  # (P, 2)
        V = 0.5 * self.v_max * (2.0 * X - 1.0)  # (P, N·L) start near the sampled positions
        best_X, best_F = X.copy(), F.copy()  # (P, N·L), (P, 2)
        archive = Archive(settings.archive_size)
        archive.add(X, F)
        for _ in range(own // P - 1):
            leaders = archive.X[_pick_leaders(archive.F, P, rng)]  # (P, N·L)
            V = self._velocity(V, X, best_X, leaders, rng)  # (P, N·L)
            prob = 1.0 / (1.0 + np.exp(-V))  # (P, N·L)
            raw = rng.random(prob.shape) < prob  # (P, N·L)
            X = repair(raw, problem.budgets, prob.reshape(P, N, L), rng)  # (P, N·L)
            X = swap_mutation(X, problem, self.turbulence, rng)  # (P, N·L)
            F = evaluate(X, problem)  # (P, 2)
            archive.add(X, F)
            best_X, best_F = _update_personal_best(best_X, best_F, X, F, rng)
        return finish(archive, problem, settings, spent + own // P * P, self.local_search)

    def _velocity(self, V: np.ndarray, X: np.ndarray, best_X: np.ndarray, leaders: np.ndarray,
                  rng: np.random.Generator) -> np.ndarray:
        """ω v + c1 r1 (pbest − x) + c2 r2 (leader − x), clipped to ±v_max. All (P, N·L)."""
        x = X.astype(float)  # (P, N·L)
        pull = (self.c_personal * rng.random(V.shape) * (best_X - x)
                + self.c_social * rng.random(V.shape) * (leaders - x))  # (P, N·L)
        return np.clip(self.inertia * V + pull, -self.v_max, self.v_max)


def _pick_leaders(F: np.ndarray, P: int, rng: np.random.Generator) -> np.ndarray:
    """P archive indices, each the less crowded of two random members (extremes have infinite crowding)."""
    if len(F) < 3:
        return rng.integers(0, len(F), size=P)
    crowding = calc_crowding_distance(F)  # (K,)
    a, b = rng.integers(0, len(F), size=P), rng.integers(0, len(F), size=P)  # (P,), (P,)
    return np.where(crowding[a] >= crowding[b], a, b)


def _update_personal_best(best_X: np.ndarray, best_F: np.ndarray, X: np.ndarray, F: np.ndarray,
                          rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Replace a personal best the new position dominates, or (coin flip) one it does not dominate either."""
    new_dominates = np.all(F <= best_F, axis=1) & np.any(F < best_F, axis=1)  # (P,)
    old_dominates = np.all(best_F <= F, axis=1) & np.any(best_F < F, axis=1)  # (P,)
    take = new_dominates | (~old_dominates & (rng.random(len(F)) < 0.5))  # (P,)
    return np.where(take[:, None], X, best_X), np.where(take[:, None], F, best_F)
