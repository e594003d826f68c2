"""Exact whole Pareto front (`exact`): supported points by min-cost flow, the rest by ε-constraint MILPs.

The variance depends only on Σ_l n_l² (an integer of the parity of B = Σ_i b_i), so the front has at most
one point per level q of Σ n_l², and the point at level q is the most important mask with Σ n_l² <= q.
Between two consecutive supported points k, k+1 (Q_k < Q_{k+1}; `flow` finds all of them, 0.05 s at
10 x 32) every unsupported point lies in the triangle they span, so for q = Q_{k+1} − 2, then just below
each answer's Σ n_l², the solver asks HiGHS (scipy.optimize.milp) for

    max Σ_il S_il x_il   s.t.  Σ_l x_il = b_i,  Σ_i x_il = Σ_k y_lk,  Σ_lk (2k+1) y_lk <= q,
                               Σ_il S_il x_il >= floor + δ,  x in [0, 1],  y in {0, 1}

until it is infeasible (nothing at or below level q beats point k). y_lk = [n_l > k] makes the square exact
for integer n (costs 2k+1 rise, so the cheapest filling is the prefix); with y integral the x-part is a
transportation polytope (totally unimodular), so x stays continuous and HiGHS branches on the L·N y's only.
The mask is recovered by an exact max-weight transportation for the found unit counts.

Three things make it fast. The floor is the best known point at that level: the supported points polished
by the heuristics' Pareto local search, which is usually the exact front already, so most MILPs only prove
that nothing beats it; the cut then stands in for the incumbent scipy cannot hand HiGHS. Before each MILP
the LP relaxation fixes every variable whose reduced cost exceeds the bound's slack over the cut
(reduced-cost fixing), which removes most of them. And only levels inside the gaps are solved.

Why not something smarter: each level's problem is a min-cost flow with one extra (knapsack-like) row on
the unit counts, which no flow algorithm handles; the gaps between supported points are where that row
binds, and branch-and-bound over the y's is what closes them. Measured CPU seconds (docs/BENCHMARKS.md):
5 x 32 and 8 x 24 under 1 s, 10 x 32 up to ~2.5 s, 20 x 32 0.4–46 s (fronts of 40–300 points), 50 x 64
6–9 s with independent scores but over 500 s with correlated ones: a solver up to ~20 x 32, beyond that an
offline reference, with `time_limit`.
Exact up to HiGHS's tolerances: the objective is scaled to a top score of 100 and δ is 1e-5 there, so a
point better than another found at a lower level by less than ~1e-7 of the top score may be missed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import time
from typing import ClassVar, Iterator

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, linprog, milp
from scipy.sparse import csr_array, eye_array, hstack, kron, vstack

from f3ocus.selection.archive import Archive, Front, SolverSettings
from f3ocus.selection.objectives import evaluate, importance, square_sum
from f3ocus.selection.problem import SelectionProblem
from f3ocus.selection.solvers.local_search import pareto_local_search
from f3ocus.selection.solvers.min_cost_flow import improve, supported_front

# HiGHS stops at an absolute objective gap of 1e-6 (scipy exposes only the relative gap), so the objective
# is scaled to a top score of 100. Measured: a top score of 1 missed front points (11 of 12 at 10 x 32);
# 1e3-1e4 made HiGHS repair its postsolved solutions (and print about it on stdout) with no gain.
_OBJECTIVE_SCALE = 100.0


class ExactSolver:
    """The exact Pareto front, supported and unsupported points.

    Args:
        time_limit: seconds after which `solve` raises TimeoutError (None: no limit). It is checked between
            MILPs and passed to each one, so a run stops within about one MILP of the limit.
    """

    name: ClassVar[str] = "exact"

    def __init__(self, time_limit: float | None = None):
        self.time_limit = time_limit

    def solve(self, problem: SelectionProblem, rng: int | np.random.Generator | None = None,
              settings: SolverSettings | None = None) -> Front:
        """Every Pareto-optimal objective vector, one mask each (rng and settings unused: deterministic, no cap).

        Raises:
            TimeoutError: `time_limit` ran out.
        """
        deadline = None if self.time_limit is None else time.monotonic() + self.time_limit
        supported, n_solves = supported_front(problem)  # (K, N·L) flattest first
        levels = square_sum(supported, problem.num_units)  # (K,) increasing
        gains = importance(supported, problem.scores)  # (K,) increasing
        guesses = _guesses(problem, supported)  # candidates to prove or beat
        model = _EpsilonModel(problem)
        found = [supported]
        for k in range(len(supported) - 1):
            q = int(levels[k + 1]) - 2
            while q > levels[k]:
                guess = guesses.best_below(q, float(gains[k]))  # (N·L,) or None
                floor = float(gains[k]) if guess is None else float(importance(guess[None], problem.scores)[0])
                mask = model.best_below(q, floor, deadline)
                n_solves += 1
                mask = guess if mask is None else mask  # nothing above the guess: the guess is this level's best
                if mask is None:
                    break
                found.append(mask[None])
                q = int(square_sum(mask[None], problem.num_units)[0]) - 2
        X = np.concatenate(found)  # (P, N·L)
        archive = Archive(capacity=len(X))
        archive.add(X, evaluate(X, problem))
        return archive.front(n_solves)


class _Guesses:
    """A heuristic front (masks X (K, N·L), Σn² levels (K,), importances (K,)) to look up candidates in."""

    def __init__(self, X: np.ndarray, problem: SelectionProblem):
        self.X = X
        self.levels = square_sum(X, problem.num_units)  # (K,)
        self.gains = importance(X, problem.scores)  # (K,)

    def best_below(self, level: int, floor: float) -> np.ndarray | None:
        """The most important guess with Σn² <= level and importance > floor, or None."""
        ok = (self.levels <= level) & (self.gains > floor)  # (K,)
        return self.X[np.flatnonzero(ok)[np.argmax(self.gains[ok])]] if ok.any() else None


def _guesses(problem: SelectionProblem, supported: np.ndarray) -> _Guesses:
    """The supported points polished by the heuristics' Pareto local search (uncapped archive): usually the exact
    front already, so most MILPs below only have to prove that nothing beats the guess (a tight cut)."""
    archive = Archive(capacity=10**6)
    archive.add(supported, evaluate(supported, problem))
    pareto_local_search(archive, problem, max_evals=100 * len(supported) + 1000)
    return _Guesses(archive.X, problem)


class _EpsilonModel:
    """The ε-constraint MILP of one problem, built once; `best_below` solves it for one level and cut."""

    def __init__(self, problem: SelectionProblem):
        N, L = problem.num_clients, problem.num_units
        self.problem = problem
        self.scale = _OBJECTIVE_SCALE / max(float(problem.scores.max()), 1e-300)
        self.gain_row = np.concatenate([problem.scores.ravel(), np.zeros(L * N)]) * self.scale  # (N·L + L·N,)
        self.square_row = np.concatenate([np.zeros(N * L), np.tile(2.0 * np.arange(N) + 1.0, L)])  # Σ n_l² via y
        clients = hstack([kron(eye_array(N), np.ones((1, L))), csr_array((N, L * N))])  # Σ_l x_il = b_i
        units = hstack([kron(np.ones((1, N)), eye_array(L)), -kron(eye_array(L), np.ones((1, N)))])  # n_l = Σ_k y_lk
        rhs = np.concatenate([problem.budgets.astype(float), np.zeros(L)])  # (N + L,)
        self.flow = LinearConstraint(vstack([clients, units]).tocsr(), rhs, rhs)
        self.integrality = np.concatenate([np.zeros(N * L), np.ones(L * N)])  # branch on y only

    def best_below(self, level: int, floor: float, deadline: float | None) -> np.ndarray | None:
        """The most important mask (N·L,) with Σ n_l² <= level and importance > floor, or None if there is none."""
        options = {"mip_rel_gap": 0.0}
        if deadline is not None:
            options["time_limit"] = max(deadline - time.monotonic(), 0.0)
            if options["time_limit"] <= 0:
                raise TimeoutError("exact solver: time limit reached")
        cut = floor * self.scale + max(1e-9 * abs(floor * self.scale), 1e-5)  # strictly above the floor
        bounds = self._fixed_by_reduced_costs(level, cut)
        if bounds is None:
            return None
        constraints = [self.flow, LinearConstraint(csr_array(self.square_row[None]), -np.inf, level + 0.5),
                       LinearConstraint(csr_array(self.gain_row[None]), cut, np.inf)]
        with _quiet_stdout():
            result = milp(-self.gain_row, constraints=constraints, integrality=self.integrality, bounds=bounds,
                          options=options)
        if result.status == 1:  # time or node limit
            raise TimeoutError("exact solver: time limit reached")
        if result.x is None:  # infeasible: nothing in the gap at or below this level
            return None
        N, L = self.problem.num_clients, self.problem.num_units
        counts = np.round(result.x[N * L:].reshape(L, N).sum(axis=1)).astype(int)  # (L,) n_l
        mask = _transport(self.problem, counts, result.x[:N * L].reshape(N, L))
        if importance(mask.reshape(1, -1), self.problem.scores)[0] <= floor:
            return None  # only within HiGHS's tolerance of point k: not a better point
        return mask.ravel()

    def _fixed_by_reduced_costs(self, level: int, cut: float) -> Bounds | None:
        """Variable bounds for the MILP at `level` with the variables the LP relaxation proves fixed; None if even
        the relaxation cannot reach `cut`.

        Reduced-cost fixing: if moving a variable off its bound in the LP optimum costs more objective than
        the LP bound exceeds the cut by, no solution above the cut has it off that bound. HiGHS does this itself
        only against an incumbent, and scipy cannot hand it one; the cut here plays that part. Between two
        supported points the bound exceeds the cut by little, so most variables are fixed before branching.
        """
        lp = linprog(-self.gain_row, A_ub=self.square_row[None], b_ub=[level + 0.5], A_eq=self.flow.A,
                     b_eq=self.flow.lb, bounds=(0, 1), method="highs")
        if lp.status != 0:
            return None if lp.status == 2 else Bounds(0, 1)  # infeasible level; anything else: fix nothing
        slack = -lp.fun - cut  # how far the relaxation's bound is above the cut
        if slack < -1e-6:
            return None
        margin = slack + 1e-6 + 1e-9 * abs(lp.fun)  # fix only with room for the LP's own tolerances
        upper = np.where(lp.lower.marginals > margin, 0.0, 1.0)  # raising it from 0 would fall below the cut
        lower = np.where(-lp.upper.marginals > margin, 1.0, 0.0)  # lowering it from 1 likewise
        return Bounds(lower, np.maximum(upper, lower))

@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Send file descriptor 1 to /dev/null: HiGHS 1.x (scipy 1.17) prints a debug line
    ("HighsMipSolverData::transformNewIntegerFeasibleSolution tmpSolver.run();") straight to the C stdout when
    it repairs a postsolved solution, which would corrupt `f3ocus solve`'s JSON on stdout. C stdio buffers that
    line when stdout is a pipe or file, so the C streams are flushed (into /dev/null) before fd 1 is restored.
    Anything another thread writes to stdout during a MILP is discarded too (the coordinator logs to stderr)."""
    fd = 1  # the C library's stdout, whatever Python's sys.stdout is now
    sys.stdout.flush()
    _flush_c_streams()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), fd)
            yield
    finally:
        _flush_c_streams()
        os.dup2(saved, fd)
        os.close(saved)


def _flush_c_streams() -> None:
    """fflush(NULL): write out every C stdio buffer now."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).fflush(None)


def _transport(problem: SelectionProblem, counts: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The most important (N, L) bool mask with row sums b and column sums `counts`, from the MILP's x.

    HiGHS's x is a vertex of the transportation polytope and so already 0/1 up to tolerances; rounding it and
    cancelling the remaining importance-gaining cycles at fixed counts makes the answer exact whatever the LP
    returned.
    """
    mask = x > 0.5  # (N, L)
    if not (np.array_equal(mask.sum(axis=1), problem.budgets) and np.array_equal(mask.sum(axis=0), counts)):
        mask = _any_transport(problem.budgets, counts, x)
    return improve(mask, problem, 1.0, None)


def _any_transport(budgets: np.ndarray, counts: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Some 0/1 matrix with row sums `budgets` and column sums `counts` (Gale-Ryser greedy: each client, by
    descending x, fills the units with the most remaining demand first)."""
    N, L = len(budgets), len(counts)
    left = counts.copy()  # (L,)
    mask = np.zeros((N, L), dtype=bool)  # (N, L)
    for client in np.argsort(-budgets, kind="stable"):
        order = np.lexsort((-x[client], -left))  # (L,) most remaining demand first
        mask[client, order[:budgets[client]]] = True
        left[order[:budgets[client]]] -= 1
    if (left != 0).any():
        raise RuntimeError(f"exact solver: HiGHS returned unit counts {counts.tolist()} that no mask realises")
    return mask
