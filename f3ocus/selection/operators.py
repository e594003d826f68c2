"""Budget-preserving variation operators shared by every F3OCUS solver: sampling, repair, crossover, mutation.

All of them keep every client block of a decision vector at exactly b_i ones, so solvers never see an
infeasible mask. Each exists as a pure function on arrays (used by the numpy solvers); repair, crossover and
mutation also as thin pymoo operators (used by NSGA-II, whose first population is an array from
`solvers.local_search.seeded_start`). Randomness comes only from the passed `np.random.Generator` (pymoo 0.6.2
hands its `random_state` Generator to operators, so `minimize(..., seed=)` stays reproducible).
"""

from __future__ import annotations

import numpy as np
from pymoo.core.crossover import Crossover
from pymoo.core.mutation import Mutation
from pymoo.core.repair import Repair

from f3ocus.selection.problem import SelectionProblem


def top_b(keys: np.ndarray, budgets: np.ndarray) -> np.ndarray:
    """Per (row, client) block, mark the `budgets[i]` largest keys (ties -> lower unit index).

    A threshold (the b_i-th largest key, from one unstable sort of the values) replaces a stable argsort of
    indices: 3-4x faster at 100 x 64, which made set crossover the largest cost of NSGA-II there.

    Args:
        keys: (P, N, L) float.
        budgets: (N,) int.

    Returns:
        (P, N, L) bool with exactly budgets[i] True in every block of client i.
    """
    L = keys.shape[-1]
    ordered = np.sort(keys, axis=-1)  # (P, N, L) ascending
    threshold = np.take_along_axis(ordered, np.broadcast_to((L - budgets)[:, None], keys.shape[:-1] + (1,)),
                                   axis=-1)  # (P, N, 1) the b_i-th largest
    above = keys > threshold  # (P, N, L)
    ties = keys == threshold  # (P, N, L)
    missing = budgets[:, None] - above.sum(axis=-1, keepdims=True)  # (P, N, 1) how many ties to keep
    return above | (ties & (np.cumsum(ties, axis=-1) <= missing))  # lower-index ties first


def repair(X: np.ndarray, budgets: np.ndarray, scores: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Make every client block hold exactly b_i ones, changing as few bits as possible.

    Rule: within client i's block, rank units by (currently selected first, then higher score, then a
    uniform random key from `rng` to break exact score ties) and keep the top b_i. So a block with too
    many ones drops its lowest-scored selected units, a block with too few adds the highest-scored
    unselected units, and a feasible block is unchanged.

    Args:
        X: (P, N·L) bool (or 0/1) decision matrix; not modified.
        budgets: (N,) int.
        scores: (N, L) priority (client scores), or (P, N, L) per-row priority (e.g. PSO probabilities).
        rng: source of the tie-breaking keys.

    Returns:
        (P, N·L) bool, feasible.
    """
    N, L = len(budgets), np.shape(scores)[-1]
    P = X.shape[0]
    blocks = np.array(X, dtype=bool).reshape(P, N, L)  # (P, N, L) copy
    rows = np.flatnonzero((blocks.sum(axis=2) != budgets).any(axis=1))  # (R,) rows needing repair
    if rows.size == 0:
        return blocks.reshape(P, N * L)
    priority = np.broadcast_to(scores, blocks.shape)[rows]  # (R, N, L)
    ties = rng.random((rows.size, N, L))  # (R, N, L)
    order = np.lexsort((ties, -priority, ~blocks[rows]), axis=-1)  # (R, N, L) best first
    keep = np.arange(L) < budgets[:, None]  # (N, L)
    fixed = np.zeros((rows.size, N, L), dtype=bool)  # (R, N, L)
    np.put_along_axis(fixed, order, np.broadcast_to(keep, order.shape), axis=-1)
    blocks[rows] = fixed
    return blocks.reshape(P, N * L)


def sample(P: int, problem: SelectionProblem, rng: np.random.Generator, include_top_k: bool = True) -> np.ndarray:
    """P feasible masks: uniformly random b_i-subsets per client, the first row optionally each client's top-b_i.

    The top-b_i row is the LNTK-only selection (maximum importance); seeding it anchors that end of the
    front at no cost.

    Returns:
        (P, N·L) bool.
    """
    keys = rng.random((P, problem.num_clients, problem.num_units))  # (P, N, L)
    # DEVIATION: the paper does not say how populations start; we seed the LNTK-only mask (one row) so every
    # solver's front contains the client-only selection or something that dominates it.
    if include_top_k and P > 0:
        keys[0] = problem.scores + 1e-9 * keys[0]  # random tie-breaking among equal scores
    return top_b(keys, problem.budgets).reshape(P, problem.n_var)  # (P, N·L)


def swap_mutation(X: np.ndarray, problem: SelectionProblem, rate: float, rng: np.random.Generator,
                  force: bool = False) -> np.ndarray:
    """With probability `rate` per client block, swap one selected unit for one unselected unit.

    Args:
        X: (P, N·L) bool feasible; not modified.
        rate: per-block swap probability.
        force: guarantee at least one swap per row (a neighbour that differs), when any block can swap.

    Returns:
        (P, N·L) bool, same budgets as X.
    """
    N, L = problem.num_clients, problem.num_units
    P = X.shape[0]
    blocks = np.array(X, dtype=bool).reshape(P, N, L)  # (P, N, L) copy
    movable = problem.budgets < L  # (N,) a full block has nothing to swap in
    pick = (rng.random((P, N)) < rate) & movable  # (P, N)
    if force and movable.any():
        forced = rng.choice(np.flatnonzero(movable), size=P)  # (P,)
        pick[np.arange(P), forced] = True
    rows, clients = np.nonzero(pick)  # (K,), (K,) only the picked blocks draw keys
    chosen = blocks[rows, clients]  # (K, L)
    keys = rng.random(chosen.shape)  # (K, L)
    drop = np.argmax(np.where(chosen, keys, -1.0), axis=-1)  # (K,) a random selected unit
    add = np.argmax(np.where(chosen, -1.0, keys), axis=-1)  # (K,) a random unselected unit
    blocks[rows, clients, drop] = False
    blocks[rows, clients, add] = True
    return blocks.reshape(P, N * L)


def set_crossover(A: np.ndarray, B: np.ndarray, problem: SelectionProblem, rng: np.random.Generator) -> np.ndarray:
    """Child per client: every unit both parents chose, filled up to b_i at random from units either chose.

    Args:
        A, B: (P, N·L) bool feasible parents.

    Returns:
        (P, N·L) bool feasible children.
    """
    P = A.shape[0]
    shape = (P, problem.num_clients, problem.num_units)
    # float32 keys halve the sort's memory traffic; a tie (p ~ L²/2^25 per block) only biases to the lower index
    keys = A.reshape(shape).astype(np.float32) + B.reshape(shape) + rng.random(shape, dtype=np.float32)  # (P, N, L)
    return top_b(keys, problem.budgets).reshape(P, problem.n_var)


class BudgetRepair(Repair):
    """pymoo wrapper of `repair`, scores as the priority."""

    def _do(self, problem, X, random_state=None, **kwargs):
        rng = random_state if random_state is not None else np.random.default_rng(0)
        return repair(X, problem.selection.budgets, problem.selection.scores, rng)


class BudgetCrossover(Crossover):
    """pymoo wrapper of `set_crossover`: two parents -> two independently drawn children."""

    def __init__(self, prob: float = 0.9):
        super().__init__(n_parents=2, n_offsprings=2, prob=prob)

    def _do(self, problem, X, *args, random_state=None, **kwargs):
        A, B = np.asarray(X[0], dtype=bool), np.asarray(X[1], dtype=bool)  # (M, N·L) each
        first = set_crossover(A, B, problem.selection, random_state)  # (M, N·L)
        second = set_crossover(A, B, problem.selection, random_state)  # (M, N·L)
        return np.stack([first, second])  # (2, M, N·L)


class BudgetSwapMutation(Mutation):
    """pymoo wrapper of `swap_mutation`; `rate` None means 1/N per client block (one swap per child on average)."""

    def __init__(self, rate: float | None = None):
        super().__init__(prob=1.0)
        self.rate = rate

    def _do(self, problem, X, *args, random_state=None, **kwargs):
        selection = problem.selection
        rate = self.rate if self.rate is not None else 1.0 / selection.num_clients
        return swap_mutation(np.asarray(X, dtype=bool), selection, rate, random_state, force=True)
