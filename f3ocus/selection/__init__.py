"""Which units each client trains: the selector interface, the baseline selectors and their registry."""

from f3ocus.selection.base import SelectionResult, Selector, check_mask, top_k_mask
from f3ocus.selection.baselines import (FedDropoutSelector, FirstKSelector, FullSelector, LastKSelector, RandomSelector,
                                        TopKSelector)
from f3ocus.selection.registry import SELECTORS, build_selector

__all__ = ["SelectionResult", "Selector", "check_mask", "top_k_mask", "FullSelector", "FedDropoutSelector",
           "RandomSelector", "FirstKSelector", "LastKSelector", "TopKSelector", "SELECTORS", "build_selector"]
