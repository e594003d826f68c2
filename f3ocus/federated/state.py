"""What the coordinator knows and keeps: the federation's public facts, the resumable run state, progress.

`Federation` is built by the driver from the data store (client names, sizes, budgets, baselines);
`FederationState` is everything needed to continue a run and is written atomically after every round
(`CHECKPOINT` in the run dir); `Progress` is what the driver polls while a round runs. Plain data:
the coordinator (`f3ocus.federated.coordinator`) owns the behaviour.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

CHECKPOINT = "checkpoint.pt"


class TooFewClientsError(RuntimeError):
    """A round ended with fewer usable client updates than `federation.min_clients`; the run stops."""


@dataclass
class FederationState:
    """All the coordinator needs to continue a run: last completed round, global tensors, history.

    There is no generator state to save: every random stream is derived from (seed, round_idx,
    client, purpose) by `f3ocus.utils.seeding`, so round r draws the same numbers fresh or resumed.
    """

    round_idx: int
    tensors: dict[str, torch.Tensor]
    history: list[dict[str, Any]] = field(default_factory=list)
    mlflow_run_id: str | None = None

    def save(self, path: Path) -> None:
        """Write atomically: a crash mid-write leaves the previous checkpoint intact."""
        tmp = path.with_suffix(".tmp")
        torch.save(dataclasses.asdict(self), tmp)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> "FederationState":
        return cls(**torch.load(path, weights_only=False))


@dataclass
class Progress:
    """What the driver shows while a round runs."""

    round_idx: int = 0
    rounds: int = 0
    phase: str = "starting"
    done: int = 0
    total: int = 0
    round_seconds: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class UpdateSummary:
    """What the round record keeps of a client's update once its tensors are folded into the average."""

    client: str
    num_examples: int
    train_loss: float
    num_bytes: int


@dataclass(frozen=True)
class Federation:
    """The public facts of the federation: client names (sorted), train sizes, budgets, baseline.

    `majority_baseline`: client -> accuracy of always giving its majority train answer (subset accuracy
    for a multi-label client); `majority_f1`: multi-label client -> micro-F1 of that baseline;
    `client_kinds`: client -> "vqa" | "multilabel" (missing: "vqa"; see `f3ocus.federated.evaluation`).
    """

    clients: tuple[str, ...]
    num_examples: dict[str, int]
    budgets: tuple[int, ...]
    majority_baseline: dict[str, float]
    client_kinds: dict[str, str] = field(default_factory=dict)
    majority_f1: dict[str, float] = field(default_factory=dict)
