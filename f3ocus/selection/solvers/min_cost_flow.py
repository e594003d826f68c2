"""Exact supported points of the F3OCUS front (`flow`): weighted sums solved as min-cost flows (beyond the paper).

For a weight w in [0, 1], minimising −w·importance + (1 − w)·variance is a convex-cost flow problem:
variance = (1/L) Σ_l n_l² − n̄² with n̄ = Σ_i b_i / L fixed, so the histogram cost is separable and convex
in n_l. Network: source -> client i (exactly b_i), client i -> unit l (capacity 1, cost −w·S_il), unit l ->
sink (convex cost (1 − w)/L · n_l²). A flow is optimal iff its residual graph has no negative cycle.

Here the residual graph is contracted onto the units: a client node is always entered from a unit it
trains and left to a unit it does not, so a residual cycle is a closed walk over units whose hop a -> b
is "some client i moves from unit a to unit b" (cheapest such client: cost w·(S_ia − S_ib)), plus a sink
node s with arcs s -> a (n_a falls by one: (1 − w)/L·(1 − 2 n_a)) and c -> s (n_c rises by one:
(1 − w)/L·(2 n_c + 1)). `improve` cancels negative cycles of this dense (L+1)-node graph (Bellman-Ford
on numpy arrays) until none is left, which proves optimality. Written here because no library offers
min-cost flow with float costs and convex arcs cheaply: networkx's network simplex is only exact on
integer costs, and a HiGHS MILP per weight (this module's previous version) took 0.1–1 s per point.

The front is traced by dichotomic (Aneja–Nair) search on the weight, each solve warm-started from the
nearer known point; that finds every extreme supported point. Non-supported points (in the gaps) are
out of reach of any weighted sum: `exact` adds them.
"""

from __future__ import annotations

from collections import deque
from typing import ClassVar

import numpy as np

from f3ocus.selection.archive import Archive, Front, SolverSettings
from f3ocus.selection.objectives import evaluate, square_sum
from f3ocus.selection.problem import SelectionProblem

_RELATIVE_TOLERANCE = 1e-12  # a cycle must gain more than this (relative to the cost scale) to be cancelled


def improve(mask: np.ndarray, problem: SelectionProblem, gain_weight: float, square_weight: float | None,
            ties_only: bool = False, face: np.ndarray | None = None) -> np.ndarray:
    """Cancel negative cycles until `mask` minimises −gain_weight·importance + square_weight·Σ n_l².

    Args:
        mask: (N, L) bool feasible start (not modified).
        gain_weight, square_weight: non-negative weights.
        ties_only: allow only moves between units of equal score for the moving client (importance fixed):
            from a max-importance mask this finds the flattest of the max-importance masks.
        face: (L+1,) shortest-path potentials of a Σ n_l²-only optimum (see `extremes`): keep Σ n_l² at its
            minimum (only arcs of zero reduced Σ n_l² cost) and maximise importance within that face.
            square_weight None: keep every unit's count n_l as it is (no sink arcs): the best mask for those counts.

    Returns:
        (N, L) bool optimal mask with the same row sums.
    """
    hops = _HopTable(np.array(mask, dtype=bool), problem.scores, gain_weight, ties_only)
    tolerance = _RELATIVE_TOLERANCE * (gain_weight * float(problem.scores.max(initial=0.0))
                                       + (square_weight or 0.0) * hops.mask.shape[0] + 1e-300)
    potentials = None
    while True:
        W = _with_sink(hops, square_weight, face)  # (L+1, L+1)
        cycle, potentials = negative_cycle(W, tolerance, potentials)
        if cycle is None:
            return hops.mask
        hops.apply(cycle)


class _HopTable:
    """The mask and, for every hop a -> b, the cheapest client that can make it, kept up to date incrementally.

    moves[a, b, i] = gain_weight·(S_ia − S_ib) if client i trains a and not b (else inf), laid out with clients
    last so the min over clients is a contiguous reduction; after a cycle only its movers' columns change, so
    only they (and the hops whose cheapest client was one of them) are recomputed.
    """

    def __init__(self, mask: np.ndarray, scores: np.ndarray, gain_weight: float, ties_only: bool):
        self.mask = mask  # (N, L)
        self.gain = gain_weight * (scores.T[:, None, :] - scores.T[None, :, :])  # (L, L, N) cost of i moving a -> b
        self.allowed = (scores.T[:, None, :] == scores.T[None, :, :]) if ties_only else None  # (L, L, N) or None
        self.moves = np.where(self._open(slice(None)), self.gain, np.inf)  # (L, L, N)
        self.mover = self.moves.argmin(axis=-1)  # (L, L)
        self.cost = np.take_along_axis(self.moves, self.mover[..., None], axis=-1)[..., 0]  # (L, L)

    def _open(self, clients) -> np.ndarray:
        """(L, L, C) whether each client can move a -> b (trains a, not b, and equal scores when ties_only)."""
        trains = self.mask[clients].T  # (L, C)
        ok = trains[:, None, :] & ~trains[None, :, :]  # (L, L, C)
        return ok if self.allowed is None else ok & self.allowed[:, :, clients]

    def apply(self, cycle: list[int]) -> None:
        """Make every hop of `cycle` (unit nodes; node L = sink) with its cheapest client, then refresh the table."""
        L = self.mask.shape[1]
        moved = []
        for a, b in zip(cycle, cycle[1:] + cycle[:1]):
            if a < L and b < L:
                client = int(self.mover[a, b])
                self.mask[client, a], self.mask[client, b] = False, True
                moved.append(client)
        moved = np.unique(moved)  # (C,)
        self.moves[:, :, moved] = np.where(self._open(moved), self.gain[:, :, moved], np.inf)
        stale = np.isin(self.mover, moved)  # (L, L) hops whose cheapest client changed: full recompute
        rows, cols = np.nonzero(stale)
        self.mover[rows, cols] = self.moves[rows, cols].argmin(axis=-1)
        self.cost[rows, cols] = self.moves[rows, cols, self.mover[rows, cols]]
        new = self.moves[:, :, moved]  # (L, L, C) the movers' new costs may undercut the others
        best = new.argmin(axis=-1)  # (L, L)
        value = np.take_along_axis(new, best[..., None], axis=-1)[..., 0]  # (L, L)
        better = value < self.cost
        self.mover = np.where(better, moved[best], self.mover)
        self.cost = np.where(better, value, self.cost)


def _with_sink(hops: _HopTable, square_weight: float | None, face: np.ndarray | None) -> np.ndarray:
    """Arc costs W (L+1, L+1) of the unit-contracted residual graph: hops, plus the sink node L (inf = no arc)."""
    N, L = hops.mask.shape
    W = np.full((L + 1, L + 1), np.inf)  # (L+1, L+1)
    W[:L, :L] = hops.cost
    if square_weight is None:
        return W  # counts fixed: no arc into or out of the sink
    counts = hops.mask.sum(axis=0)  # (L,)
    down = np.where(counts >= 1, 1.0 - 2.0 * counts, np.inf)  # (L,) Σn² change of n_a − 1 (s -> a)
    up = np.where(counts < N, 2.0 * counts + 1.0, np.inf)  # (L,) Σn² change of n_c + 1 (c -> s)
    if face is None:
        finite = square_weight > 0
        W[L, :L] = square_weight * down if finite else np.where(np.isinf(down), np.inf, 0.0)
        W[:L, L] = square_weight * up if finite else np.where(np.isinf(up), np.inf, 0.0)
        return W
    # Within the min-Σn² face: an arc may be used only if its reduced Σn² cost is 0 (hops cost 0 in Σn²).
    W[:L, :L] = np.where(face[:L, None] == face[None, :L], W[:L, :L], np.inf)
    W[L, :L] = np.where(down + face[L] - face[:L] == 0, 0.0, np.inf)
    W[:L, L] = np.where(up + face[:L] - face[L] == 0, 0.0, np.inf)
    return W


def negative_cycle(W: np.ndarray, tolerance: float,
                   start: np.ndarray | None = None) -> tuple[list[int] | None, np.ndarray]:
    """A cycle of total weight < −tolerance in the dense graph W (V, V) (inf = no arc), or None; and the
    Bellman-Ford distances (V,) (shortest-path potentials when there is no negative cycle).

    Bellman-Ford from a virtual source joined to node v at cost start[v] (default 0), all arcs relaxed at once
    per round. Any start vector is valid; the previous call's distances make a re-check after a small change
    converge in a few rounds. Every few rounds the predecessor graph is searched for a cycle (pointer
    jumping), so a short negative cycle is returned without waiting for round V.
    """
    V = len(W)
    dist = np.zeros(V) if start is None else np.minimum(start, 0.0)  # (V,)
    pred = np.full(V, -1)  # (V,)
    for round_idx in range(V + 1):
        candidate = dist[:, None] + W  # (V, V) via u -> v
        source = candidate.argmin(axis=0)  # (V,)
        best = candidate[source, np.arange(V)]  # (V,)
        changed = best < dist - tolerance  # (V,)
        if not changed.any():
            return None, dist
        dist = np.where(changed, best, dist)
        pred = np.where(changed, source, pred)
        if round_idx % 4 == 3 or round_idx >= V - 1:
            cycle = _predecessor_cycle(pred)
            if cycle is not None and sum(W[a, b] for a, b in zip(cycle, cycle[1:] + cycle[:1])) < -tolerance:
                return cycle, dist
    return None, dist  # not reached: after V rounds of changes the predecessor graph holds a negative cycle


def _predecessor_cycle(pred: np.ndarray) -> list[int] | None:
    """A cycle of the predecessor graph pred (V,) (−1 = none) in arc order, or None.

    Pointer jumping: after k squarings every node points 2^k steps back; with 2^k > V a node still away from
    the root (index V) sits on, or downstream of, a cycle.
    """
    V = len(pred)
    ancestor = np.append(np.where(pred < 0, V, pred), V)  # (V+1,) node V = the root
    for _ in range(int(np.ceil(np.log2(V + 1)))):
        ancestor = ancestor[ancestor]
    inside = np.flatnonzero(ancestor[:V] != V)  # (K,)
    if inside.size == 0:
        return None
    node = int(ancestor[inside[0]])  # on the cycle
    cycle = [node]
    while (node := int(pred[node])) != cycle[0]:
        cycle.append(node)
    cycle.reverse()  # pred points backwards: reverse into arc order
    return cycle


def solve_weighted(problem: SelectionProblem, weight: float, start: np.ndarray | None = None) -> np.ndarray:
    """An exact minimiser of −weight·importance + (1 − weight)·variance over feasible masks.

    Args:
        weight: w in [0, 1] on importance.
        start: optional (N·L,) or (N, L) feasible warm start (default: each client's top-b_i).

    Returns:
        (N·L,) bool optimal mask (client-major).
    """
    start = top_b_mask(problem) if start is None else np.reshape(start, (problem.num_clients, problem.num_units))
    return improve(start, problem, weight, (1.0 - weight) / problem.num_units).ravel()


def top_b_mask(problem: SelectionProblem) -> np.ndarray:
    """Each client's top-b_i units by score, ties to the lower unit index (the LNTK-only selection). (N, L) bool."""
    order = np.argsort(-problem.scores, axis=1, kind="stable")  # (N, L)
    mask = np.zeros(problem.scores.shape, dtype=bool)  # (N, L)
    np.put_along_axis(mask, order, np.arange(problem.num_units) < problem.budgets[:, None], axis=1)
    return mask


def extremes(problem: SelectionProblem) -> tuple[np.ndarray, np.ndarray]:
    """Lexicographic optima (N·L,) each: (max importance, then min variance), (min variance, then max importance).

    The first: the top-b_i mask, then only moves between equally scored units. The second: minimise Σ n_l²
    alone (integer arc costs, so exact), then maximise importance over the arcs that keep Σ n_l² minimal.
    """
    most_important = improve(top_b_mask(problem), problem, 1.0, 1.0, ties_only=True)
    flat = improve(most_important, problem, 0.0, 1.0)  # (N, L) some min-Σn² mask
    _, potentials = negative_cycle(_with_sink(_HopTable(flat, problem.scores, 0.0, False), 1.0, None), 0.5)
    flattest = improve(flat, problem, 1.0, 0.0, face=potentials)  # integer costs above: exact potentials
    return most_important.ravel(), flattest.ravel()


def supported_front(problem: SelectionProblem, max_solves: int | None = None) -> tuple[np.ndarray, int]:
    """Extreme supported points (K, N·L) bool by dichotomic search, flattest first, and the weighted solves spent.

    Args:
        max_solves: stop after this many weighted solves (None: all points). The search is breadth-first over
            the segments between known points, so a capped run returns points spread along the whole front.
    """
    left, right = extremes(problem)  # (N·L,), (N·L,)
    found = [left, right]
    F = [evaluate(left, problem)[0], evaluate(right, problem)[0]]  # (2,) each
    queue, n_solves = deque([(0, 1)]), 2
    while queue and (max_solves is None or n_solves < max_solves):
        a, b = queue.popleft()
        lam = np.array([F[a][1] - F[b][1], F[b][0] - F[a][0]])  # (2,) normal of segment a-b, >= 0
        if lam.sum() <= 0 or np.any(lam <= 0):
            continue
        mask = solve_weighted(problem, lam[0] / lam.sum(), start=found[a])  # minimises lam · F up to a constant
        n_solves += 1
        f_new = evaluate(mask, problem)[0]  # (2,)
        if lam @ f_new < lam @ F[a] - 1e-9 * (abs(lam @ F[a]) + 1.0):
            F.append(f_new)
            found.append(mask)
            queue.extend([(a, len(found) - 1), (len(found) - 1, b)])
    X = np.unique(np.array(found), axis=0)  # (K, N·L) the two extremes coincide when the front is one point
    order = np.argsort(square_sum(X, problem.num_units), kind="stable")  # (K,) flattest first
    return X[order], n_solves


class MinCostFlowSolver:
    """Exact extreme supported Pareto points by dichotomic weighted-sum search over min-cost flows."""

    name: ClassVar[str] = "flow"

    def solve(self, problem: SelectionProblem, rng: int | np.random.Generator | None = None,
              settings: SolverSettings | None = None) -> Front:
        """Every extreme supported point (rng and settings unused: deterministic, and no point cap).

        The front is returned whole: at 50 clients x 64 units it has a few hundred points (the earlier cap of
        `archive_size` = 100 cut it). Points lying strictly inside a hull edge are not returned.
        """
        X, n_solves = supported_front(problem)
        archive = Archive(capacity=len(X))
        archive.add(X, evaluate(X, problem))
        return archive.front(n_solves)
