"""Scorer registry: config `selection.scorer` -> scorer class."""

from __future__ import annotations

from f3ocus.importance.grad_norm import GradNormScorer

SCORERS: dict[str, type] = {cls.name: cls for cls in (GradNormScorer,)}


def build_scorer(name: str):
    """Instantiate the scorer registered as `name`. Raises ValueError naming the known ones."""
    try:
        return SCORERS[name]()
    except KeyError:
        raise ValueError(f"unknown scorer {name!r}; known: {', '.join(sorted(SCORERS))}") from None
