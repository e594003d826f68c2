"""Read one MLflow experiment into the plain data the dashboard draws (MLflow only: no run dirs, no training code).

Everything comes through `MlflowClient`: the experiment's runs (params, tags, status), the metric
histories `eval/score` (or `eval/acc`) and `comm/bytes_up`, and the artifacts `selection/round_NNN.json`
(Pareto front and chosen point; only for runs that logged `select/front_size`) and
`selection/unit_ranks.json`.

Conventions:
- Final accuracy: the run's `eval/score` (mean over clients of accuracy for VQA clients, micro-F1 for
  multi-label ones; equal to `eval/acc` in a VQA-only run), or `eval/acc` for runs that predate it, at its
  largest step (the last round). A step logged twice (a resumed round) keeps its latest value.
- Methods × tasks table: FINISHED runs that have a final score, grouped by method × model family (rows) and
  `data.task` (columns); the method is `selection.method`, with `/selection.solver` appended for the
  multi-objective `f3ocus` selector (`f3ocus/nsga2`). Cells give mean ± sample standard deviation
  (ddof = 1; none for a single run) over the group's runs, i.e. over seeds. Runs of a cell that differ
  in other params too (a sweep's learning rates) are still pooled; the cell lists those params.
- Sweeps: a run is a sweep's parent when other runs carry its id in the `mlflow.parentRunId` tag. Its
  parallel-coordinates view has one axis per param whose value differs between the children (tracking.*
  and the client list left out), then the final score.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from f3ocus.config.schema import ConfigError

EVAL_ACC = "eval/acc"  # literal copies of f3ocus.tracking.names: this module reads MLflow, it imports no training code
EVAL_SCORE = "eval/score"  # preferred over eval/acc when a run logged it (F1 for multi-label clients)
COMM_BYTES_UP = "comm/bytes_up"
FRONT_SIZE = "select/front_size"
PARENT_TAG = "mlflow.parentRunId"
SELECTION_DIR = "selection"
UNIT_RANKS = "selection/unit_ranks.json"
MAX_HEATMAP_CLIENTS = 12  # per run; a 1,000-client federation shows its first 12 clients
# Params never used as parallel-coordinates axes: where results went, and the (long) client list.
SWEEP_SKIP_PREFIXES = ("tracking.", "federation.clients", "federation.resolved_budgets")
MAX_SWEEP_AXES = 12
HTTP_MAX_RETRIES, HTTP_TIMEOUT = 2, 20  # for an HTTP tracking server, unless $MLFLOW_HTTP_REQUEST_* are set


def collect(experiment: str, tracking_uri: str, *, max_heatmap_clients: int = MAX_HEATMAP_CLIENTS) -> dict[str, Any]:
    """Everything the dashboard shows for `experiment`, as JSON-ready data.

    Raises:
        ConfigError: no such tracking store (a sqlite file that does not exist) or no such experiment.
    """
    from mlflow.tracking import MlflowClient

    _check_store(tracking_uri)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per artifact is noise
    # An unreachable tracking server: fail in seconds, not after MLflow's minutes of retries.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(HTTP_MAX_RETRIES))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(HTTP_TIMEOUT))
    try:
        client = MlflowClient(tracking_uri)
        found = client.get_experiment_by_name(experiment)
        names = sorted(e.name for e in client.search_experiments()) if found is None else []
    except Exception as error:  # noqa: BLE001 - unknown scheme, server down, not an MLflow database
        first = (str(error).strip().splitlines() or [""])[0][:300]
        raise ConfigError("--tracking-uri", f"cannot read MLflow at {tracking_uri}: {type(error).__name__}: "
                                            f"{first}") from None
    if found is None:
        raise ConfigError("--experiment", f"no experiment {experiment!r} at {tracking_uri}; "
                                          f"experiments there: {', '.join(names) or 'none'}")
    runs = _all_runs(client, found.experiment_id)
    parents = {run.data.tags.get(PARENT_TAG) for run in runs} - {None}
    records = []
    with tempfile.TemporaryDirectory(prefix="f3ocus-report-") as tmp:
        for run in runs:
            records.append(_run_record(client, run, run.info.run_id in parents, Path(tmp), max_heatmap_clients))
    by_id = {r["id"]: r for r in records}
    return {
        "experiment": {"name": experiment, "id": found.experiment_id, "tracking_uri": tracking_uri,
                       "generated": time.strftime("%Y-%m-%d %H:%M:%S %Z")},
        "runs": [{k: v for k, v in r.items() if k not in ("fronts", "ranks", "params")} for r in records],
        "table": methods_by_tasks(records),
        "fronts": [{"run": r["id"], "rounds": r["fronts"]} for r in records if r["fronts"]],
        "ranks": [{"run": r["id"], **r["ranks"]} for r in records if r["ranks"]],
        "sweeps": [sweep_view(by_id[parent], [r for r in records if r["parent"] == parent])
                   for parent in sorted(parents) if parent in by_id],
    }


# ----------------------------------------------------------------------------------------------- runs
def _check_store(tracking_uri: str) -> None:
    parsed = urlparse(tracking_uri)
    if parsed.scheme == "sqlite":
        path = Path(unquote(tracking_uri[len("sqlite:///"):])) if tracking_uri.startswith("sqlite:///") else None
        if path is not None and not path.is_file():
            raise ConfigError("--tracking-uri", f"no MLflow database at {path} ({tracking_uri})")
    elif parsed.scheme in ("", "file"):
        path = Path(unquote(parsed.path))
        if not path.exists():
            raise ConfigError("--tracking-uri", f"no MLflow store at {path}")


def _all_runs(client, experiment_id: str) -> list:
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], max_results=1000, order_by=["attributes.start_time ASC"],
                                  page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _run_record(client, run, is_parent: bool, tmp: Path, max_heatmap_clients: int) -> dict[str, Any]:
    params, tags, metrics = run.data.params, run.data.tags, run.data.metrics
    headline = EVAL_SCORE if EVAL_SCORE in metrics else EVAL_ACC
    acc = _history(client, run.info.run_id, headline) if headline in metrics else []
    listing = _listing(client, run.info.run_id)
    record = {
        "id": run.info.run_id,
        "name": run.info.run_name or run.info.run_id[:8],
        "status": run.info.status,
        "parent": tags.get(PARENT_TAG),
        "is_parent": is_parent,
        "method": method_label(params),
        "family": params.get("model.family", "?"),
        "task": params.get("data.task", "?"),
        "seed": params.get("seed"),
        "group": None,
        "acc": acc,
        "bytes_up": _history(client, run.info.run_id, COMM_BYTES_UP) if COMM_BYTES_UP in metrics else [],
        "final_acc": acc[-1][1] if acc else None,
        "params": dict(params),
        "fronts": _fronts(client, run.info.run_id, listing, tmp) if FRONT_SIZE in metrics else [],
        "ranks": _ranks(client, run.info.run_id, tmp, max_heatmap_clients) if UNIT_RANKS in listing else None,
    }
    record["group"] = group_label(record)
    return record


def method_label(params: dict[str, str]) -> str:
    """`selection.method`, plus `/solver` for the f3ocus selector (the solver is only read by it)."""
    method = params.get("selection.method", "?")
    return f"{method}/{params['selection.solver']}" if method == "f3ocus" and "selection.solver" in params else method


def group_label(record: dict[str, Any]) -> str:
    return f"{record['method']} · {record['family']} · {record['task']}"


def _history(client, run_id: str, key: str) -> list[list[float]]:
    """[[step, value], ...] by step; of values logged at the same step the latest (by timestamp) wins."""
    latest: dict[int, tuple[int, float]] = {}
    for metric in client.get_metric_history(run_id, key):
        if metric.step not in latest or metric.timestamp >= latest[metric.step][0]:
            latest[metric.step] = (metric.timestamp, metric.value)
    return [[step, _finite(value)] for step, (_, value) in sorted(latest.items())]


def _listing(client, run_id: str) -> set[str]:
    try:
        return {info.path for info in client.list_artifacts(run_id, SELECTION_DIR) if not info.is_dir}
    except Exception:  # noqa: BLE001 - an unreachable artifact store leaves the artifact panels empty
        return set()


def _download_json(client, run_id: str, path: str, tmp: Path) -> Any:
    target = tmp / run_id
    target.mkdir(exist_ok=True)
    return json.loads(Path(client.download_artifacts(run_id, path, str(target))).read_text())


def _fronts(client, run_id: str, listing: set[str], tmp: Path) -> list[dict[str, Any]]:
    """Per round with a front: {round, front: P×[importance, variance], chosen: index or None}."""
    rounds = []
    for path in sorted(p for p in listing if Path(p).name.startswith("round_") and p.endswith(".json")):
        payload = _download_json(client, run_id, path, tmp)
        if payload.get("front"):
            rounds.append({"round": int(payload["round"]), "front": _finite(payload["front"]),
                           "chosen": payload.get("chosen")})
    return sorted(rounds, key=lambda r: r["round"])


def _ranks(client, run_id: str, tmp: Path, max_clients: int) -> dict[str, Any]:
    """`unit_ranks.json` cut to the first `max_clients` clients (a 1,000-client heatmap is unreadable anyway)."""
    history = _download_json(client, run_id, UNIT_RANKS, tmp)
    shown = list(history["clients"])[:max_clients]
    return {"rounds": history["rounds"], "units": history["units"], "clients": shown,
            "num_clients": len(history["clients"]),
            "ranks": {c: history["ranks"][c] for c in shown},
            "revised_ranks": {c: history.get("revised_ranks", {}).get(c) for c in shown},
            "trained": {c: history["trained"][c] for c in shown}}


# ---------------------------------------------------------------------------------------------- views
def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (ddof = 1; None for one value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def methods_by_tasks(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Rows (method, family) × columns task: mean ± std of the final accuracy over FINISHED runs."""
    cells: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if r["status"] == "FINISHED" and r["final_acc"] is not None and not r["is_parent"]:
            cells[(r["method"], r["family"], r["task"])].append(r)
    rows = sorted({(m, f) for m, f, _ in cells})
    tasks = sorted({t for _, _, t in cells})
    out_cells = []
    for (method, family, task), members in sorted(cells.items()):
        mean, std = mean_std([m["final_acc"] for m in members])
        out_cells.append({"method": method, "family": family, "task": task, "mean": mean, "std": std,
                          "n": len(members), "seeds": sorted(str(m["seed"]) for m in members),
                          "runs": [m["id"] for m in members], "differs_in": _differing_params(members)})
    excluded = defaultdict(int)
    for r in records:
        if not r["is_parent"] and r["final_acc"] is not None and r["status"] != "FINISHED":
            excluded[r["status"]] += 1
    return {"rows": [list(row) for row in rows], "tasks": tasks, "cells": out_cells, "excluded": dict(excluded)}


def _differing_params(members: list[dict[str, Any]]) -> list[str]:
    """Params other than the seed (and where results went) whose values differ between a cell's runs."""
    keys = sorted({k for m in members for k in m["params"]})
    return [k for k in keys if k != "seed" and not k.startswith(SWEEP_SKIP_PREFIXES)
            and len({m["params"].get(k) for m in members}) > 1]


def sweep_view(parent: dict[str, Any], children: list[dict[str, Any]]) -> dict[str, Any]:
    """Parallel coordinates of one sweep: an axis per param that varies across children, then the final score."""
    scored = [c for c in children if c["final_acc"] is not None]
    keys = sorted({k for c in scored for k in c["params"]})
    varying = [k for k in keys if not k.startswith(SWEEP_SKIP_PREFIXES)
               and len({c["params"].get(k) for c in scored}) > 1][:MAX_SWEEP_AXES]
    axes = []
    for key in varying:
        values = [c["params"].get(key) for c in scored]
        numbers = [_number(v) for v in values]
        if all(n is not None for n in numbers):
            axes.append({"name": key, "kind": "numeric", "min": min(numbers), "max": max(numbers)})
        else:
            axes.append({"name": key, "kind": "categorical",
                         "categories": sorted({str(v) for v in values}, key=_natural)})
    accs = [c["final_acc"] for c in scored]
    axes.append({"name": EVAL_SCORE + " (final)", "kind": "numeric", "min": min(accs, default=0.0),
                 "max": max(accs, default=1.0)})
    lines = [{"run": c["id"], "name": c["name"],
              "values": [(_number(c["params"].get(k)) if a["kind"] == "numeric" else str(c["params"].get(k)))
                         for k, a in zip(varying, axes)] + [c["final_acc"]],
              "acc": c["final_acc"]} for c in scored]
    return {"parent": parent["id"], "name": parent["name"], "num_children": len(children),
            "unscored": len(children) - len(scored), "axes": axes, "lines": lines}


def _number(value: Any) -> float | None:
    if value is None or str(value).strip().lower() in ("true", "false", "none", "null", ""):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _natural(text: str) -> tuple:
    number = _number(text)
    return (0, number, "") if number is not None else (1, 0.0, text)


def _finite(value: Any) -> Any:
    """NaN/Inf -> None, recursively (the page parses the data as strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
