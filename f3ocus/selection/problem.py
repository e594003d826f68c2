"""The F3OCUS server problem as data: client scores (N, L) and budgets (N,), validated once (docs/METHOD.md §3).

Everything downstream (objectives, operators, solvers, the CLI) takes a `SelectionProblem`, so malformed
input is rejected here with one clear message instead of deep inside a solver.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class SelectionProblem:
    """N clients choosing exactly `budgets[i]` of L units each.

    Attributes:
        scores: (N, L) float, non-negative per-unit importance S_il reported by client i (METHOD §2
            normalises each row to sum to 1; this class does not require it).
        budgets: (N,) int, 1 <= budgets[i] <= L.

    Raises:
        ValueError: ragged / non-2-D / empty / NaN / infinite / negative scores, a budget outside
            [1, L], a non-integer budget, or a budgets count different from the number of clients.
    """

    scores: Any
    budgets: Any

    def __post_init__(self) -> None:
        scores = _as_score_matrix(self.scores)  # (N, L)
        budgets = _as_budgets(self.budgets, scores.shape)  # (N,)
        scores.setflags(write=False)
        budgets.setflags(write=False)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "budgets", budgets)

    @property
    def num_clients(self) -> int:
        """N."""
        return int(self.scores.shape[0])

    @property
    def num_units(self) -> int:
        """L."""
        return int(self.scores.shape[1])

    @property
    def n_var(self) -> int:
        """N·L, the length of one flattened decision vector."""
        return int(self.scores.size)


def _as_score_matrix(scores: Any) -> np.ndarray:
    try:
        matrix = np.array(scores, dtype=float)  # (N, L)
    except (ValueError, TypeError):
        raise ValueError("scores must be a rectangular N x L matrix of numbers (rows differ in length, "
                         "or an entry is not a number)") from None
    if matrix.ndim != 2 or matrix.shape[0] < 1 or matrix.shape[1] < 1:
        raise ValueError(f"scores must be a non-empty N x L matrix, got shape {matrix.shape}")
    bad = np.argwhere(~np.isfinite(matrix))
    if bad.size:
        raise ValueError(f"scores must be finite; client {bad[0, 0]} unit {bad[0, 1]} is {matrix[tuple(bad[0])]}")
    bad = np.argwhere(matrix < 0)
    if bad.size:
        raise ValueError(f"scores must be non-negative; client {bad[0, 0]} unit {bad[0, 1]} is {matrix[tuple(bad[0])]}")
    return matrix


def _as_budgets(budgets: Any, shape: tuple[int, int]) -> np.ndarray:
    num_clients, num_units = shape
    raw = np.array(budgets)  # (N,)
    if raw.ndim != 1 or raw.dtype.kind not in "iuf" or (raw.dtype.kind == "f" and not np.all(raw == np.round(raw))):
        raise ValueError(f"budgets must be a 1-D list of integers, got {np.asarray(budgets).tolist()!r}")
    if raw.shape[0] != num_clients:
        raise ValueError(f"got {raw.shape[0]} budgets for {num_clients} clients (one per score row)")
    values = raw.astype(np.int64)  # (N,)
    bad = np.flatnonzero((values < 1) | (values > num_units))
    if bad.size:
        raise ValueError(f"budget of client {bad[0]} is {values[bad[0]]}; each budget must be in [1, L={num_units}]")
    return values
