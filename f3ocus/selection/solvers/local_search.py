"""What every F3OCUS heuristic adds to its own search: a seeded start and a Pareto local search on its archive.

Seeding (`seeded_sample`): the initial population holds the exact supported points of the front (the `flow`
solver's dichotomic search, capped at `max_solves` weighted solves), the LNTK-only selection (each client's
top-b_i: the max-importance end) and uniformly random feasible masks for the rest.

Local search (`pareto_local_search`): the neighbourhood of a mask is every budget-keeping swap of one unit
of one client (client i drops unit a, takes unit b). Its objective change is known in closed form:
Δimportance = S_ib − S_ia and ΔΣn² = 2 (n_b − n_a) + 2, the same for every client that can make the move.
So, per archive member, a vectorised max over the score matrix picks for each attainable ΔΣn² the swap that
keeps the most importance (at most 2N + 1 moves: one per value of n_b − n_a; ΔΣn² = 0 ones can
only improve the member itself); only those that would not be
dominated by the archive are built and evaluated (and counted in n_evals, like every other evaluation; the
scan itself reads the scores, as ACO's heuristic information does, and is not counted). New archive members
are expanded in turn until none appears or the evaluation budget is spent. From the supported points this
reaches 0.9998-1.0 of the exact front's hypervolume at 5 x 32, 8 x 24 and 10 x 32 in at most 200 evaluations.
"""

from __future__ import annotations

import numpy as np

from f3ocus.selection.archive import Archive, Front, SolverSettings
from f3ocus.selection.objectives import evaluate, square_sum
from f3ocus.selection.operators import sample
from f3ocus.selection.problem import SelectionProblem
from f3ocus.selection.solvers.min_cost_flow import supported_front

_CHUNK_ELEMENTS = 2_000_000  # members per chunk x N·L·L: bounds the move tensor at ~16 MB
# Size-aware seeding: the first weighted solves (between far-apart points) cost ~N·L² per cancelled cycle and
# many cycles, so the solves are capped at this over N·L²: all pop_size of them up to 50 x 64, 97 at 100 x 64
# (0.6-1.3 s there, of NSGA-II's ~5 s); the local search fills in from the points found.
_SEEDING_WORK = 40_000_000


def seeded_start(problem: SelectionProblem, settings: SolverSettings, rng: np.random.Generator, seeding: bool,
                 local_search: float) -> tuple[np.ndarray, int, int]:
    """A solver's first population and its share of the evaluation budget.

    Args:
        seeding: put the supported points in the population (at most min(pop_size, max_evals − pop_size,
            max(20, 4e7 / (N·L²))) weighted solves, one evaluation each); False: the top-b_i mask and random
            masks only.
        local_search: share of max_evals kept back for `pareto_local_search` at the end (0 disables it).

    Returns:
        X (pop_size, N·L) bool; evaluations the seeding spent; evaluations the solver's own loop may spend
        (counting its evaluation of X; a multiple of pop_size, at least pop_size).
    """
    P = settings.pop_size
    N, L = problem.num_clients, problem.num_units
    max_solves = min(P, settings.max_evals - P, max(20, _SEEDING_WORK // (N * L * L))) if seeding else 0
    X, spent = seeded_sample(P, problem, rng, max_solves)
    reserve = int(round(local_search * settings.max_evals))
    return X, spent, max(P, (settings.max_evals - spent - reserve) // P * P)


def finish(archive: Archive, problem: SelectionProblem, settings: SolverSettings, spent: int,
           local_search: float) -> Front:
    """The archive as the solver's Front, after a local search with whatever budget is left (if enabled)."""
    if local_search > 0:
        spent += pareto_local_search(archive, problem, settings.max_evals - spent)
    return archive.front(spent)


def seeded_sample(P: int, problem: SelectionProblem, rng: np.random.Generator,
                  max_solves: int | None) -> tuple[np.ndarray, int]:
    """P feasible masks: supported points (evenly thinned to P − 1 if more), the top-b_i mask, random masks.

    Args:
        P: rows wanted (>= 2).
        max_solves: weighted solves the supported-point search may spend (0: no supported points).

    Returns:
        (P, N·L) bool, the seeds first; and the number of weighted solves spent (each evaluated one mask).
    """
    # DEVIATION: the paper does not say how populations start; seeding them with the exact supported points
    # is what lets every solver reach the exact front's hypervolume at 32 units within a second.
    seeds, n_solves = supported_front(problem, max_solves) if max_solves else (np.zeros((0, problem.n_var), bool), 0)
    if len(seeds) > P - 1:
        seeds = seeds[np.unique(np.linspace(0, len(seeds) - 1, P - 1).round().astype(int))]  # (<= P−1, N·L)
    rest = sample(P - len(seeds), problem, rng)  # (P − K, N·L), row 0 the top-b_i mask
    return np.concatenate([seeds, rest]), n_solves


def pareto_local_search(archive: Archive, problem: SelectionProblem, max_evals: int) -> int:
    """Expand archive members by their best swap per ΔΣn² until nothing new enters or max_evals is spent.

    Args:
        archive: non-dominated archive, updated in place.
        max_evals: most candidate evaluations to spend.

    Returns:
        Evaluations spent.
    """
    spent, expanded = 0, set()
    while spent < max_evals:
        fresh = [row for row in range(len(archive.X)) if archive.X[row].tobytes() not in expanded]
        if not fresh:
            break
        expanded.update(archive.X[row].tobytes() for row in fresh)
        candidates = _promising_moves(archive, problem, np.array(fresh))[:max_evals - spent]  # (C, N·L)
        if len(candidates) == 0:
            continue
        archive.add(candidates, evaluate(candidates, problem))
        spent += len(candidates)
    return spent


def _promising_moves(archive: Archive, problem: SelectionProblem, rows: np.ndarray) -> np.ndarray:
    """Best swap per (member, ΔΣn²) of archive rows `rows`, kept only if the archive does not dominate it."""
    N, L = problem.num_clients, problem.num_units
    levels = square_sum(archive.X, L)  # (K,)
    order = np.argsort(levels, kind="stable")  # (K,)
    attained = np.maximum.accumulate(-archive.F[order, 0])  # (K,) best importance at Σn² <= levels[order]
    tolerance = 1e-12 * max(1.0, float(np.abs(attained).max(initial=0.0)))  # ties in importance are not better
    chunk = max(1, _CHUNK_ELEMENTS // (N * L * L))
    found = []
    for start in range(0, len(rows), chunk):
        masks = archive.X[rows[start:start + chunk]].reshape(-1, N, L)  # (M, N, L)
        gain, square, who, a, b = _best_swap_per_level(masks, problem)  # (C,) each; member index in `who[:, 0]`
        member = who[:, 0]
        new_gain = -archive.F[rows[start + member], 0] + gain  # (C,)
        new_level = levels[rows[start + member]] + square  # (C,)
        slot = np.searchsorted(levels[order], new_level, side="right") - 1  # (C,) last archive level <= new
        beaten = np.where(slot >= 0, attained[np.maximum(slot, 0)], -np.inf)  # (C,)
        keep = new_gain > beaten + tolerance  # (C,) not dominated by (nor equal to) an archive point
        moved = masks[member[keep]].copy()  # (C', N, L)
        idx = np.arange(len(moved))
        moved[idx, who[keep, 1], a[keep]] = False
        moved[idx, who[keep, 1], b[keep]] = True
        found.append(moved.reshape(len(moved), N * L))
    return np.concatenate(found) if found else np.zeros((0, N * L), dtype=bool)


def _best_swap_per_level(masks: np.ndarray, problem: SelectionProblem):
    """For masks (M, N, L): per member and per distinct ΔΣn² of a swap, the swap with the largest Δimportance.

    Returns:
        gain (C,), square (C,) int ΔΣn², who (C, 2) (member, client), a (C,) dropped unit, b (C,) taken unit.
    """
    M, N, L = masks.shape
    scores = problem.scores
    moves = np.where(masks[:, :, :, None] & ~masks[:, :, None, :],
                     scores[None, :, None, :] - scores[None, :, :, None], -np.inf)  # (M, N, L, L) a -> b
    client = moves.argmax(axis=1)  # (M, L, L) best client per (a, b)
    gain = np.take_along_axis(moves, client[:, None], axis=1)[:, 0]  # (M, L, L)
    counts = masks.sum(axis=1)  # (M, L)
    square = 2 * (counts[:, None, :] - counts[:, :, None]) + 2  # (M, L, L) ΔΣn² of a -> b
    member, a, b = np.nonzero(np.isfinite(gain))  # (V,) each
    g, q = gain[member, a, b], square[member, a, b]  # (V,)
    order = np.lexsort((-g, q, member))  # (V,) by member, ΔΣn², best gain first
    first = np.ones(len(order), dtype=bool)
    first[1:] = (member[order][1:] != member[order][:-1]) | (q[order][1:] != q[order][:-1])
    pick = order[first]  # (C,)
    return (g[pick], q[pick], np.column_stack([member[pick], client[member[pick], a[pick], b[pick]]]),
            a[pick], b[pick])


__all__ = ["seeded_start", "finish", "seeded_sample", "pareto_local_search"]
