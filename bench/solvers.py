"""Benchmark of the F3OCUS front solvers: quality against the exact front, and wall time.

    python bench/solvers.py [--quick]

Quality: on random instances small enough to enumerate (3 clients x 8 units or 4 x 6, budgets 1-3), the
hypervolume of each solver's front as a fraction of the exact front's (exact = non-dominated set of all
feasible masks). Both objectives are normalised by the exact front's ideal and nadir points and the common
reference point is (1.1, 1.1) (pymoo HV). Time: one solve per solver at 9 x 32 and 100 x 64 (budgets 2-8),
with the default settings (`SolverSettings()`); there the HV is relative to the exact *supported* front of
the `flow` solver (normalised by its extremes), which can exceed 1 when a heuristic finds non-supported points.
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
from pymoo.indicators.hv import HV

from f3ocus.selection.archive import SolverSettings, non_dominated_unique
from f3ocus.selection.objectives import evaluate
from f3ocus.selection.problem import SelectionProblem
from f3ocus.selection.solvers import SOLVERS, build_solver

HEURISTICS = ("nsga2", "abc", "aco", "sa", "mopso")


def exact_front(problem: SelectionProblem) -> np.ndarray:
    """Minimised F (K, 2) of the non-dominated set of every feasible mask (full enumeration)."""
    L = problem.num_units
    blocks = [np.array([np.isin(np.arange(L), c) for c in itertools.combinations(range(L), b)])
              for b in problem.budgets]  # per client (C_i, L)
    index = np.array(list(itertools.product(*[range(len(b)) for b in blocks])))  # (K, N)
    X = np.concatenate([blocks[i][index[:, i]] for i in range(len(blocks))], axis=1)  # (K, N·L)
    F = evaluate(X, problem)  # (K, 2)
    return F[non_dominated_unique(F)]


def hv_ratio(F: np.ndarray, reference: np.ndarray) -> float:
    """HV(F) / HV(reference) after normalising by the reference front's ideal and nadir."""
    ideal, nadir = reference.min(axis=0), reference.max(axis=0)  # (2,), (2,)
    scale = np.where(nadir > ideal, nadir - ideal, 1.0)  # (2,)
    indicator = HV(ref_point=np.array([1.1, 1.1]))
    return float(indicator((F - ideal) / scale) / indicator((reference - ideal) / scale))


def random_problem(rng: np.random.Generator, N: int, L: int, low: int, high: int) -> SelectionProblem:
    """Dirichlet(1) score rows (each sums to 1), budgets uniform in [low, high]."""
    return SelectionProblem(rng.dirichlet(np.ones(L), N), rng.integers(low, high + 1, N))


def small_quality(n_instances: int) -> dict[str, list[float]]:
    """HV ratio to the exact front per solver on enumerable instances."""
    ratios: dict[str, list[float]] = {name: [] for name in SOLVERS}
    for seed in range(n_instances):
        N, L = (3, 8) if seed % 2 else (4, 6)
        problem = random_problem(np.random.default_rng(seed), N, L, 1, 3)
        exact = exact_front(problem)
        for name in SOLVERS:
            ratios[name].append(hv_ratio(build_solver(name).solve(problem, seed, SolverSettings()).F, exact))
    return ratios


def timed(N: int, L: int) -> dict[str, tuple[float, float]]:
    """(seconds, HV ratio to the flow front) per solver on one N x L instance."""
    problem = random_problem(np.random.default_rng(100 + N), N, L, 2, 8)
    results = {}
    for name in ("flow", *HEURISTICS):
        start = time.perf_counter()
        front = build_solver(name).solve(problem, 0, SolverSettings())
        results[name] = (time.perf_counter() - start, front.F)
    reference = results["flow"][1]
    return {name: (seconds, hv_ratio(F, reference)) for name, (seconds, F) in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 small instances and 9 x 32 only")
    args = parser.parse_args()
    quality = small_quality(4 if args.quick else 12)
    sizes = [(9, 32)] if args.quick else [(9, 32), (100, 64)]
    timings = {size: timed(*size) for size in sizes}
    header = "| solver | HV / exact, small (min / mean) |" + "".join(
        f" s @ {n}x{l} | HV / flow @ {n}x{l} |" for n, l in sizes)
    print(header)
    print("|" + "---|" * (2 + 2 * len(sizes)))
    for name in (*HEURISTICS, "flow"):
        row = f"| {name} | {min(quality[name]):.3f} / {np.mean(quality[name]):.3f} |"
        row += "".join(f" {timings[size][name][0]:.2f} | {timings[size][name][1]:.3f} |" for size in sizes)
        print(row)


if __name__ == "__main__":
    main()
