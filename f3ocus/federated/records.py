"""A round's record, the run's summary, and what of them goes to MLflow and to Tune.

`RoundRecord` is the record of a round: a frozen dataclass built once per round (`round_record`) when
every phase but the log has run; the coordinator hands it to the round loop's callbacks (progress lines,
a sweep's per-round report) and keeps its JSON form (`to_dict`) in the history, which the checkpoint,
`result.json` and `summary.json` hold (`from_dict` reads one back, also from an older checkpoint).
`round_metrics` is the one mapping of a record to metric names (`f3ocus.tracking.names`): MLflow gets
all of them, Tune the `SCHEDULER_METRICS` (`scheduler_metrics`). `RunSummary` (`run_summary`) is the
summary `Coordinator.finish` returns and logs as `summary.json`, in its JSON form; `rounds_logged_ahead`
tells a resumed run which rounds' metrics MLflow holds already. The per-round selection artifacts
(`selection/round_NNN.json`, the front figure) and the end-of-run unit ranks (paper Fig. 5) are
written under `SELECTION_DIR` of the run dir and logged under the same artifact folder
(`log_selection`, `log_unit_ranks`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from f3ocus.federated import evaluation
from f3ocus.federated.checkpoint import PREVIOUS_CHECKPOINT
from f3ocus.federated.messages import EvalReport, ModelInfo, WorkerError
from f3ocus.federated.round_tally import RoundTally
from f3ocus.federated.state import Federation, FederationState, UpdateSummary
from f3ocus.selection import SelectionResult
from f3ocus.tracking import names
from f3ocus.tracking.base import MetricLogger

# Per-round selection JSON and figures, written here first (so the run's end can read every round back,
# also after a resume) and logged under the same artifact folder.
SELECTION_DIR = "selection"
# Field metadata of a `RoundRecord` field that is left out of the JSON form when None.
_OPTIONAL = {"optional": True}


@dataclass(frozen=True, slots=True, kw_only=True)
class RoundRecord:
    """The record of one round (0: the initial evaluation), built once when all of it is known.

    `to_dict` is its JSON form (the checkpoint's history, `result.json`'s `history`): its keys in the order of
    the fields below; a field marked optional (`_OPTIONAL`) is left out when None. Frozen, but its dict
    and list values are plain (they pickle across Ray and dump as JSON): nothing changes them.

    Fields: the round's means over the evaluated clients (`evaluation.summarise_reports`: `accuracy`,
    `loss`, `score`, `per_client`; `f1`, `f1_macro`, `auroc_macro`, `subset_accuracy` only with multi-label
    clients, `personal` only with personalised evaluation), the mean train loss of the usable updates
    (None: round 0), bytes up (usable updates) and down (broadcast x clients), client-state bytes (apart
    from the upload), wall `seconds` of the round, per-phase wall and worker seconds (`RoundTally`), the
    clients that failed (score, train or evaluate), each client's selected units (None: round 0), the
    selection's small summary (`selection_summary`; None: round 0) and, for rounds >= 1, why clients
    failed and what the pool retried (`RoundTally.fault_details`).
    """

    round: int
    accuracy: float
    loss: float
    score: float
    per_client: dict[str, dict[str, Any]]
    f1: float | None = field(default=None, metadata=_OPTIONAL)
    f1_macro: float | None = field(default=None, metadata=_OPTIONAL)
    auroc_macro: float | None = field(default=None, metadata=_OPTIONAL)  # absent in records from before it
    subset_accuracy: float | None = field(default=None, metadata=_OPTIONAL)
    personal: dict[str, float] | None = field(default=None, metadata=_OPTIONAL)
    train_loss: float | None
    bytes_up: int
    bytes_down: int
    bytes_up_per_client: dict[str, int]
    # Absent in records from before client state was counted (a resumed older run): 0 / empty.
    state_bytes: int = 0
    state_bytes_up_per_client: dict[str, int] = field(default_factory=dict)
    seconds: float
    phase_seconds: dict[str, float]
    worker_seconds: dict[str, float]
    failed_clients: list[str]
    selected: dict[str, list[str]] | None
    selection: dict[str, Any] | None
    failure_reasons: dict[str, str] | None = field(default=None, metadata=_OPTIONAL)
    retries: dict[str, int] | None = field(default=None, metadata=_OPTIONAL)
    retry_reasons: dict[str, list[str]] | None = field(default=None, metadata=_OPTIONAL)
    actors_replaced: int | None = field(default=None, metadata=_OPTIONAL)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: every field in order, the optional ones only when set."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if not (f.metadata.get("optional") and getattr(self, f.name) is None)}

    @classmethod
    def from_dict(cls, plain: dict[str, Any]) -> "RoundRecord":
        """A record from its JSON form (a checkpoint's history, also one written by an older version).

        Raises:
            TypeError: a required key is missing or an unknown key is present.
        """
        return cls(**plain)

    def with_log_seconds(self, seconds: float) -> "RoundRecord":
        """This record with its `log` phase (`phase_seconds["log"]`, after the phases already there)."""
        return replace(self, phase_seconds={**self.phase_seconds, "log": seconds})


def round_record(round_idx: int, seconds: float, evals: Sequence[EvalReport | WorkerError],
                 federation: Federation, units: Sequence[str], masks: np.ndarray | None,
                 updates: Sequence[UpdateSummary], failed: Sequence[str], down_bytes: int, tally: RoundTally,
                 selection: dict[str, Any] | None) -> RoundRecord:
    """The record of round `round_idx` (0: the initial evaluation, `masks` None), before its `log` phase.

    Args:
        seconds: wall seconds of the round so far.
        masks: (N, L) bool, the round's selection.
        failed: clients that failed scoring or training (those that failed evaluation are added here).
        down_bytes: bytes of the broadcast state, sent to every client.
        tally: the round's counters, complete but for the `log` phase (`RoundRecord.with_log_seconds`).
        selection: the round's `selection_summary` (None: round 0).

    Raises:
        RuntimeError: every client failed to evaluate.
    """
    reports = [r for r in evals if isinstance(r, EvalReport)]
    failed = sorted(set(failed) | {r.client for r in evals if isinstance(r, WorkerError)})
    if not reports:
        raise RuntimeError(f"round {round_idx}: every client failed to evaluate: {evals}")
    return RoundRecord(
        round=round_idx,
        # accuracy, loss, score, per_client (+ f1, f1_macro, auroc_macro, subset_accuracy with multi-label
        # clients, personal with personalised evaluation)
        **evaluation.summarise_reports(reports, federation.client_kinds),
        train_loss=float(np.mean([u.train_loss for u in updates])) if updates else None,
        bytes_up=int(sum(u.num_bytes for u in updates)),
        bytes_down=int(down_bytes * len(federation.clients)),
        bytes_up_per_client={u.client: u.num_bytes for u in updates},
        # Client state sent with tasks and returned with updates (never leaves a real client): apart from bytes_up.
        state_bytes=int(tally.state_bytes),
        state_bytes_up_per_client={u.client: u.state_bytes for u in updates if u.state_bytes},
        seconds=seconds,
        phase_seconds=dict(tally.phase_seconds),
        worker_seconds=dict(tally.worker_seconds),
        failed_clients=failed,
        selected=None if masks is None else {
            c: [u for u, chosen in zip(units, masks[i]) if chosen] for i, c in enumerate(federation.clients)},
        selection=selection,
        # Why clients failed and what was retried: training rounds only (round 0 has no retry to report).
        **(tally.fault_details(failed) if round_idx > 0 else {}),
    )


def selection_payload(round_idx: int, clients: Sequence[str], units: Sequence[str], masks: np.ndarray,
                      scores: np.ndarray | None, decision: SelectionResult | None) -> dict[str, Any]:
    """The round's selection as JSON (`selection_artifacts.round_payload`): masks, objectives, front."""
    from f3ocus.tracking import selection_artifacts  # pymoo (objectives) and, when drawing, matplotlib

    return selection_artifacts.round_payload(round_idx, clients, units, masks, scores, decision)


def selection_summary(payload: dict[str, Any]) -> dict[str, Any]:
    """The record's small `selection` entry (importance, variance, front_size) of a round's payload."""
    from f3ocus.tracking import selection_artifacts

    return selection_artifacts.round_summary(payload)


def round_metrics(record: RoundRecord) -> dict[str, float]:
    """The metrics of a round's record under their MLflow names (step: its round), without the `select/*`
    ones (`log_selection`): what MLflow gets, and what a sweep's scheduler gets of it (`scheduler_metrics`)."""
    metrics = {names.EVAL_ACC: record.accuracy, names.EVAL_LOSS: record.loss,
               names.COMM_BYTES_UP: record.bytes_up, names.COMM_BYTES_DOWN: record.bytes_down,
               names.COMM_STATE_BYTES: record.state_bytes,
               names.ROUND_SECONDS: record.seconds, names.FED_FAILED: len(record.failed_clients)}
    for client, values in record.per_client.items():
        metrics[names.client_metric(client, "acc")] = values["accuracy"]
        metrics[names.client_metric(client, "loss")] = values["loss"]
    for client, num_bytes in record.bytes_up_per_client.items():
        metrics[names.client_metric(client, "bytes_up")] = num_bytes
    metrics.update(evaluation.score_metrics(record))
    if record.train_loss is not None:
        metrics[names.TRAIN_LOSS] = record.train_loss
    for phase, seconds in record.phase_seconds.items():
        metrics[names.time_metric(phase)] = seconds
    return metrics


# The round metrics a sweep reports to Tune (its schedulers and searchers read them), in this order;
# `train/loss` is absent in a record without training (round 0).
SCHEDULER_METRICS = names.SCHEDULER_METRICS


def scheduler_metrics(record: RoundRecord) -> dict[str, float]:
    """The `SCHEDULER_METRICS` of a round's record, with the names and values MLflow gets (`round_metrics`)."""
    metrics = round_metrics(record)
    return {key: metrics[key] for key in SCHEDULER_METRICS if key in metrics}


@dataclass(frozen=True, slots=True)
class RunSummary:
    """The run's summary (`result.json` without the experiment's own keys); `to_dict` is its JSON form.

    `final`: the last round's figures (`evaluation.final_summary`); `history`: every round's record in its
    JSON form, as the checkpoint holds them (a resumed run's earlier rounds as they were written);
    `majority_baseline`: `evaluation.baseline_summary`; byte totals over the history; the units and their
    parameter counts; the coordinator's start-up seconds.
    """

    rounds: int
    final: dict[str, Any]
    history: tuple[dict[str, Any], ...]
    majority_baseline: dict[str, Any]
    mlflow_run_id: str | None
    mlflow_experiment_id: str | None
    bytes_up_total: int
    bytes_down_total: int
    state_bytes_total: int
    units: list[str]
    unit_num_parameters: dict[str, int]
    startup_seconds: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: every field in order, the history as a list."""
        plain = {f.name: getattr(self, f.name) for f in fields(self)}
        plain["history"] = list(self.history)
        return plain


def run_summary(state: FederationState, federation: Federation, info: ModelInfo, logger: MetricLogger,
                startup_seconds: dict[str, Any]) -> RunSummary:
    """The run's summary (`Coordinator.finish`): final figures, history, totals."""
    past = [RoundRecord.from_dict(plain) for plain in state.history]
    return RunSummary(
        rounds=state.round_idx,
        final=evaluation.final_summary(past[-1], federation.client_kinds),
        history=tuple(state.history),
        majority_baseline=evaluation.baseline_summary(federation.majority_baseline, federation.majority_f1,
                                                      federation.client_kinds),
        mlflow_run_id=logger.run_id,
        mlflow_experiment_id=logger.experiment_id,
        bytes_up_total=int(sum(r.bytes_up for r in past)),
        bytes_down_total=int(sum(r.bytes_down for r in past)),
        state_bytes_total=int(sum(r.state_bytes for r in past)),
        units=list(info.units),
        unit_num_parameters=info.unit_num_parameters,
        startup_seconds=startup_seconds,
    )


def log_selection(logger: MetricLogger, run_dir: Path, payload: dict[str, Any]) -> dict[str, float]:
    """Write and log `selection/round_NNN.json` and, when the selector has a front, `front_round_NNN.png`.

    Returns the round's `select/*` metrics (importance only with scores, front_size only with a front).
    """
    from f3ocus.tracking import selection_artifacts  # pymoo (objectives) and, when drawing, matplotlib

    step = payload["round"]
    folder = run_dir / SELECTION_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"round_{step:03d}.json"
    path.write_text(json.dumps(payload))
    logger.log_artifact(path, SELECTION_DIR)
    objectives = payload["objectives"]
    metrics = {names.SELECT_DISTINCT_UNITS: payload["distinct_units"],
               names.SELECT_VARIANCE: objectives["variance"], names.SELECT_SOLVER_SECONDS: payload["seconds"]}
    if objectives["importance"] is not None:
        metrics[names.SELECT_IMPORTANCE] = objectives["importance"]
    if payload["front"]:
        metrics[names.SELECT_FRONT_SIZE] = len(payload["front"])
        figure = selection_artifacts.render_front(folder / f"front_round_{step:03d}.png", payload["front"],
                                                  payload["chosen"], step)
        logger.log_artifact(figure, SELECTION_DIR)
    return metrics


def rounds_logged_ahead(resume: FederationState | None, logger: MetricLogger) -> set[int]:
    """Rounds after the resumed one whose metrics are already logged: only after a fallback to the previous
    checkpoint (the lost one was written, and its round's metrics possibly sent, before the failure).

    Asked of the logger (`logged_steps`); when it cannot tell (MLflow unreachable, no tracking), nothing
    is skipped.
    """
    if resume is None or resume.loaded_from is None or resume.loaded_from.name != PREVIOUS_CHECKPOINT:
        return set()
    steps = logger.logged_steps(names.EVAL_ACC)
    return {step for step in steps or () if step > resume.round_idx}


def log_unit_ranks(logger: MetricLogger, run_dir: Path, last_round: int) -> None:
    """At the end: `selection/unit_ranks.json` + `unit_ranks.png` (paper Fig. 5) from every scored round.

    Reads the per-round JSON back from the run directory, so a resumed run covers its earlier rounds too
    (up to `last_round`). Nothing is written when no round had scores (rule-based selectors).
    """
    from f3ocus.tracking import selection_artifacts

    folder = run_dir / SELECTION_DIR
    payloads = [json.loads(path.read_text()) for path in sorted(folder.glob("round_*.json"))]
    history = selection_artifacts.rank_history([p for p in payloads if p["round"] <= last_round])
    if history is None:
        return
    path = folder / "unit_ranks.json"
    path.write_text(json.dumps(history))
    logger.log_artifact(path, SELECTION_DIR)
    figure = selection_artifacts.render_rank_heatmap(folder / "unit_ranks.png", history)
    logger.log_artifact(figure, SELECTION_DIR)


__all__ = ["SELECTION_DIR", "SCHEDULER_METRICS", "RoundRecord", "RunSummary", "round_record", "selection_payload",
           "selection_summary", "round_metrics", "scheduler_metrics", "run_summary", "log_selection",
           "rounds_logged_ahead", "log_unit_ranks"]
