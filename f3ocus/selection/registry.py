"""Selector registry: config `selection.method` -> selector class. Later selectors register here too.

Rule-based: full, fed_dropout (Federated Dropout: fresh random units each round), random (a static random
subset per client), first_k, last_k. Score-based: top_k (each client's own top-budget units under the
configured scorer: the paper's Magnitude, FishMask, SNIP, ... baselines), lntk (LNTK-only), f3ocus.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

from f3ocus.selection.baselines import (FedDropoutSelector, FirstKSelector, FullSelector, LastKSelector, RandomSelector,
                                        TopKSelector)
from f3ocus.selection.f3ocus_selector import F3ocusSelector, LntkOnlySelector

if TYPE_CHECKING:
    from f3ocus.config.schema import SelectionConfig

SELECTORS: dict[str, type] = {cls.name: cls for cls in
                              (FullSelector, FedDropoutSelector, RandomSelector, FirstKSelector, LastKSelector,
                               TopKSelector, LntkOnlySelector, F3ocusSelector)}


def build_selector(spec: str | SelectionConfig, seed: int | None = None):
    """Instantiate the selector named by `spec` (a method name, or a `SelectionConfig` whose `method` is used).

    Given a config, selectors with a `from_config` classmethod (f3ocus) read their knobs from it; given a bare
    name, every selector is built with its defaults. `seed` (the run's seed) goes to selectors that take one
    (random: its static subset then survives a resume). Raises ValueError naming the known ones.
    """
    method = spec if isinstance(spec, str) else spec.method
    try:
        cls = SELECTORS[method]
    except KeyError:
        raise ValueError(f"unknown selector {method!r}; known: {', '.join(sorted(SELECTORS))}") from None
    if not isinstance(spec, str) and hasattr(cls, "from_config"):
        return cls.from_config(spec)
    if seed is not None and "seed" in inspect.signature(cls).parameters:
        return cls(seed=seed)
    return cls()
