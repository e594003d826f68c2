"""Scorer registry: config `selection.scorer` -> a zero-argument factory of the scorer.

LNTK variants (docs/METHOD.md §2) are registered by name, since the config carries only the name:
`lntk` (default: per-sample loss-gradient kernel, one-pass "ghost" solver; see `lntk.py` for why),
`lntk_ghost_grad` (the same, by its explicit name), `lntk_exact_grad`, `lntk_matfree_grad`,
`lntk_exact_logit`, `lntk_matfree_logit`.
The paper's layer-selection baselines (docs/METHOD.md §5), each turned into a mask by the `top_k` selector:
`magnitude`, `snip`, `grasp`, `gradflow`, `rgn`, `synflow` (pruning_scores.py), `fisher` (FishMask,
fisher.py), `spt` (sensitivity.py), `fedselect` (local_update.py); these names are a fixed contract.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

from f3ocus.importance.fisher import FisherScorer
from f3ocus.importance.grad_norm import GradNormScorer
from f3ocus.importance.lntk import DEFAULT_SOLVER, SOLVER_KERNELS, LntkScorer
from f3ocus.importance.local_update import FedSelectScorer
from f3ocus.importance.pruning_scores import (GradFlowScorer, GraspScorer, MagnitudeScorer, RelativeGradientNormScorer,
                                              SnipScorer, SynFlowScorer)
from f3ocus.importance.sensitivity import SptScorer

SCORERS: dict[str, Callable[[], object]] = {
    GradNormScorer.name: GradNormScorer,
    "lntk": partial(LntkScorer, kernel="grad", solver=DEFAULT_SOLVER["grad"], name="lntk"),
    **{f"lntk_{solver}_{kernel}": partial(LntkScorer, kernel=kernel, solver=solver)
       for solver, kernels in SOLVER_KERNELS.items() for kernel in kernels},
    **{cls.name: cls for cls in (MagnitudeScorer, SnipScorer, GraspScorer, GradFlowScorer, RelativeGradientNormScorer,
                                 SynFlowScorer, FisherScorer, SptScorer, FedSelectScorer)},
}


def build_scorer(name: str):
    """Instantiate the scorer registered as `name`. Raises ValueError naming the known ones."""
    try:
        factory = SCORERS[name]
    except KeyError:
        raise ValueError(f"unknown scorer {name!r}; known: {', '.join(sorted(SCORERS))}") from None
    return factory()
