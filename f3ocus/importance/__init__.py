"""Per-unit importance scores computed by clients on their own data (the interface LNTK plugs into)."""

from f3ocus.importance.base import ImportanceScorer, normalise, preserved_state
from f3ocus.importance.grad_norm import GradNormScorer
from f3ocus.importance.registry import SCORERS, build_scorer

__all__ = ["ImportanceScorer", "normalise", "preserved_state", "GradNormScorer", "SCORERS", "build_scorer"]
