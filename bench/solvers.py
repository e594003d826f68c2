"""Benchmark of the F3OCUS front solvers against the exact Pareto front: hypervolume ratio and seconds.

    python bench/solvers.py                   # 5x32, 8x24, 10x32, 20x32, 50x64; 3 instances per score structure, 3 seeds
    python bench/solvers.py --quick           # 5x32, 8x24, 10x32; 2 instances, 2 seeds (~2 min)
    python bench/solvers.py --sizes 100x64 --instances 1 --seeds 1 --only nsga2    # the large case
    python bench/solvers.py --plain           # also each heuristic alone (no seeding, no local search)
    python bench/solvers.py --cli             # plus `f3ocus solve` wall time vs its reported solve time

Instances (`f3ocus.selection.synthetic.lntk_like_problem`): N clients x L units of peaked LNTK-like scores,
independent across clients ("ind") or sharing a per-unit component ("corr"), heterogeneous budgets in
[L/16, L/4]; instance k of a size and structure is drawn from SeedSequence([N, L, corr, k]).
Reference: the exact front (`ExactSolver`, given `--exact-limit` seconds per instance); where it runs out of
time, the best known front: the non-dominated union of the complete supported front (`flow`) and every front
any solver returned on that instance (marked "best-known"). HV: pymoo's hypervolume after normalising both
objectives by the reference front's ideal and nadir points, reference point (1.1, 1.1) (the nadir + 10 % of
the range); the ratio HV(solver) / HV(reference). Every solver at its defaults and the `f3ocus solve` /
`selection.*` default budget (pop_size 100, max_evals 10000, archive_size 100).
Times: wall (perf_counter) and CPU (process_time) seconds of one `solve` call. Prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from pymoo.indicators.hv import HV

from f3ocus.selection.archive import Archive, SolverSettings
from f3ocus.selection.objectives import evaluate
from f3ocus.selection.problem import SelectionProblem
from f3ocus.selection.solvers import SOLVERS, ExactSolver, build_solver
from f3ocus.selection.solvers.min_cost_flow import supported_front
from f3ocus.selection.synthetic import lntk_like_problem

HEURISTICS = ("nsga2", "abc", "aco", "sa", "mopso")
FULL_SIZES = ((5, 32), (8, 24), (10, 32), (20, 32), (50, 64))
SETTINGS = SolverSettings(pop_size=100, max_evals=10000, archive_size=100)


def instance(N: int, L: int, correlated: bool, k: int) -> SelectionProblem:
    """Instance k of one size and score structure."""
    return lntk_like_problem(np.random.default_rng([N, L, int(correlated), k]), N, L, correlated)


def hv_ratio(F: np.ndarray, reference: np.ndarray) -> float:
    """HV(F) / HV(reference) after normalising by the reference front's ideal and nadir (reference point 1.1)."""
    ideal, nadir = reference.min(axis=0), reference.max(axis=0)  # (2,), (2,)
    scale = np.where(nadir > ideal, nadir - ideal, 1.0)  # (2,)
    indicator = HV(ref_point=np.array([1.1, 1.1]))
    return float(indicator((F - ideal) / scale) / indicator((reference - ideal) / scale))


def timed_solve(solver, problem: SelectionProblem, seed: int):
    """(front, wall seconds, CPU seconds) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    front = solver.solve(problem, seed, SETTINGS)
    return front, time.perf_counter() - wall, time.process_time() - cpu


def make_solver(name: str):
    """A registered solver at its defaults, or "<heuristic>-plain": no seeding and no local search."""
    if name.endswith("-plain"):
        return SOLVERS[name.removesuffix("-plain")](seeding=False, local_search=0.0)
    return build_solver(name)


def run_instance(problem: SelectionProblem, names: list[str], seeds: int, exact_limit: float) -> dict:
    """Every solver x seed on one instance, measured against the exact (or best-known) front."""
    results = {name: [] for name in names}  # name -> [(front F, wall, cpu)]
    for name in names:
        for seed in range(1 if name == "flow" else seeds):
            front, wall, cpu = timed_solve(make_solver(name), problem, seed)
            results[name].append((front.F, wall, cpu))
    try:
        exact, wall, cpu = timed_solve(ExactSolver(time_limit=exact_limit), problem, 0)
        reference, kind, exact_time = exact.F, "exact", (wall, cpu)
    except TimeoutError:
        X, _ = supported_front(problem)
        archive = Archive(capacity=10**6)
        archive.add(X, evaluate(X, problem))
        for runs in results.values():
            for F, _, _ in runs:
                archive.add(np.zeros((len(F), problem.n_var), bool), F)  # masks not needed for the reference
        reference, kind, exact_time = archive.F, "best-known", None
    rows = {name: [(hv_ratio(F, reference), wall, cpu) for F, wall, cpu in runs] for name, runs in results.items()}
    return {"reference": kind, "points": len(reference), "exact_seconds": exact_time, "rows": rows}


def table(size: tuple[int, int], per_structure: dict[str, list[dict]], names: list[str]) -> str:
    """Markdown table of one size: per structure, HV ratio min / median and wall / CPU seconds median (max)."""
    head = "| solver |" + "".join(f" HV min / med ({s}) | wall s med (max) ({s}) | CPU s med ({s}) |"
                                  for s in per_structure)
    lines = [f"**{size[0]} x {size[1]}**", "", head, "|---|" + "---|---|---|" * len(per_structure)]
    for name in names:
        line = f"| {name} |"
        for runs in per_structure.values():
            v = np.array([row for run in runs for row in run["rows"][name]])  # (R, 3)
            line += (f" {v[:, 0].min():.4f} / {np.median(v[:, 0]):.4f} | {np.median(v[:, 1]):.2f} ({v[:, 1].max():.2f})"
                     f" | {np.median(v[:, 2]):.2f} |")
        lines.append(line)
    line = "| reference |"
    for runs in per_structure.values():
        kinds = sorted({run["reference"] for run in runs})
        points = [run["points"] for run in runs]
        times = [run["exact_seconds"][0] for run in runs if run["exact_seconds"]]
        spent = f"exact {min(times):.1f}-{max(times):.1f} s" if times else "-"
        line += f" {'/'.join(kinds)}, {min(points)}-{max(points)} points | {spent} | |"
    lines.append(line)
    return "\n".join(lines)


def cli_startup(problem: SelectionProblem, names: list[str]) -> str:
    """`f3ocus solve` wall time vs the solve time it reports, per algorithm (one call each)."""
    lines = ["| algorithm | `f3ocus solve` wall s | reported solve s | start-up + I/O s |", "|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as folder:
        scores, out = Path(folder) / "scores.npy", Path(folder) / "front.json"
        np.save(scores, problem.scores)
        budgets = ",".join(str(b) for b in problem.budgets)
        for name in names:
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "f3ocus.cli", "solve", "--scores", str(scores), "--budgets", budgets,
                            "--algorithm", name, "--out", str(out)], check=True)
            wall = time.perf_counter() - start
            seconds = json.loads(out.read_text())["seconds"]
            lines.append(f"| {name} | {wall:.2f} | {seconds:.2f} | {wall - seconds:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5x32, 8x24, 10x32; 2 instances, 2 seeds")
    parser.add_argument("--sizes", help="comma-separated NxL (default: 5x32,8x24,10x32,20x32,50x64)")
    parser.add_argument("--instances", type=int, help="instances per size and structure (default 3)")
    parser.add_argument("--seeds", type=int, help="solver seeds per instance (default 3)")
    parser.add_argument("--exact-limit", type=float, default=120.0, help="seconds for the exact front per instance")
    parser.add_argument("--only", help="comma-separated solver names (default: the five heuristics and flow)")
    parser.add_argument("--plain", action="store_true", help="also each heuristic without seeding / local search")
    parser.add_argument("--cli", action="store_true", help="also time `f3ocus solve` end to end at 10x32")
    args = parser.parse_args()
    sizes = ([tuple(int(x) for x in part.split("x")) for part in args.sizes.split(",")] if args.sizes
             else FULL_SIZES[:3] if args.quick else FULL_SIZES)
    instances = args.instances or (2 if args.quick else 3)
    seeds = args.seeds or (2 if args.quick else 3)
    names = args.only.split(",") if args.only else [*HEURISTICS, "flow"]
    if args.plain:
        names += [f"{name}-plain" for name in names if name in HEURISTICS]
    for size in sizes:
        per_structure = {}
        for structure in ("ind", "corr"):
            per_structure[structure] = [run_instance(instance(*size, structure == "corr", k), names, seeds,
                                                     args.exact_limit) for k in range(instances)]
        print(table(size, per_structure, names), "\n", flush=True)
    if args.cli:
        print(cli_startup(instance(10, 32, True, 0), [*HEURISTICS, "flow", "exact"]))


if __name__ == "__main__":
    main()
