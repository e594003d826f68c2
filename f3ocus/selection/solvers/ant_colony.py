"""Multi-objective Ant Colony Optimisation (ACO) on binary masks (docs/METHOD.md §3, one of the paper's five solvers).

pymoo has no ACO, hence this numpy implementation (MAX-MIN style, one colony per objective weighting).
Colony k has weight w_k on importance and its own pheromone τ_k (N, L). An ant builds a feasible mask
client by client (random client order): it draws client i's b_i units without replacement with probability
∝ τ_k[i, l]^α · η[l]^β, where the heuristic η = w_k · S_il / max_l S_il + (1 − w_k) / (1 + n_l) mixes the
score with how few clients already train unit l (n_l so far), and draws use the Gumbel-top-k trick.
After each iteration every τ_k evaporates and the archive member best for w_k (Tchebycheff) deposits on its
units; τ stays in [tau_min, 1]. The archive starts with the seeded population (`local_search.seeded_start`),
whose members lay the first pheromone, and gets the shared Pareto local search at the end.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from f3ocus.selection.archive import Archive, Front, SolverSettings, as_rng
from f3ocus.selection.solvers.local_search import finish, seeded_start
from f3ocus.selection.objectives import evaluate, normaliser, tchebycheff
from f3ocus.selection.problem import SelectionProblem


class AntColonySolver:
    """MAX-MIN multi-colony ACO.

    Args:
        n_colonies: number of objective weightings (colonies); ants are split evenly among them.
        alpha: pheromone exponent. beta: heuristic exponent.
        evaporation: ρ, the share of pheromone replaced by each deposit.
        tau_min: lower pheromone bound (keeps every unit reachable).
        seeding: start from the supported points (see `local_search.seeded_start`).
        local_search: share of max_evals kept for the archive's Pareto local search (0: none).
    """

    name: ClassVar[str] = "aco"

    def __init__(self, n_colonies: int = 10, alpha: float = 1.0, beta: float = 2.0, evaporation: float = 0.2,
                 tau_min: float = 0.02, seeding: bool = True, local_search: float = 0.2):
        self.seeding = seeding
        self.local_search = local_search
        self.n_colonies = n_colonies
        self.alpha = alpha
        self.beta = beta
        self.evaporation = evaporation
        self.tau_min = tau_min

    def solve(self, problem: SelectionProblem, rng: int | np.random.Generator | None,
              settings: SolverSettings | None = None) -> Front:
        """Seed, then iterations of pop_size ants each until settings.max_evals is spent (with the local search)."""
        settings, rng = settings or SolverSettings(), as_rng(rng)
        P, K = settings.pop_size, min(self.n_colonies, settings.pop_size)
        colony_weights = np.linspace(0.0, 1.0, K)  # (K,)
        colony = np.arange(P) % K  # (P,) colony of each ant
        tau = np.ones((K, problem.num_clients, problem.num_units))  # (K, N, L)
        X, spent, own = seeded_start(problem, settings, rng, self.seeding, self.local_search)  # (P, N·L)
        archive = Archive(settings.archive_size)
        archive.add(X, evaluate(X, problem))
        for _ in range(own // P - 1):
            tau = self._update(tau, colony_weights, archive, problem)
            X = self._construct(tau[colony], colony_weights[colony], problem, rng)  # (P, N·L)
            archive.add(X, evaluate(X, problem))
        return finish(archive, problem, settings, spent + own // P * P, self.local_search)

    def _construct(self, tau: np.ndarray, weights: np.ndarray, problem: SelectionProblem,
                   rng: np.random.Generator) -> np.ndarray:
        """Each ant (tau (P, N, L), weight (P,)) builds one feasible mask. Returns (P, N·L) bool."""
        P, N, L = tau.shape
        relative = problem.scores / np.maximum(problem.scores.max(axis=1, keepdims=True), 1e-300)  # (N, L)
        counts = np.zeros((P, L))  # (P, L) n_l so far
        blocks = np.zeros((P, N, L), dtype=bool)  # (P, N, L)
        for client in rng.permutation(N):
            eta = weights[:, None] * relative[client] + (1.0 - weights[:, None]) / (1.0 + counts)  # (P, L)
            logits = self.alpha * np.log(tau[:, client]) + self.beta * np.log(np.maximum(eta, 1e-12))  # (P, L)
            keys = logits + rng.gumbel(size=(P, L))  # (P, L) Gumbel-top-k = sampling without replacement
            chosen = np.argsort(-keys, axis=1)[:, :problem.budgets[client]]  # (P, b_i)
            np.put_along_axis(blocks[:, client], chosen, True, axis=1)
            np.put_along_axis(counts, chosen, np.take_along_axis(counts, chosen, axis=1) + 1, axis=1)
        return blocks.reshape(P, N * L)

    def _update(self, tau: np.ndarray, colony_weights: np.ndarray, archive: Archive,
                problem: SelectionProblem) -> np.ndarray:
        """Evaporate, deposit from each colony's best archive member, clip to [tau_min, 1]. Returns (K, N, L)."""
        ideal, scale = normaliser(archive.F)  # (2,), (2,)
        M, K = len(archive.F), len(colony_weights)
        values = tchebycheff(np.repeat(archive.F, K, axis=0), np.tile(colony_weights, M), ideal, scale)  # (M·K,)
        best = archive.X[values.reshape(M, K).argmin(axis=0)]  # (K, N·L)
        deposit = best.reshape(tau.shape).astype(float)  # (K, N, L)
        tau = (1.0 - self.evaporation) * tau + self.evaporation * deposit  # (K, N, L)
        return np.clip(tau, self.tau_min, 1.0)
