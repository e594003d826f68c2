"""The simple selectors every comparison needs: full fine-tuning, Federated Dropout, a static random
subset, first-k, last-k, top-k by score (the paper's score-based baselines are scorers + top-k).

Unit order is `VqaModel.units` (input side first: vision, connector, q-former, language), so first-k
trains the blocks nearest the pixels and last-k the blocks nearest the answer head.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np

from f3ocus.selection.base import SelectionResult, top_k_mask

if TYPE_CHECKING:
    from f3ocus.config.schema import SelectionConfig


class FullSelector:
    """Full fine-tuning: every client trains every unit (budgets are ignored)."""

    name: ClassVar[str] = "full"
    needs_scores: ClassVar[bool] = False
    respects_budgets: ClassVar[bool] = False

    @classmethod
    def from_config(cls, config: SelectionConfig | None = None, seed: int | None = None) -> FullSelector:
        return cls()  # no knobs, no random state of its own

    def select(self, scores: np.ndarray | None, budgets: np.ndarray, num_units: int,
               rng: np.random.Generator) -> SelectionResult:
        return SelectionResult(np.ones((len(budgets), num_units), dtype=bool))  # (N, L)


class FedDropoutSelector:
    """Federated Dropout (Caldas et al. 2018, "Expanding the reach of federated learning by reducing client
    resource requirements"): each client trains `budget` units drawn uniformly without replacement, fresh
    every round from the round's generator.

    The original drops a fixed fraction of each layer's neurons per client and round and trains the
    remaining sub-model; lifted here to dropping whole units: the kept units are the trained ones.
    """

    name: ClassVar[str] = "fed_dropout"
    needs_scores: ClassVar[bool] = False
    respects_budgets: ClassVar[bool] = True

    @classmethod
    def from_config(cls, config: SelectionConfig | None = None, seed: int | None = None) -> FedDropoutSelector:
        return cls()  # no knobs, no random state of its own

    def select(self, scores: np.ndarray | None, budgets: np.ndarray, num_units: int,
               rng: np.random.Generator) -> SelectionResult:
        keys = rng.random((len(budgets), num_units))  # (N, L)
        return SelectionResult(top_k_mask(keys, budgets))


class RandomSelector:
    """Static random layers: each client draws `budget` units uniformly once and trains them every round.

    With `seed` (the run's seed: `build_selector(config.selection, seed=config.seed)`) the subset is a
    pure function of (seed, budgets, L), drawn from `numpy_rng(seed, 0, SELECT)` (round 0 never
    selects, so no round's stream is reused): the same in every round, in a fresh instance and after a
    `--resume`, with no state to checkpoint. Without a seed it is drawn from the FIRST call's generator
    and kept in this instance: static over an uninterrupted run (the coordinator builds its selector
    once per run), but `FederationState` carries no selector state, so a resumed run draws anew at its
    first round.
    """

    name: ClassVar[str] = "random"
    needs_scores: ClassVar[bool] = False
    respects_budgets: ClassVar[bool] = True

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed
        self._masks: dict[tuple[tuple[int, ...], int], np.ndarray] = {}  # (budgets, L) -> (N, L) bool

    @classmethod
    def from_config(cls, config: SelectionConfig | None = None, seed: int | None = None) -> RandomSelector:
        return cls(seed=seed)

    def select(self, scores: np.ndarray | None, budgets: np.ndarray, num_units: int,
               rng: np.random.Generator) -> SelectionResult:
        key = (tuple(int(budget) for budget in budgets), num_units)
        if key not in self._masks:
            # Late: utils.seeding imports torch, which `f3ocus solve` and config validation must not load.
            from f3ocus.utils.seeding import SELECT, numpy_rng

            source = rng if self.seed is None else numpy_rng(self.seed, 0, SELECT)
            self._masks[key] = top_k_mask(source.random((len(budgets), num_units)), budgets)  # (N, L)
        return SelectionResult(self._masks[key].copy())


class FirstKSelector:
    """Each client trains its first `budget` units (nearest the input)."""

    name: ClassVar[str] = "first_k"
    needs_scores: ClassVar[bool] = False
    respects_budgets: ClassVar[bool] = True

    @classmethod
    def from_config(cls, config: SelectionConfig | None = None, seed: int | None = None) -> FirstKSelector:
        return cls()  # no knobs, no random state of its own

    def select(self, scores: np.ndarray | None, budgets: np.ndarray, num_units: int,
               rng: np.random.Generator) -> SelectionResult:
        return SelectionResult(top_k_mask(np.tile(-np.arange(num_units, dtype=float), (len(budgets), 1)), budgets))


class LastKSelector:
    """Each client trains its last `budget` units (nearest the answer head)."""

    name: ClassVar[str] = "last_k"
    needs_scores: ClassVar[bool] = False
    respects_budgets: ClassVar[bool] = True

    @classmethod
    def from_config(cls, config: SelectionConfig | None = None, seed: int | None = None) -> LastKSelector:
        return cls()  # no knobs, no random state of its own

    def select(self, scores: np.ndarray | None, budgets: np.ndarray, num_units: int,
               rng: np.random.Generator) -> SelectionResult:
        return SelectionResult(top_k_mask(np.tile(np.arange(num_units, dtype=float), (len(budgets), 1)), budgets))


class TopKSelector:
    """Each client trains its own `budget` highest-scoring units; no server-side coordination."""

    name: ClassVar[str] = "top_k"
    needs_scores: ClassVar[bool] = True
    respects_budgets: ClassVar[bool] = True

    @classmethod
    def from_config(cls, config: SelectionConfig | None = None, seed: int | None = None) -> TopKSelector:
        return cls()  # no knobs, no random state of its own

    def select(self, scores: np.ndarray | None, budgets: np.ndarray, num_units: int,
               rng: np.random.Generator) -> SelectionResult:
        if scores is None:
            raise ValueError("top_k needs an (N, L) score matrix")
        return SelectionResult(top_k_mask(np.asarray(scores, dtype=float), budgets))

