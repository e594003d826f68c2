"""How a client trains locally (`federation.local_objective`): the `LocalObjective` protocol and its registry.

An objective trains whatever the round's selection made trainable and says, as a class attribute, whether
its clients keep state of their own across rounds (`keeps_client_state`). The worker reads that declaration
(and nothing else) to report the client-state tensors in `ModelInfo.client_state_names`, which is how the
coordinator learns to keep a `ClientStateStore`. Objectives are stateless too: a client's state comes in
as an argument and the new one goes out in the `LocalResult`.

- "supervised": the task loss (`f3ocus.models.training.train_epochs`); no client state.
- "feddat": FedDAT's mutual distillation between the dual-adapter teacher and the student
  (`f3ocus.models.feddat`); each client keeps its personal adapters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

import torch

if TYPE_CHECKING:
    from f3ocus.models.training import EncodedShard, EvalResult
    from f3ocus.models.vqa_model import VqaModel

LOCAL_OBJECTIVES: tuple[str, ...] = ("supervised", "feddat")


@dataclass(frozen=True)
class LocalSettings:
    """The schedule of one client's local training (`federation.*`).

    Attributes:
        epochs: passes over the client's shard.
        batch_size: rows per step.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        precision: "fp32" or "bf16" (autocast of forward and backward).
        head_lr: AdamW learning rate of the answer heads (None = `lr`; `federation.head_lr`).
        temperature: distillation temperature T (objectives that distil; `federation.distill_temperature`).
    """

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float = 0.0
    precision: str = "fp32"
    temperature: float = 3.0
    head_lr: float | None = None


@dataclass(frozen=True)
class LocalResult:
    """What local training returns: the mean training loss and the client's new state (None: keeps none)."""

    loss: float
    client_state: dict[str, torch.Tensor] | None = None


class LocalObjective(Protocol):
    """A client's local training rule.

    Attributes:
        name: the `federation.local_objective` value.
        keeps_client_state: whether its clients keep tensors of their own across rounds (then `train` takes
            and returns `client_state`, and `evaluate_personal` scores the client's own model).
    """

    name: ClassVar[str]
    keeps_client_state: ClassVar[bool]

    def train(self, model: "VqaModel", shard: "EncodedShard", client_state: dict[str, torch.Tensor] | None, *,
              settings: LocalSettings, generator: torch.Generator) -> LocalResult: ...

    def evaluate_personal(self, model: "VqaModel", shard: "EncodedShard", client_state: dict[str, torch.Tensor], *,
                          batch_size: int, precision: str) -> "EvalResult": ...


class SupervisedObjective:
    """Plain local training: AdamW on the task loss over the trainable tensors; no client state."""

    name: ClassVar[str] = "supervised"
    keeps_client_state: ClassVar[bool] = False

    def train(self, model: "VqaModel", shard: "EncodedShard", client_state: dict[str, torch.Tensor] | None, *,
              settings: LocalSettings, generator: torch.Generator) -> LocalResult:
        from f3ocus.models.training import train_epochs

        loss = train_epochs(model, shard, epochs=settings.epochs, batch_size=settings.batch_size, lr=settings.lr,
                            weight_decay=settings.weight_decay, generator=generator, precision=settings.precision,
                            head_lr=settings.head_lr)
        return LocalResult(loss)

    def evaluate_personal(self, model: "VqaModel", shard: "EncodedShard", client_state: dict[str, torch.Tensor], *,
                          batch_size: int, precision: str) -> "EvalResult":
        raise TypeError("the supervised objective keeps no client state: there is no personal model to evaluate")


def build_local_objective(name: str) -> LocalObjective:
    """The objective registered as `name` (one of `LOCAL_OBJECTIVES`).

    Raises:
        ValueError: an unknown name.
    """
    if name == "supervised":
        return SupervisedObjective()
    if name == "feddat":
        from f3ocus.models.feddat import FedDatObjective

        return FedDatObjective()
    raise ValueError(f"unknown local objective {name!r}; known: {', '.join(LOCAL_OBJECTIVES)}")


__all__ = ["LOCAL_OBJECTIVES", "LocalObjective", "LocalResult", "LocalSettings", "SupervisedObjective",
           "build_local_objective"]
