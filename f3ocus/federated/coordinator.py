"""The coordinator: holds the global state, runs selection and aggregation, and is the only logger.

`run_round` is METHOD.md §4 step by step: broadcast -> score -> select -> train -> aggregate ->
evaluate -> log. The coordinator holds no model and sees no data: it knows the units, the tensors of
the global state, client names, example counts and budgets. It runs in-process (`LocalPool`, tests)
or as a Ray actor that owns a `RayPool` of client actors. Everything needed to continue a run lives in
`FederationState`, which is written atomically after every round.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from f3ocus.config.schema import ExperimentConfig
from f3ocus.federated.aggregate import masked_fedavg
from f3ocus.federated.messages import (ClientUpdate, EvalReport, EvalTask, GlobalState, ScoreReport, ScoreTask,
                                       TrainTask, WorkerError)
from f3ocus.federated.pool import WorkerPool
from f3ocus.selection import build_selector, check_mask
from f3ocus.tracking import names
from f3ocus.tracking.base import MetricLogger
from f3ocus.utils.seeding import SCORE, SELECT, TRAIN, derive_seed, numpy_rng


CHECKPOINT = "checkpoint.pt"


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
class Federation:
    """The public facts of the federation: client names (sorted), train sizes, budgets, baseline."""

    clients: tuple[str, ...]
    num_examples: dict[str, int]
    budgets: tuple[int, ...]
    majority_baseline: dict[str, float]


class Coordinator:
    """Runs the federated rounds over a worker pool; see the module docstring."""

    def __init__(self, config: ExperimentConfig, federation: Federation, run_dir: str,
                 make_pool: Callable[[], WorkerPool], make_logger: Callable[[str | None], MetricLogger],
                 resume: FederationState | None = None):
        """Build the pool and the logger; start from `resume` (a saved state) or from the initial model.

        `make_logger(run_id)` opens the MLflow run `run_id` (a resumed run) or a new one when None.
        """
        self.cfg = config
        self.fed = federation
        self.run_dir = Path(run_dir)
        self.pool = make_pool()
        self.info = self.pool.model_info()
        self.logger = make_logger(resume.mlflow_run_id if resume else None)
        self.selector = build_selector(config.selection)
        self.state = resume or FederationState(0, dict(self.info.initial_tensors))
        self.state.mlflow_run_id = self.logger.run_id
        # Changes whenever the global tensors change, so a worker serving many clients loads them once.
        self._version = self.state.round_idx
        self.progress_now = Progress(rounds=config.federation.rounds,
                                     round_seconds=[r["seconds"] for r in self.state.history if r["round"] > 0])

    # ----------------------------------------------------------------------------------------- loop
    def run(self) -> dict[str, Any]:
        """Initial evaluation (unless resumed past it), every remaining round, then the summary."""
        if self.needs_initial_evaluation():
            self.evaluate_initial()
        for round_idx in range(self.next_round(), self.cfg.federation.rounds + 1):
            self.run_round(round_idx)
        return self.finish()

    def next_round(self) -> int:
        """The first round not completed yet (1 for a fresh run)."""
        return self.state.round_idx + 1

    def needs_initial_evaluation(self) -> bool:
        return not self.state.history

    def evaluate_initial(self) -> dict[str, Any]:
        """Round 0: the starting global model on every client's test split (no training)."""
        start = time.perf_counter()
        evals = self._evaluate(GlobalState(self._version, self.state.tensors), 0)
        record = self._record(0, start, evals, masks=None, scores=None, updates=[], failed=[])
        self.state.save(self.run_dir / CHECKPOINT)
        return record

    def run_round(self, round_idx: int) -> dict[str, Any]:
        """One round of METHOD.md §4; returns the round's record (also appended to the history)."""
        start = time.perf_counter()
        self.progress_now.round_idx = round_idx
        # 1. Broadcast: every client starts from the same global tensors.
        state = GlobalState(self._version, self.state.tensors)
        # 2. Score: clients report per-unit importance on their data (only when the selector uses it).
        scores, failed = self._score(state, round_idx) if self.selector.needs_scores else (None, [])
        # 3. Select: the server turns scores and budgets into an (N, L) mask, data-free.
        # Full fine-tuning ignores budgets: every client trains all L units.
        budgets = np.array(self.fed.budgets) if getattr(self.selector, "respects_budgets", True) \
            else np.full(len(self.fed.clients), len(self.info.units))
        decision = self.selector.select(scores, budgets, len(self.info.units),
                                        numpy_rng(self.cfg.seed, round_idx, SELECT))
        masks = decision.masks  # (N, L) bool
        check_mask(masks, budgets, len(self.info.units))
        # 4. Train: each client trains its selected units and uploads only those.
        updates, train_failed = self._train(state, masks, round_idx)
        # 5. Aggregate: masked FedAvg weighted by |D_i|; units nobody trained keep their value.
        self.state.tensors = masked_fedavg(self.state.tensors, [(u.num_examples, u.tensors) for u in updates])
        self._version += 1
        # 6. Evaluate: the new global model on every client's test split.
        evals = self._evaluate(GlobalState(self._version, self.state.tensors), round_idx)
        # 7. Log and checkpoint.
        record = self._record(round_idx, start, evals, masks, scores, updates, failed + train_failed,
                              down_bytes=state.num_bytes)
        self.state.round_idx = round_idx
        self.state.save(self.run_dir / CHECKPOINT)
        return record

    def finish(self, status: str = "FINISHED") -> dict[str, Any]:
        """Summary of the run (also logged as `summary.json`); closes the MLflow run."""
        last = self.state.history[-1]
        summary = {
            "rounds": self.state.round_idx,
            "final": {"accuracy": last["accuracy"], "loss": last["loss"], "per_client": last["per_client"]},
            "history": self.state.history,
            "majority_baseline": {"accuracy": float(np.mean(list(self.fed.majority_baseline.values()))),
                                  "per_client": self.fed.majority_baseline},
            "mlflow_run_id": self.logger.run_id,
            "mlflow_experiment_id": getattr(self.logger, "experiment_id", None),
            "bytes_up_total": int(sum(r["bytes_up"] for r in self.state.history)),
            "bytes_down_total": int(sum(r["bytes_down"] for r in self.state.history)),
            "units": list(self.info.units),
            "unit_num_parameters": self.info.unit_num_parameters,
        }
        self.logger.log_dict(summary, "summary.json")
        self.logger.close(status)
        self.pool.shutdown()
        return summary

    def progress(self) -> Progress:
        return self.progress_now

    # --------------------------------------------------------------------------------------- phases
    def _score(self, state: GlobalState, round_idx: int) -> tuple[np.ndarray, list[str]]:
        tasks = [ScoreTask(c, round_idx, derive_seed(self.cfg.seed, round_idx, i, SCORE))
                 for i, c in enumerate(self.fed.clients)]
        replies = self._map("score", state, tasks)
        uniform = np.full(len(self.info.units), 1.0 / len(self.info.units))
        # A client that failed to score is ranked uniformly this round; it still gets to train.
        scores = np.stack([r.scores if isinstance(r, ScoreReport) else uniform for r in replies])  # (N, L)
        return scores, [r.client for r in replies if isinstance(r, WorkerError)]

    def _train(self, state: GlobalState, masks: np.ndarray, round_idx: int) -> tuple[list[ClientUpdate], list[str]]:
        tasks = [TrainTask(c, round_idx, derive_seed(self.cfg.seed, round_idx, i, TRAIN), tuple(map(bool, masks[i])))
                 for i, c in enumerate(self.fed.clients)]
        replies = self._map("train", state, tasks)
        updates = [r for r in replies if isinstance(r, ClientUpdate)]
        failed = [r.client for r in replies if isinstance(r, WorkerError)]
        if not updates:
            raise RuntimeError(f"round {round_idx}: every client failed to train: "
                               + "; ".join(f"{r.client}: {r.message}" for r in replies))
        for update, task in zip(replies, tasks):
            if isinstance(update, ClientUpdate):
                self._check_upload(update, task.mask)
        return updates, failed

    def _check_upload(self, update: ClientUpdate, mask: tuple[bool, ...]) -> None:
        """A client may upload exactly its selected units (+ head); anything else is a protocol error."""
        allowed = {n for unit, chosen in zip(self.info.units, mask) if chosen
                   for n in self.info.unit_parameter_names[unit]}
        allowed |= set(self.info.unit_parameter_names.get("head", ())) if self.cfg.federation.train_head else set()
        extra = set(update.tensors) - allowed
        if extra:
            raise RuntimeError(f"client {update.client} uploaded tensors outside its selection: {sorted(extra)[:3]}")

    def _evaluate(self, state: GlobalState, round_idx: int) -> list[EvalReport | WorkerError]:
        return self._map("evaluate", state, [EvalTask(c, round_idx) for c in self.fed.clients])

    def _map(self, phase: str, state: GlobalState, tasks: list) -> list:
        self.progress_now.phase, self.progress_now.done, self.progress_now.total = phase, 0, len(tasks)

        def on_done(_reply: object) -> None:
            self.progress_now.done += 1

        return self.pool.map(phase, state, tasks, on_done)

    # -------------------------------------------------------------------------------------- logging
    def _record(self, round_idx: int, start: float, evals: list, masks: np.ndarray | None,
                scores: np.ndarray | None, updates: list[ClientUpdate], failed: list[str],
                down_bytes: int = 0) -> dict[str, Any]:
        reports = [r for r in evals if isinstance(r, EvalReport)]
        failed = sorted(set(failed) | {r.client for r in evals if isinstance(r, WorkerError)})
        if not reports:
            raise RuntimeError(f"round {round_idx}: every client failed to evaluate: {evals}")
        record = {
            "round": round_idx,
            "accuracy": float(np.mean([r.accuracy for r in reports])),
            "loss": float(np.mean([r.loss for r in reports])),
            "per_client": {r.client: {"accuracy": r.accuracy, "loss": r.loss, "n": r.num_examples} for r in reports},
            "train_loss": float(np.mean([u.train_loss for u in updates])) if updates else None,
            "bytes_up": int(sum(u.num_bytes for u in updates)),
            "bytes_down": int(down_bytes * len(self.fed.clients)),
            "bytes_up_per_client": {u.client: u.num_bytes for u in updates},
            "seconds": time.perf_counter() - start,
            "failed_clients": failed,
            "selected": None if masks is None else {
                c: [u for u, chosen in zip(self.info.units, masks[i]) if chosen] for i, c in enumerate(self.fed.clients)},
        }
        self.state.history.append(record)
        if round_idx > 0:
            self.progress_now.round_seconds.append(record["seconds"])
        self._log(record, masks, scores)
        return record

    def _log(self, record: dict[str, Any], masks: np.ndarray | None, scores: np.ndarray | None) -> None:
        step = record["round"]
        metrics = {names.EVAL_ACC: record["accuracy"], names.EVAL_LOSS: record["loss"],
                   names.COMM_BYTES_UP: record["bytes_up"], names.COMM_BYTES_DOWN: record["bytes_down"],
                   names.ROUND_SECONDS: record["seconds"], names.FED_FAILED: len(record["failed_clients"])}
        for client, values in record["per_client"].items():
            metrics[names.client_metric(client, "acc")] = values["accuracy"]
            metrics[names.client_metric(client, "loss")] = values["loss"]
        for client, num_bytes in record["bytes_up_per_client"].items():
            metrics[names.client_metric(client, "bytes_up")] = num_bytes
        if record["train_loss"] is not None:
            metrics[names.TRAIN_LOSS] = record["train_loss"]
        if masks is not None:
            metrics[names.SELECT_DISTINCT_UNITS] = int(masks.any(axis=0).sum())
            self.logger.log_dict({"round": step, "clients": list(self.fed.clients), "units": list(self.info.units),
                                  "masks": masks.astype(int).tolist(),
                                  "scores": None if scores is None else scores.tolist()},
                                 f"selection/round_{step:03d}.json")
        self.logger.log_metrics(metrics, step)

