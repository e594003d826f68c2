"""Exact reference solver (`flow`): the supported points of the F3OCUS front via min-cost flow (beyond the paper).

For a weight w in [0, 1], minimising −w·importance + (1 − w)·variance is a convex-cost transportation
problem: variance = (1/L) Σ_l n_l² − n̄² and n̄ = Σ_i b_i / L is fixed, so the histogram cost is separable
and convex in n_l. Network: source -> client i (capacity b_i), client i -> unit l (capacity 1, cost −w·S_il),
unit l -> sink through N unit-capacity arcs whose k-th arc costs (1 − w)/L · ((k+1)² − k²) (increasing, so
cheaper arcs fill first and the total is (1 − w)/L · n_l²).

Solved with scipy.optimize.milp (HiGHS) on that network's arc variables rather than networkx: networkx's
network simplex is only guaranteed with integer costs and would need the float scores scaled and rounded.
The constraint matrix is a network matrix (totally unimodular), so the LP relaxation is already integral and
HiGHS finishes at the root; integrality is still declared, so a degenerate LP answer can never leak a
fractional mask. The two lexicographic extremes add one side constraint (then milp branches if it must).
The front is traced by dichotomic (Aneja–Nair) search on the weight, which finds every extreme supported
point; non-supported points (in the gaps) are out of reach of any weighted sum and are not returned.
"""

from __future__ import annotations

from collections import deque
from typing import ClassVar

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import csr_array, eye_array, hstack, kron, vstack

from f3ocus.selection.archive import Archive, Front, SolverSettings
from f3ocus.selection.objectives import evaluate
from f3ocus.selection.problem import SelectionProblem


def solve_weighted(problem: SelectionProblem, weight: float, side: tuple | None = None) -> np.ndarray:
    """An exact minimiser of −weight·importance + (1 − weight)·variance over feasible masks.

    Args:
        weight: w in [0, 1] on importance.
        side: optional extra constraint (row (N·L + L·N,), lower, upper) on the arc variables.

    Returns:
        (N·L,) bool optimal mask (client-major).
    """
    N, L = problem.num_clients, problem.num_units
    costs = np.concatenate([-weight * problem.scores.ravel(), (1.0 - weight) / L * _square_increments(N, L)])
    A, lower, upper = _network(problem)
    if side is not None:
        A = vstack([A, csr_array(side[0][None, :])])
        lower, upper = np.append(lower, side[1]), np.append(upper, side[2])
    result = milp(costs, constraints=LinearConstraint(A, lower, upper), integrality=np.ones(len(costs)),
                  bounds=Bounds(0, 1), options={"mip_rel_gap": 0.0})
    if result.x is None:
        raise RuntimeError(f"min-cost flow failed: {result.message}")
    return np.round(result.x[:N * L]).astype(bool)


def _square_increments(N: int, L: int) -> np.ndarray:
    """(L·N,) cost of the k-th unit of flow into unit l: (k+1)² − k² = 2k + 1, unit-major."""
    return np.tile(2.0 * np.arange(N) + 1.0, L)


def _network(problem: SelectionProblem):
    """Flow conservation on variables [x (N·L) client->unit arcs, y (L·N) unit->sink arcs]."""
    N, L = problem.num_clients, problem.num_units
    client_rows = hstack([kron(eye_array(N), np.ones((1, L))), csr_array((N, L * N))])  # Σ_l x_il = b_i
    unit_rows = hstack([kron(np.ones((1, N)), eye_array(L)), -kron(eye_array(L), np.ones((1, N)))])  # in = out
    A = vstack([client_rows, unit_rows]).tocsr()  # (N + L, N·L + L·N)
    rhs = np.concatenate([problem.budgets.astype(float), np.zeros(L)])  # (N + L,)
    return A, rhs, rhs


def _extremes(problem: SelectionProblem) -> tuple[np.ndarray, np.ndarray]:
    """Lexicographic optima: (max importance, then min variance) and (min variance, then max importance)."""
    N, L = problem.num_clients, problem.num_units
    squares = np.concatenate([np.zeros(N * L), _square_increments(N, L)])  # row giving Σ_l n_l²
    gains = np.concatenate([problem.scores.ravel(), np.zeros(L * N)])  # row giving importance
    best = np.sort(problem.scores, axis=1)[:, ::-1]  # (N, L)
    top = sum(best[i, :b].sum() for i, b in enumerate(problem.budgets))
    most_important = solve_weighted(problem, 0.0, (gains, top - 1e-9 * max(top, 1.0), np.inf))
    flattest = solve_weighted(problem, 0.0)
    level = float(np.sum(evaluate(flattest, problem)[0, 1] * L + (problem.budgets.sum() ** 2) / L))  # Σ n_l²
    flattest = solve_weighted(problem, 1.0, (squares, -np.inf, np.round(level) + 0.5))
    return most_important, flattest


class MinCostFlowSolver:
    """Exact supported Pareto points by dichotomic weighted-sum search over min-cost flow problems."""

    name: ClassVar[str] = "flow"

    def solve(self, problem: SelectionProblem, rng: int | np.random.Generator | None = None,
              settings: SolverSettings | None = None) -> Front:
        """Trace up to settings.archive_size supported points (rng unused: the method is deterministic)."""
        settings = settings or SolverSettings()
        left, right = _extremes(problem)  # (N·L,), (N·L,)
        found = [left, right]
        F = {0: evaluate(left, problem)[0], 1: evaluate(right, problem)[0]}
        queue, n_solves = deque([(0, 1)]), 4
        while queue and len(found) < settings.archive_size:
            a, b = queue.popleft()
            lam = np.array([F[a][1] - F[b][1], F[b][0] - F[a][0]])  # (2,) normal of segment a-b, >= 0
            if lam.sum() <= 0 or np.any(lam < 0):
                continue
            mask = solve_weighted(problem, lam[0] / lam.sum())  # minimises lam · F up to a constant
            n_solves += 1
            f_new = evaluate(mask, problem)[0]  # (2,)
            if lam @ f_new < lam @ F[a] - 1e-9 * (abs(lam @ F[a]) + 1.0):
                F[len(found)] = f_new
                found.append(mask)
                queue.extend([(a, len(found) - 1), (len(found) - 1, b)])
        archive = Archive(capacity=len(found))
        archive.add(np.array(found), np.array([F[k] for k in range(len(found))]))
        return archive.front(n_solves)
