"""Selector registry: config `selection.method` -> selector class. Later selectors register here too."""

from __future__ import annotations

from typing import TYPE_CHECKING

from f3ocus.selection.baselines import FirstKSelector, FullSelector, LastKSelector, RandomSelector, TopKSelector
from f3ocus.selection.f3ocus_selector import F3ocusSelector, LntkOnlySelector

if TYPE_CHECKING:
    from f3ocus.config.schema import SelectionConfig

SELECTORS: dict[str, type] = {cls.name: cls for cls in
                              (FullSelector, RandomSelector, FirstKSelector, LastKSelector, TopKSelector,
                               LntkOnlySelector, F3ocusSelector)}


def build_selector(spec: str | SelectionConfig):
    """Instantiate the selector named by `spec` (a method name, or a `SelectionConfig` whose `method` is used).

    Given a config, selectors with a `from_config` classmethod (f3ocus) read their knobs from it; given a bare
    name, every selector is built with its defaults. Raises ValueError naming the known ones.
    """
    method = spec if isinstance(spec, str) else spec.method
    try:
        cls = SELECTORS[method]
    except KeyError:
        raise ValueError(f"unknown selector {method!r}; known: {', '.join(sorted(SELECTORS))}") from None
    if not isinstance(spec, str) and hasattr(cls, "from_config"):
        return cls.from_config(spec)
    return cls()
