"""Typed messages between the coordinator and the client workers (never dicts with string keys).

Tensors travel as flat `{parameter name: tensor}` maps of the units concerned. Byte counts are taken
from these tensors (numel x element size), so communication figures are what was actually sent.

Client state (a method whose clients keep tensors of their own across rounds, e.g. FedDAT's personal
adapter; `ModelInfo.client_state_names`): the coordinator attaches a client's stored state to its
`TrainTask` / `EvalTask` just before the task is dispatched (`ClientStateStore`), and the worker returns
the new state in its `ClientUpdate`. The worker keeps nothing between tasks: state in, state out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


# A client's task kind (`FederatedStore.task_kind`): closed-set VQA or multi-label classification (T4-T6).
VQA, MULTILABEL = "vqa", "multilabel"

# `federation.upload_dtype` -> the dtype uploaded tensors travel in.
UPLOAD_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def cast_floating(tensors: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """`tensors` with every floating-point tensor cast to `dtype` (others, and those already in it, as they are)."""
    return {name: t.to(dtype) if t.is_floating_point() and t.dtype != dtype else t for name, t in tensors.items()}


def tensor_bytes(tensors: dict[str, torch.Tensor]) -> int:
    """Bytes on the wire for `tensors`: sum of numel x element size."""
    return sum(t.numel() * t.element_size() for t in tensors.values())


@dataclass(frozen=True)
class GlobalState:
    """The broadcast: every unit's trainable tensors (+ the answer head) at the start of a round.

    `version` identifies the tensors so a worker serving several clients loads them once.
    """

    version: int
    tensors: dict[str, torch.Tensor]

    @property
    def num_bytes(self) -> int:
        return tensor_bytes(self.tensors)


@dataclass(frozen=True)
class SharedState:
    """The broadcast as `RayPool` hands it to its actors: the version and the object-store reference of a
    `GlobalState`, boxed in a list so that Ray passes the reference on unresolved. A worker fetches the
    tensors once per version (`ClientWorker`), where a plain `GlobalState` argument would be deserialised
    again for every task (14-62 ms for the quickstart's 5.7 MB on 2 busy cores, 12 tasks a round;
    docs/BENCHMARKS.md, "Engine overhead"). `version` must identify the tensors, as for `GlobalState`."""

    version: int
    box: list  # [ray.ObjectRef]


@dataclass(frozen=True)
class ScoreTask:
    """Ask `client` for its per-unit importance scores on the broadcast model."""

    client: str
    round_idx: int
    seed: int


@dataclass(frozen=True)
class TrainTask:
    """Train `client`'s selected units (`mask`, in `VqaModel.units` order) for the configured epochs."""

    client: str
    round_idx: int
    seed: int
    mask: tuple[bool, ...]
    # The client's own tensors from its last usable round (None: it has none yet, or the method keeps none).
    client_state: dict[str, torch.Tensor] | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class EvalTask:
    """Evaluate the broadcast model on `client`'s test split (and, with `client_state`, the client's own model)."""

    client: str
    round_idx: int
    client_state: dict[str, torch.Tensor] | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class ScoreReport:
    client: str
    scores: np.ndarray  # (L,) summing to 1
    seconds: float


@dataclass(frozen=True)
class ClientUpdate:
    """Only the trained units' tensors (+ head) go up; `num_examples` weights the average.

    `client_state`: the client's own tensors after this round (methods that keep client state; never
    averaged, kept by the coordinator's `ClientStateStore`, counted apart from the upload).
    """

    client: str
    num_examples: int
    tensors: dict[str, torch.Tensor]
    train_loss: float
    seconds: float
    client_state: dict[str, torch.Tensor] | None = field(default=None, repr=False, compare=False)

    @property
    def num_bytes(self) -> int:
        return tensor_bytes(self.tensors)

    @property
    def state_bytes(self) -> int:
        return tensor_bytes(self.client_state or {})

    def release_tensors(self) -> None:
        """Drop this reply's reference to its tensors once they are aggregated.

        The pool keeps every reply of a phase until the phase ends; releasing the tensors of folded
        updates keeps the coordinator's memory flat in the number of clients. The dict itself is not
        touched (in-process, the worker or a test may still hold it); `tensors` becomes an empty dict.
        """
        object.__setattr__(self, "tensors", {})

    def release_client_state(self) -> None:
        """Drop this reply's reference to its client state once the store has written it (as `release_tensors`)."""
        object.__setattr__(self, "client_state", None)


@dataclass(frozen=True)
class EvalReport:
    """A client's test-split evaluation. `accuracy` is exact-match accuracy (for a multi-label client: subset
    accuracy); a multi-label client also reports micro-F1 (`f1`), macro-F1 (`f1_macro`) and macro-AUROC (`auroc_macro`)."""

    client: str
    accuracy: float
    loss: float
    num_examples: int
    seconds: float
    kind: str = VQA
    f1: float | None = None
    f1_macro: float | None = None
    auroc_macro: float | None = None
    # With client state: the same client scored by its own model (its state on top of the broadcast).
    personal: "EvalReport | None" = None

    @property
    def score(self) -> float:
        """The client's headline metric (`eval/score`): accuracy for VQA, micro-F1 for multi-label
        (docs/METHOD.md §5)."""
        return float(self.f1) if self.kind == MULTILABEL and self.f1 is not None else self.accuracy


@dataclass(frozen=True)
class WorkerError:
    """A task that raised on a worker (or whose actor died); the coordinator decides what to do."""

    client: str
    message: str


@dataclass(frozen=True)
class ModelInfo:
    """What the coordinator needs to know about the model without holding one."""

    units: tuple[str, ...]
    unit_parameter_names: dict[str, tuple[str, ...]]  # unit (and "head") -> tensor names
    unit_num_parameters: dict[str, int]
    initial_tensors: dict[str, torch.Tensor] = field(repr=False)
    # Seconds the worker spent starting (imports, data store, model load), for start-up figures.
    worker_init_seconds: dict[str, float] = field(default_factory=dict)
    # Unix times of that start: "f3ocus_import" (its process began importing f3ocus; in an actor, soon after
    # the process was handed the actor) and "worker_init" (`ClientWorker.__init__` began).
    worker_started_at: dict[str, float] = field(default_factory=dict)
    # Task kind -> the "head" tensors a client of that kind trains and uploads (its own head; empty: any head).
    task_heads: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # The tensors each client keeps as its own state across rounds (declared by the worker's local
    # objective, `LocalObjective.keeps_client_state`); empty: the method keeps no client state.
    client_state_names: tuple[str, ...] = ()
