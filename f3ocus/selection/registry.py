"""Selector registry: config `selection.method` -> selector class. Later selectors register here too."""

from __future__ import annotations

from f3ocus.selection.baselines import FirstKSelector, FullSelector, LastKSelector, RandomSelector, TopKSelector

SELECTORS: dict[str, type] = {cls.name: cls for cls in
                              (FullSelector, RandomSelector, FirstKSelector, LastKSelector, TopKSelector)}


def build_selector(method: str):
    """Instantiate the selector registered as `method`. Raises ValueError naming the known ones."""
    try:
        return SELECTORS[method]()
    except KeyError:
        raise ValueError(f"unknown selector {method!r}; known: {', '.join(sorted(SELECTORS))}") from None
