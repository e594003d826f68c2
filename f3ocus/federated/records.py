"""A round's record, the run's summary, and what of them goes to MLflow.

The record of a round (`round_record`) is a JSON-ready dict: the checkpoint's history, `result.json`'s
`history`, the progress lines and a sweep's per-round report all read it. `round_metrics` is the one
mapping of a record to its MLflow metrics (`f3ocus.tracking.names`), `run_summary` is the summary
`Coordinator.finish` returns and logs as `summary.json`; `rounds_logged_ahead` tells a resumed run which
rounds' metrics MLflow holds already. The per-round selection artifacts
(`selection/round_NNN.json`, the front figure) and the end-of-run unit ranks (paper Fig. 5) are
written under `SELECTION_DIR` of the run dir and logged under the same artifact folder
(`log_selection`, `log_unit_ranks`).
"""

from __future__ import annotations

import json
import time
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


def round_record(round_idx: int, start: float, evals: Sequence[EvalReport | WorkerError], federation: Federation,
                 units: Sequence[str], masks: np.ndarray | None, updates: Sequence[UpdateSummary],
                 failed: Sequence[str], down_bytes: int, tally: RoundTally) -> dict[str, Any]:
    """The record of round `round_idx` (0: the initial evaluation, `masks` None), without its `selection`.

    Args:
        start: `time.perf_counter()` when the round began (the record's `seconds` run up to now).
        masks: (N, L) bool, the round's selection.
        failed: clients that failed scoring or training (those that failed evaluation are added here).
        down_bytes: bytes of the broadcast state, sent to every client.
        tally: the round's counters; the record's `phase_seconds` is its dict (a later lap shows in it).

    Raises:
        RuntimeError: every client failed to evaluate.
    """
    reports = [r for r in evals if isinstance(r, EvalReport)]
    failed = sorted(set(failed) | {r.client for r in evals if isinstance(r, WorkerError)})
    if not reports:
        raise RuntimeError(f"round {round_idx}: every client failed to evaluate: {evals}")
    return {
        "round": round_idx,
        # accuracy, loss, score, per_client (+ f1, f1_macro, subset_accuracy with multi-label clients)
        **evaluation.summarise_reports(reports, federation.client_kinds),
        "train_loss": float(np.mean([u.train_loss for u in updates])) if updates else None,
        "bytes_up": int(sum(u.num_bytes for u in updates)),
        "bytes_down": int(down_bytes * len(federation.clients)),
        "bytes_up_per_client": {u.client: u.num_bytes for u in updates},
        # Client state sent with tasks and returned with updates (never leaves a real client): apart from bytes_up.
        "state_bytes": int(tally.state_bytes),
        "state_bytes_up_per_client": {u.client: u.state_bytes for u in updates if u.state_bytes},
        "seconds": time.perf_counter() - start,
        # The same dict object as `tally.phase_seconds`: "log" is added after logging.
        "phase_seconds": tally.phase_seconds,
        "worker_seconds": dict(tally.worker_seconds),
        "failed_clients": failed,
        "selected": None if masks is None else {
            c: [u for u, chosen in zip(units, masks[i]) if chosen] for i, c in enumerate(federation.clients)},
    }


def selection_payload(round_idx: int, clients: Sequence[str], units: Sequence[str], masks: np.ndarray,
                      scores: np.ndarray | None, decision: SelectionResult | None) -> dict[str, Any]:
    """The round's selection as JSON (`selection_artifacts.round_payload`): masks, objectives, front."""
    from f3ocus.tracking import selection_artifacts  # pymoo (objectives) and, when drawing, matplotlib

    return selection_artifacts.round_payload(round_idx, clients, units, masks, scores, decision)


def selection_summary(payload: dict[str, Any]) -> dict[str, Any]:
    """The record's small `selection` entry (importance, variance, front_size) of a round's payload."""
    from f3ocus.tracking import selection_artifacts

    return selection_artifacts.round_summary(payload)


def round_metrics(record: dict[str, Any]) -> dict[str, float]:
    """The MLflow metrics of a round's record (step: its round), without the `select/*` ones (`log_selection`)."""
    metrics = {names.EVAL_ACC: record["accuracy"], names.EVAL_LOSS: record["loss"],
               names.COMM_BYTES_UP: record["bytes_up"], names.COMM_BYTES_DOWN: record["bytes_down"],
               names.COMM_STATE_BYTES: record["state_bytes"],
               names.ROUND_SECONDS: record["seconds"], names.FED_FAILED: len(record["failed_clients"])}
    for client, values in record["per_client"].items():
        metrics[names.client_metric(client, "acc")] = values["accuracy"]
        metrics[names.client_metric(client, "loss")] = values["loss"]
    for client, num_bytes in record["bytes_up_per_client"].items():
        metrics[names.client_metric(client, "bytes_up")] = num_bytes
    metrics.update(evaluation.score_metrics(record))
    if record["train_loss"] is not None:
        metrics[names.TRAIN_LOSS] = record["train_loss"]
    for phase, seconds in record["phase_seconds"].items():
        metrics[names.time_metric(phase)] = seconds
    return metrics


def run_summary(state: FederationState, federation: Federation, info: ModelInfo, logger: MetricLogger,
                startup_seconds: dict[str, Any]) -> dict[str, Any]:
    """The run's summary (`result.json` without the experiment's own keys): final figures, history, totals."""
    last = state.history[-1]
    return {
        "rounds": state.round_idx,
        "final": evaluation.final_summary(last, federation.client_kinds),
        "history": state.history,
        "majority_baseline": evaluation.baseline_summary(federation.majority_baseline, federation.majority_f1,
                                                         federation.client_kinds),
        "mlflow_run_id": logger.run_id,
        "mlflow_experiment_id": getattr(logger, "experiment_id", None),
        "bytes_up_total": int(sum(r["bytes_up"] for r in state.history)),
        "bytes_down_total": int(sum(r["bytes_down"] for r in state.history)),
        "state_bytes_total": int(sum(r.get("state_bytes", 0) for r in state.history)),
        "units": list(info.units),
        "unit_num_parameters": info.unit_num_parameters,
        "startup_seconds": startup_seconds,
    }


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

    Asked of the logger (`logged_steps`); when it cannot tell (MLflow unreachable), nothing is skipped.
    """
    if resume is None or resume.loaded_from is None or resume.loaded_from.name != PREVIOUS_CHECKPOINT:
        return set()
    logged_steps = getattr(logger, "logged_steps", None)
    steps = logged_steps(names.EVAL_ACC) if logged_steps is not None else None
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


__all__ = ["SELECTION_DIR", "round_record", "selection_payload", "selection_summary", "round_metrics", "run_summary",
           "log_selection", "rounds_logged_ahead", "log_unit_ranks"]
