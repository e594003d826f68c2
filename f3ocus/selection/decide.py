"""Pick one point of a Pareto front (docs/METHOD.md §3 leaves this open): `knee` (default) or `pseudo_weights`.

`knee`: normalise both minimised objectives to [0, 1] over the front and take the point farthest below the
line joining the two extremes (the largest bulge towards the ideal point); ties -> the more important one.
`pseudo_weights`: pymoo's pseudo-weight rule with weight `weight` on importance and 1 − weight on variance.
Every decision is logged at INFO with the rule used.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

DECISION_RULES = ("knee", "pseudo_weights")

log = logging.getLogger(__name__)


def choose(F: np.ndarray, rule: str = "knee", weight: float = 0.5) -> int:
    """Index of the chosen point.

    Args:
        F: (P, 2) minimised objectives (−importance, variance), P >= 1.
        rule: "knee" or "pseudo_weights".
        weight: importance weight in [0, 1] (pseudo_weights only).

    Returns:
        Row index into F.

    Raises:
        ValueError: unknown rule, empty front or weight outside [0, 1].
    """
    if rule not in DECISION_RULES:
        raise ValueError(f"unknown decision rule {rule!r}; known: {', '.join(DECISION_RULES)}")
    if len(F) == 0:
        raise ValueError("cannot choose from an empty front")
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"decision weight must be in [0, 1], got {weight}")
    index = knee_point(F) if rule == "knee" else pseudo_weight_point(F, weight)
    log.info("selection decision: rule=%s weight=%s -> point %d of %d (importance=%.6g, variance=%.6g)",
             rule, weight if rule == "pseudo_weights" else "-", index, len(F), -F[index, 0], F[index, 1])
    return index


def knee_point(F: np.ndarray) -> int:
    """Max distance below the extremes' line in normalised objective space. F (P, 2) minimised."""
    span = F.max(axis=0) - F.min(axis=0)  # (2,)
    Z = (F - F.min(axis=0)) / np.where(span > 0, span, 1.0)  # (P, 2) in [0, 1]
    below = 1.0 - Z[:, 0] - Z[:, 1]  # (P,) ∝ signed distance to the line x + y = 1 (extremes at (0,1), (1,0))
    best = np.flatnonzero(below >= below.max() - 1e-12)  # (K,) ties
    return int(best[np.argmin(F[best, 0])])


def pseudo_weight_point(F: np.ndarray, weight: float) -> int:
    """pymoo PseudoWeights with (weight, 1 − weight); a front with a flat objective falls back to the knee."""
    span = F.max(axis=0) - F.min(axis=0)  # (2,)
    if len(F) == 1 or np.any(span <= 0):
        return knee_point(F)
    with warnings.catch_warnings():  # pymoo 0.6.2's decision_making imports scipy.spatial.ckdtree (deprecated)
        warnings.simplefilter("ignore", DeprecationWarning)
        from pymoo.mcdm.pseudo_weights import PseudoWeights

    return int(PseudoWeights(np.array([weight, 1.0 - weight])).do(F))
