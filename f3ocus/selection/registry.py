"""Selector registry: config `selection.method` -> selector class. Later selectors register here too.

Rule-based: full, fed_dropout (Federated Dropout: fresh random units each round), random (a static random
subset per client), first_k, last_k. Score-based: top_k (each client's own top-budget units under the
configured scorer: the paper's Magnitude, FishMask, SNIP, ... baselines), lntk (LNTK-only), f3ocus.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from f3ocus.selection.baselines import (FedDropoutSelector, FirstKSelector, FullSelector, LastKSelector, RandomSelector,
                                        TopKSelector)
from f3ocus.selection.f3ocus_selector import F3ocusSelector, LntkOnlySelector

if TYPE_CHECKING:
    from f3ocus.config.schema import SelectionConfig
    from f3ocus.selection.base import Selector

SELECTORS: dict[str, type[Selector]] = {cls.name: cls for cls in
                              (FullSelector, FedDropoutSelector, RandomSelector, FirstKSelector, LastKSelector,
                               TopKSelector, LntkOnlySelector, F3ocusSelector)}


def build_selector(spec: str | SelectionConfig, seed: int | None = None) -> Selector:
    """Instantiate the selector named by `spec` (a method name, or a `SelectionConfig` whose `method` is used).

    Built by the selector's `from_config`: given a config, selectors with knobs (f3ocus) read them from it;
    given a bare name, every selector is built with its defaults. `seed` (the run's seed) goes to selectors
    that keep random state of their own (random: its static subset then survives a resume). Raises
    ValueError naming the known ones.
    """
    method = spec if isinstance(spec, str) else spec.method
    try:
        cls = SELECTORS[method]
    except KeyError:
        raise ValueError(f"unknown selector {method!r}; known: {', '.join(sorted(SELECTORS))}") from None
    return cls.from_config(None if isinstance(spec, str) else spec, seed)
