"""Synthetic F3OCUS server problems shaped like real LNTK scores, for tests and `bench/solvers.py`.

Real normalised LNTK scores (docs/METHOD.md §2) are peaked: a few units carry most of a client's importance,
and clients of one model tend to agree on which units those are. `lntk_like_problem` draws each row as
a normalised log-normal, S_il ∝ exp(σ z_il), with z_il either independent across clients or sharing a
per-unit component (z_il = ρ c_l + √(1 − ρ²) e_il), and heterogeneous budgets drawn uniformly from
[max(1, L // 16), max(1, L // 4)] (2–8 of 32 units, 1–6 of 24).
"""

from __future__ import annotations

import numpy as np

from f3ocus.selection.problem import SelectionProblem


def lntk_like_problem(rng: np.random.Generator, num_clients: int, num_units: int, correlated: bool,
                      sigma: float = 1.5, rho: float = 0.8) -> SelectionProblem:
    """One random instance.

    Args:
        rng: the source of every draw.
        num_clients: N. num_units: L.
        correlated: share a per-unit component across clients (ρ = `rho`) or draw clients independently.
        sigma: log-normal spread (1.5: the top unit of 32 typically holds 15–30 % of a row).

    Returns:
        A SelectionProblem with rows summing to 1 and budgets in [max(1, L // 16), max(1, L // 4)].
    """
    z = rng.normal(size=(num_clients, num_units))  # (N, L)
    if correlated:
        z = rho * rng.normal(size=num_units) + np.sqrt(1.0 - rho ** 2) * z  # (N, L)
    scores = np.exp(sigma * z)  # (N, L)
    scores /= scores.sum(axis=1, keepdims=True)
    low, high = max(1, num_units // 16), max(1, num_units // 4)
    return SelectionProblem(scores, rng.integers(low, high + 1, num_clients))
