"""What the coordinator knows and keeps: the federation's public facts, the resumable run state, progress.

`Federation` is built by the driver from the data store (client names, sizes, budgets, baselines, answer
set); `FederationState` is everything needed to continue a run and is written after every round (`CHECKPOINT`
in the run dir, in the code-free format of `f3ocus.federated.checkpoint`); `Progress` is what the driver polls
while a round runs. Plain data: the coordinator (`f3ocus.federated.coordinator`) owns the behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from f3ocus.federated.checkpoint import CHECKPOINT, CheckpointError, read_checkpoint, write_checkpoint


class TooFewClientsError(RuntimeError):
    """A round ended with fewer usable client updates than `federation.min_clients`; the run stops."""


@dataclass
class FederationState:
    """All the coordinator needs to continue a run: last completed round, global tensors, history.

    There is no generator state to save: every random stream is derived from (seed, round_idx,
    client, purpose) by `f3ocus.utils.seeding`, so round r draws the same numbers fresh or resumed.

    `identity`: what a resume must agree on (`checkpoint.run_identity`: resolved config, clients, answers,
    units, ...). `last_log`: the last round's metric records as sent to the tracker, `{"step", "timestamp_ms",
    "metrics"}`; a round's metrics go out only after its checkpoint is written, and a resumed run sends
    these same records again (an MLflow store keeps one copy of an identical record), so a kill between the
    checkpoint and the log neither loses nor doubles that round. `client_states`: client -> [round, sha256] of
    its own state in the run's `ClientStateStore` (methods whose clients keep state; empty otherwise): the
    files stay in `<run dir>/client_state/`, the checkpoint names which ones. `set_aside_latest` (not saved): this state
    came from the previous checkpoint because the current one was unusable; the next save keeps that file
    aside instead of rotating it into the previous slot.
    """

    round_idx: int
    tensors: dict[str, torch.Tensor]
    history: list[dict[str, Any]] = field(default_factory=list)  # each round's `RoundRecord.to_dict()`
    mlflow_run_id: str | None = None
    identity: dict[str, Any] = field(default_factory=dict)
    last_log: dict[str, Any] | None = None
    client_states: dict[str, list] = field(default_factory=dict)
    set_aside_latest: bool = field(default=False, repr=False, compare=False)
    loaded_from: Path | None = field(default=None, repr=False, compare=False)  # the file it was read from

    def save(self, path: Path) -> None:
        """Write `path` (a crash mid-write leaves the last complete checkpoint), keeping the one it replaces
        as `checkpoint.prev.safetensors`."""
        write_checkpoint(self, Path(path))

    @classmethod
    def load(cls, path: Path) -> "FederationState":
        """Read one checkpoint file, checked (format, version, checksum); raises `CheckpointError`."""
        return read_checkpoint(Path(path))


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
    state_bytes: int = 0  # the client state it brought back (methods with client state)


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
    answers: tuple[str, ...] = ()  # the closed answer set of the VQA head (the data store's)
    findings: tuple[str, ...] = ()  # the multi-label head's classes
    data_fingerprint: str | None = None  # the data store's content fingerprint


__all__ = ["CHECKPOINT", "CheckpointError", "Federation", "FederationState", "Progress", "TooFewClientsError",
           "UpdateSummary"]
