"""The client worker: one resident VLM that serves any number of virtual clients in turn.

A `ClientWorker` builds its model and opens the federated data store once, in `__init__`; per call it
loads the broadcast tensors (once per state version; on Ray a `SharedState` is fetched from the object
store once per version and kept), fetches the client's shard (encoded tensors kept in a small LRU
cache) and scores, trains or evaluates. Replies carry `seconds`: the worker's compute, timed once the
broadcast is in hand. It keeps no per-client state between rounds:
that lives with the coordinator, which is what lets a few actors serve many clients. The same class
runs in-process (`LocalPool`) and as a Ray actor (`RayPool`).

Local training follows `federation.local_objective` (`f3ocus.models.local_objectives`). An objective that
keeps client state (FedDAT's personal adapters) gets the client's state from the task (None: a new client,
which starts from the model's initial state) and its new state goes back in the `ClientUpdate`; evaluation
then also scores the client's own model (`EvalReport.personal`). The worker declares those tensors in
`ModelInfo.client_state_names`; state in, state out, nothing kept.

Device: `f3ocus.utils.device.pick_device` with `federation.worker_resources.num_gpus` (a GPU actor runs on
the first GPU Ray assigned it; without CUDA it falls back to the CPU with a warning line), logged once at
start and returned by `device_info()`. Encoded shards stay on the CPU; each batch moves to the device.
`federation.precision` "bf16" runs scoring, training and evaluation under bfloat16 autocast.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from f3ocus import IMPORTED_AT
from f3ocus.config.schema import ExperimentConfig
from f3ocus.federated.messages import (UPLOAD_DTYPES, ClientUpdate, EvalReport, EvalTask, GlobalState, ModelInfo,
                                       ScoreReport, ScoreTask, SharedState, TrainTask, cast_floating)
from f3ocus.models.local_objectives import LocalSettings, build_local_objective
from f3ocus.utils.device import autocast, pick_device, to_device
from f3ocus.utils.seeding import torch_generator

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs to build itself; plain data so it pickles to any Ray node."""

    config: ExperimentConfig
    store_dir: str
    model_cache_dir: str | None
    num_threads: int
    shard_cache_size: int = 16


class ClientWorker:
    """Scores, trains and evaluates on behalf of whichever client a task names."""

    def __init__(self, spec: WorkerSpec):
        self._started_at = {"f3ocus_import": IMPORTED_AT, "worker_init": time.time()}
        started = time.perf_counter()
        from f3ocus.data.store import FederatedStore
        from f3ocus.importance.registry import build_scorer
        from f3ocus.models.registry import build_vqa_model

        imported = time.perf_counter()
        torch.set_num_threads(max(1, spec.num_threads))
        cfg = spec.config
        self._cfg = cfg
        self._device_choice = pick_device(cfg.federation.worker_resources.num_gpus, logger=log)
        self._device = self._device_choice.device
        self._precision = cfg.federation.precision
        self._store = FederatedStore.load(Path(spec.store_dir))
        opened = time.perf_counter()
        self._model = build_vqa_model(
            cfg.model.family, cfg.model.checkpoint, answers=self._store.answers, unit_mode=cfg.model.unit_mode,
            lora_r=cfg.model.lora.r, lora_alpha=cfg.model.lora.alpha, lora_dropout=cfg.model.lora.dropout,
            bottleneck_dim=cfg.model.bottleneck_dim, prompt_length=cfg.model.prompt_length,
            image_size=cfg.model.image_size, seed=cfg.seed, cache_dir=spec.model_cache_dir,
            findings=self._store.findings, selectable=cfg.model.selectable,
        ).to(self._device)
        self._scorer = build_scorer(cfg.selection.scorer)
        self._objective = build_local_objective(cfg.federation.local_objective)
        # What a client without a stored state starts from (the model's seeded init; never a client's own).
        self._initial_client_state = self._model.client_state() if self._objective.keeps_client_state else None
        if self._objective.keeps_client_state and not self._initial_client_state:
            raise ValueError(f"local objective {self._objective.name!r} keeps client state, but model.unit_mode "
                             f"{cfg.model.unit_mode!r} has no client-state tensors")
        self._init_seconds = {"imports": imported - started, "store": opened - imported,
                              "model": time.perf_counter() - opened}
        self._loaded_version: int | None = None
        self._broadcast: GlobalState | None = None  # the last broadcast fetched through a SharedState
        self._shards: OrderedDict[tuple[str, str], object] = OrderedDict()
        self._shard_cache_size = spec.shard_cache_size

    def model_info(self) -> ModelInfo:
        """Unit names, tensor names per unit and the initial trainable tensors (the round-0 global state)."""
        names = self._model.unit_parameter_names()
        return ModelInfo(
            units=tuple(self._model.units),
            unit_parameter_names={unit: tuple(tensor_names) for unit, tensor_names in names.items()},
            unit_num_parameters=dict(self._model.num_unit_parameters()),
            initial_tensors=self._model.trainable_state(),
            worker_init_seconds=dict(self._init_seconds),
            worker_started_at=dict(self._started_at),
            task_heads={kind: tuple(self._model.task_head_names(kind)) for kind in self._model.task_kinds},
            client_state_names=tuple(self._initial_client_state or ()),
        )

    def device_info(self) -> dict[str, object]:
        """The worker's device and what it was picked from (`DeviceChoice.as_dict`), + the precision."""
        return {**self._device_choice.as_dict(), "precision": self._precision}

    def score(self, state: GlobalState | SharedState, task: ScoreTask) -> ScoreReport:
        state = self._resolve(state)
        start = time.perf_counter()  # `seconds` in replies: the worker's compute, not the transfer
        self._load(state)
        shard = self._shard(task.client, "train")
        generator = torch_generator(task.seed)
        count = min(self._cfg.selection.score_batch_size, len(shard.labels))
        rows = torch.randperm(len(shard.labels), generator=generator)[:count]
        inputs = to_device({key: value[rows] for key, value in shard.tensors.items()}, self._device)
        with autocast(self._device, self._precision):  # scorers keep their Grams in float32 (full_precision)
            scores = self._scorer.score(self._model, inputs, shard.labels[rows].to(self._device))
        return ScoreReport(task.client, np.asarray(scores, dtype=np.float64), time.perf_counter() - start)

    def train(self, state: GlobalState | SharedState, task: TrainTask) -> ClientUpdate:
        state = self._resolve(state)
        start = time.perf_counter()
        self._load(state)
        shard = self._shard(task.client, "train")
        fed = self._cfg.federation
        # Only this client's task head trains and goes up: masked FedAvg averages each head over its task's clients.
        self._model.set_trainable(list(task.mask), train_head=fed.train_head, task_kind=shard.kind)
        self._loaded_version = None  # training moves the weights away from the broadcast
        result = self._objective.train(self._model, shard, self._client_state(task), settings=self._settings(),
                                       generator=torch_generator(task.seed))
        selected = [unit for unit, chosen in zip(self._model.units, task.mask) if chosen]
        # Sent in `federation.upload_dtype` (float16/bfloat16 halve the upload); the coordinator casts back.
        trained = self._model.trainable_state(selected, include_head=fed.train_head, task_kind=shard.kind)
        tensors = cast_floating(trained, UPLOAD_DTYPES[fed.upload_dtype])
        return ClientUpdate(task.client, len(shard.labels), tensors, float(result.loss), time.perf_counter() - start,
                            client_state=result.client_state)

    def evaluate(self, state: GlobalState | SharedState, task: EvalTask) -> EvalReport:
        from f3ocus.models.training import evaluate

        state = self._resolve(state)
        start = time.perf_counter()
        self._load(state)
        shard = self._shard(task.client, self._cfg.data.eval_split)  # test, or val while choosing a schedule
        batch_size = self._cfg.federation.eval_batch_size
        result = evaluate(self._model, shard, batch_size=batch_size, precision=self._precision)
        personal = None
        if self._objective.keeps_client_state:  # the client's own model too (its state on top of the broadcast)
            own = self._objective.evaluate_personal(self._model, shard, self._client_state(task),
                                                    batch_size=batch_size, precision=self._precision)
            personal = EvalReport(task.client, float(own.accuracy), float(own.loss), int(own.n), 0.0,
                                  kind=own.kind, f1=own.f1, f1_macro=own.f1_macro)
        return EvalReport(task.client, float(result.accuracy), float(result.loss), int(result.n),
                          time.perf_counter() - start, kind=result.kind, f1=result.f1, f1_macro=result.f1_macro,
                          auroc_macro=result.auroc_macro, personal=personal)

    def _client_state(self, task: TrainTask | EvalTask) -> dict[str, torch.Tensor] | None:
        """The state the task brought, or a new client's initial state (objectives that keep state); else None."""
        if not self._objective.keeps_client_state:
            return None
        return task.client_state if task.client_state is not None else self._initial_client_state

    def _settings(self) -> LocalSettings:
        fed = self._cfg.federation
        return LocalSettings(epochs=fed.local_epochs, batch_size=fed.batch_size, lr=fed.lr,
                             weight_decay=fed.weight_decay, precision=self._precision,
                             temperature=fed.distill_temperature, head_lr=fed.head_lr)

    def _resolve(self, state: GlobalState | SharedState) -> GlobalState:
        """The broadcast itself: a SharedState (Ray) is fetched from the object store once per version and kept,
        since training overwrites the model's copy and the next client starts from the broadcast again."""
        if not isinstance(state, SharedState):
            return state
        if self._broadcast is None or self._broadcast.version != state.version:
            import ray

            self._broadcast = None  # let the previous broadcast go before the next one arrives
            self._broadcast = ray.get(state.box[0])
        return self._broadcast

    def _load(self, state: GlobalState) -> None:
        if state.version != self._loaded_version:
            self._model.load_trainable_state(state.tensors)
            self._loaded_version = state.version

    def _shard(self, client: str, split: str):
        """Encoded tensors of one client split, LRU-cached so memory stays flat in the number of clients."""
        from f3ocus.models.training import encode_examples

        key = (client, split)
        if key in self._shards:
            self._shards.move_to_end(key)
            return self._shards[key]
        rows = self._store.shard(client, split)
        shard = encode_examples(self._model, rows["image"], rows["question"], rows["answer"],
                                question_types=rows["question_type"])
        self._shards[key] = shard
        while len(self._shards) > self._shard_cache_size:
            self._shards.popitem(last=False)
        return shard

    def count_flops(self, state: GlobalState, client: str, mask: tuple[bool, ...], *, score: bool) -> dict[str, float]:
        """FLOPs one round costs `client` with `mask`, counted (torch's FlopCounterMode) on one real batch.

        Returns {"train": local_epochs x n_train x FLOPs of one sample's local training step with this
        trainable set (forward + backward; under FedDAT the teacher pass and both steps), "score": FLOPs of one scorer call on the score batch (0 unless `score`)}. Counted
        FLOPs are the matmul/convolution FLOPs torch's counter knows (elementwise ops are not counted).
        """
        from torch.utils.flop_counter import FlopCounterMode

        self._load(state)
        shard = self._shard(client, "train")
        fed = self._cfg.federation
        rows = torch.arange(min(fed.batch_size, len(shard.labels)))
        batch = shard.subset(rows)
        self._model.set_trainable(list(mask), train_head=fed.train_head)
        self._loaded_version = None  # the counted step moves the weights
        # The round's own local objective on one batch: FedDAT's teacher pass and both steps are all counted.
        with FlopCounterMode(display=False) as counter:
            self._objective.train(self._model, batch, self._initial_client_state, generator=torch_generator(0),
                                  settings=replace(self._settings(), epochs=1, batch_size=len(rows)))
        flops = {"train": counter.get_total_flops() / len(rows) * len(shard.labels) * fed.local_epochs, "score": 0.0}
        if score:
            self._load(state)
            count = min(self._cfg.selection.score_batch_size, len(shard.labels))
            inputs = to_device({key: value[:count] for key, value in shard.tensors.items()}, self._device)
            with FlopCounterMode(display=False) as counter, autocast(self._device, self._precision):
                self._scorer.score(self._model, inputs, shard.labels[:count].to(self._device))
            flops["score"] = float(counter.get_total_flops())
        return flops

