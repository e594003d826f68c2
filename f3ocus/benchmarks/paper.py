"""`f3ocus bench paper`: the paper's comparison (docs/METHOD.md §5) as a resumable grid of ordinary experiments.

    f3ocus bench paper [--quick] [--seeds K] [--tasks t1,t4] [--methods f3ocus,snip] [--models vilt,blip]
                       [--jobs 2] [--engine local|ray] [--output-dir runs] [--set key=value ...]

Order: build and schema-check every cell's config (exit 2 naming the cell and field, before anything runs) ->
open (or, on a re-run, reopen) the parent MLflow run -> run each cell not already done as one Ray Tune trial
(`f3ocus.benchmarks.tune_grid`, `--jobs` trials at a time, each in a placement group sized from the cell's
config; Ray joined at $RAY_ADDRESS, else started here) through `run_experiment` (the same coordinator, worker,
aggregation and tracking as `f3ocus run`; `--engine local` by default: the whole federation inside the trial
process instead of actors), each as an MLflow child run -> the driver writes `cells/<cell>.json` as each trial
ends (a crash or Ctrl-C loses at most the running cells; the same command resumes) -> Tables A and B printed,
written to `tables.md`/`tables.json` and logged on the parent. When cells run concurrently on a SQLite store, a
local MLflow server sits in front of it (SQLite has one writer), as in sweeps.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from f3ocus.benchmarks import tables
from f3ocus.benchmarks.grid import PROFILES, TASKS_DIR, Cell, build_cells
from f3ocus.benchmarks.methods import METHODS, PEFT_METHODS, SELECTION_METHODS
from f3ocus.benchmarks.tune_grid import run_grid
from f3ocus.config.schema import ConfigError, ExperimentConfig

PARENT_TAG = "mlflow.parentRunId"
EXPERIMENT = "bench-paper"
BYTES_PER_VALUE = {"float32": 4, "float16": 2, "bfloat16": 2}


def run_paper_bench(*, profile: str = "full", tasks: tuple[str, ...] | None = None,
                    methods: tuple[str, ...] | None = None, models: tuple[str, ...] | None = None,
                    seeds: int | None = None, jobs: int = 1, engine: str = "local", output_dir: Path = Path("runs"),
                    tracking_uri: str | None = None, experiment: str = EXPERIMENT, overrides: tuple[str, ...] = (),
                    tasks_dir: Path = TASKS_DIR, show: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume) the grid; return {"cells": [...summaries], "failed": [...ids], "tables": {...}, "dir"}."""
    from f3ocus.prepared import OFFLINE_ENV
    from f3ocus.tracking.mlflow_logger import resolve_tracking_uri

    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    output_dir = output_dir.expanduser().resolve()
    bench_dir = output_dir / "bench" / f"paper-{profile}"
    store_uri = tracking_uri or resolve_tracking_uri(None, output_dir)
    cells = build_cells(PROFILES[profile], tasks=tasks, methods=methods, models=models, seeds=seeds,
                        engine=engine, overrides=overrides, tasks_dir=tasks_dir,
                        tracking={"experiment": experiment, "output_dir": str(bench_dir / "runs")})
    _validate(cells, show)
    done = {cell.id: result for cell in cells if (result := _finished(bench_dir, cell)) is not None}
    pending = [cell for cell in cells if cell.id not in done]
    show(f"bench paper ({profile}): {len(cells)} cells, {len(done)} already done, {len(pending)} to run; "
         f"{bench_dir}")
    bench_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        uri = _cell_tracking_uri(stack, store_uri, experiment, output_dir, bench_dir,
                                 concurrent=jobs > 1 and len(pending) > 1)
        parent = _open_parent(uri, experiment, bench_dir, output_dir, profile, cells)
        failed: list[str] = []

        def on_cell(summary: dict[str, Any], index: int, total: int) -> None:
            done[summary["cell"]] = summary
            status = (f"score {summary['score']:.3f}" if summary["status"] == "ok"
                      else f"FAILED: {summary['error'].splitlines()[-1][:200]}")
            show(f"[{index}/{total}] {summary['cell']:<32s} {status}  ({summary['seconds']:.0f} s)")
            if summary["status"] != "ok":
                failed.append(summary["cell"])

        run_grid(pending, tracking_uri=uri, parent_run_id=parent.run_id, jobs=jobs, bench_dir=bench_dir,
                 bench="paper", on_cell=on_cell)
        results = [done[cell.id] for cell in cells]
        report = _tables(cells, results)
        _write_json(bench_dir / "tables.json", report)
        (bench_dir / "tables.md").write_text(report["markdown"])
        parent.log_dict(report, "bench/tables.json")
        parent.log_artifact(bench_dir / "tables.md", "bench")
        parent.log_metrics({f"table_a/{row['method']}": row["row_mean"] for row in report["table_a"]["rows"]
                            if row["row_mean"] == row["row_mean"]}, step=0)
        parent.close("FINISHED" if not failed else "FAILED")
    show("")
    show(report["markdown"])
    show(f"\ncells: {bench_dir / 'cells'}  tables: {bench_dir / 'tables.md'}  MLflow: {store_uri} "
         f"(experiment {experiment}, parent run {parent.run_id})")
    if failed:
        show(f"{len(failed)} cell(s) failed (re-run the same command to retry them): {', '.join(failed)}")
    return {"cells": results, "failed": failed, "tables": report, "dir": str(bench_dir)}


def _cell_tracking_uri(stack: contextlib.ExitStack, store_uri: str, experiment: str, output_dir: Path,
                       bench_dir: Path, *, concurrent: bool) -> str:
    """The URI cells log to: the store itself, or, when cells run concurrently on a SQLite store (one writer), a
    local MLflow server in front of it that `stack` stops at the end."""
    if not (concurrent and store_uri.startswith("sqlite")):
        return store_uri
    from f3ocus.sweeps.tracking import MlflowServer, ensure_experiment

    # Created on the store itself first, so its artifacts stay plain files that a later run with the
    # sqlite URI (a resumed bench, `mlflow ui`) reads without this temporary server.
    ensure_experiment(store_uri, experiment, output_dir / "mlartifacts")
    server = stack.enter_context(MlflowServer(store_uri, output_dir / "mlartifacts", bench_dir / "mlflow_server.log"))
    return server.uri


# ------------------------------------------------------------------------------------------ before running
def _validate(cells: list[Cell], show: Callable[[str], None]) -> None:
    """Cross-section checks (budgets vs the model's units, ...) once per distinct config shape."""
    from f3ocus.config.validate import validate

    seen: set[tuple[str, str, str]] = set()
    for cell in cells:
        key = (cell.task, cell.model, cell.method)
        if key in seen:
            continue
        seen.add(key)
        try:
            validate(cell.config)
        except ConfigError as error:
            raise ConfigError(error.field, f"{error.message} (cell {cell.id})") from None


def _finished(bench_dir: Path, cell: Cell) -> dict[str, Any] | None:
    """The cell's saved summary if it finished with this same config, else None (it runs again)."""
    path = bench_dir / "cells" / f"{cell.id}.json"
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return summary if summary.get("status") == "ok" and summary.get("config_hash") == cell.config_hash else None


def _open_parent(uri: str, experiment: str, bench_dir: Path, output_dir: Path, profile: str, cells: list[Cell],
                 bench: str = "paper"):
    """The bench's parent run: the one this bench dir already has (a resumed bench), else a new one."""
    from f3ocus.tracking import MlflowLogger

    marker = bench_dir / "parent_run.json"
    previous = json.loads(marker.read_text()) if marker.exists() else {}
    run_id = previous.get("run_id") if previous.get("experiment") == experiment else None
    if run_id is not None:
        try:
            from mlflow.tracking import MlflowClient

            MlflowClient(uri).get_run(run_id)
        except Exception:  # noqa: BLE001 - a parent from another store: start a new one
            run_id = None
    logger = MlflowLogger(uri, experiment, f"bench-{bench}-{profile}", output_dir / "mlartifacts",
                          tags={"f3ocus.bench": bench, "f3ocus.bench.role": "parent"}, run_id=run_id,
                          buffer_path=bench_dir / "mlflow_buffer.jsonl")
    if run_id is None:
        logger.log_params({"profile": profile, "cells": len(cells),
                           "tasks": ",".join(sorted({c.task for c in cells})),
                           "models": ",".join(sorted({c.model for c in cells})),
                           "methods": ",".join(dict.fromkeys(c.method for c in cells)),
                           "seeds": len({c.seed for c in cells})})
        _write_json(marker, {"run_id": logger.run_id, "experiment": experiment})
    return logger


# ------------------------------------------------------------------------------------------ running
def cell_head(cell: Cell) -> dict[str, Any]:
    """The keys every cell summary starts with, whatever became of the cell."""
    return {"cell": cell.id, "task": cell.task, "model": cell.model, "method": cell.method, "seed": cell.seed,
            "config_hash": cell.config_hash}


def run_cell(cell: Cell, uri: str, parent_run_id: str, log_dir: str, bench: str = "paper", *,
             placement: Any = None) -> dict[str, Any]:
    """Run one cell as an MLflow child of the parent; return its summary (never raises: failures are data).

    `placement`: a `ray_engine.ActorPlacement` for `federation.engine: ray` cells run inside a Tune trial.
    """
    from f3ocus.experiment import run_experiment

    cell_id, method = cell.id, cell.method
    summary: dict[str, Any] = cell_head(cell)
    config = dataclasses.replace(cell.config, tracking=dataclasses.replace(cell.config.tracking, tracking_uri=uri))
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with open(Path(log_dir) / f"{cell_id}.log", "w") as log:
        try:
            tags = {PARENT_TAG: parent_run_id, "f3ocus.bench": bench, "f3ocus.bench.cell": cell_id,
                    "f3ocus.bench.task": cell.task, "f3ocus.bench.method": method, "f3ocus.bench.seed": f"s{cell.seed}"}
            result = run_experiment(config, show=lambda line: print(line, file=log, flush=True), placement=placement,
                                    run_tags=tags)
            summary.update(status="ok", **cell_figures(config, result))
            if method in METHODS and METHODS[method].group == "peft":
                summary["gflop_per_client_round"] = round_gflops(config, result)
                summary["gflop_method"] = "counted: torch FlopCounterMode, one batch, scaled to a round"
        except Exception as error:  # noqa: BLE001 - one cell's failure is recorded, the grid goes on
            traceback.print_exc(file=log)
            summary.update(status="failed", error=f"{type(error).__name__}: {error}")
    summary["seconds"] = time.perf_counter() - started
    return summary


def cell_figures(config: ExperimentConfig, result: dict[str, Any]) -> dict[str, Any]:
    """Score and per-client communication figures of a finished run's `result.json` content."""
    final = result["final"]
    score = final.get("score", final["accuracy"])
    per_client = {client: values.get("score", values["accuracy"]) for client, values in final["per_client"].items()}
    trained = [record for record in result["history"] if record.get("round", 0) >= 1]
    uploads = [size for record in trained for size in record.get("bytes_up_per_client", {}).values()]
    mean_bytes = sum(uploads) / len(uploads) if uploads else float("nan")
    # Client state a client trains and keeps (FedDAT's personal adapters, float32): trained, never uploaded.
    kept = [record.get("state_bytes_up_per_client", {}).get(client, 0) for record in trained
            for client in record.get("bytes_up_per_client", {})]
    mean_kept = sum(kept) / len(kept) if kept else 0.0
    baseline = result.get("majority_baseline", {})
    rounds = [record for record in result["history"] if "score" in record]
    return {"score_per_round": [float(record["score"]) for record in rounds],  # round 0 = before training
            "distinct_units_per_round": [len({unit for units in (record.get("selected") or {}).values()
                                              for unit in units}) for record in trained],
            "num_units": len(result.get("units", ())) or None,
            "score": float(score), "per_client": per_client, "metric": final.get("metric", "accuracy"),
            # Methods with client state (FedDAT): the mean score of each client with its own state.
            "personal_score": final["personal"]["score"] if "personal" in final else None,
            "majority_score": baseline.get("score", baseline.get("accuracy")),
            "upload_mbit_per_client_round": mean_bytes * 8 / 1e6,
            "trainable_params_per_client_round": mean_bytes / BYTES_PER_VALUE[config.federation.upload_dtype]
            + mean_kept / BYTES_PER_VALUE["float32"],
            "state_mbit_per_client_round": mean_kept * 8 / 1e6,
            "rounds": result["rounds"], "clients": sorted(per_client),
            "budgets": list(config.federation.budgets) if isinstance(config.federation.budgets, tuple)
            else config.federation.budgets, "mlflow_run_id": result.get("mlflow_run_id")}


def round_gflops(config: ExperimentConfig, result: dict[str, Any]) -> float:
    """Mean over clients of one round's counted GFLOP (training with round 1's selection, + scoring if the
    method scores), from one batch per client on a fresh worker."""
    from f3ocus.experiment import build_data
    from f3ocus.prepared import Prepared, worker_spec
    from f3ocus.federated.messages import GlobalState
    from f3ocus.federated.worker import ClientWorker
    from f3ocus.selection.registry import SELECTORS

    store = build_data(config)
    prepared = Prepared(Path(result["run_dir"]), store.root, config.model.cache_dir, None, None)
    worker = ClientWorker(worker_spec(config, prepared))
    info = worker.model_info()
    state = GlobalState(-1, info.initial_tensors)
    first = next(record for record in result["history"] if record.get("round") == 1)
    scores = SELECTORS[config.selection.method].needs_scores
    totals = []
    for client, units in first["selected"].items():
        mask = tuple(unit in set(units) for unit in info.units)
        flops = worker.count_flops(state, client, mask, score=scores)
        totals.append((flops["train"] + flops["score"]) / 1e9)
    return sum(totals) / len(totals)


# ------------------------------------------------------------------------------------------ tables
def _tables(cells: list[Cell], results: list[dict[str, Any]]) -> dict[str, Any]:
    tasks = list(dict.fromkeys(cell.task for cell in cells))
    models = list(dict.fromkeys(cell.model for cell in cells))
    present = {cell.method for cell in cells}
    selection = [m.name for m in SELECTION_METHODS if m.name in present]
    peft = [m.name for m in PEFT_METHODS if m.name in present]
    table_a = tables.table_a(results, selection, [(task, model) for task in tasks for model in models])
    table_b = [tables.table_b(results, peft, tasks[0], model) for model in models] if peft else []
    parts = ["## Table A: final score x100 (accuracy T1-T3, micro-F1 T4-T5, per-client metric mean T6), "
             "mean ± std over seeds", "", tables.markdown_a(table_a), "", "Per-client budgets (units per round, "
             "clients in sorted order): " + "; ".join(f"{task.upper()} {_budgets(cells, task)}" for task in tasks),
             "", "Ranking by row mean: " + " > ".join(f"{label} {mean:.1f}" for label, mean in tables.ranking(table_a))]
    for table in table_b:
        parts += ["", f"## Table B: efficiency and per-client score on {table['task'].upper()}, {table['model']} "
                      "(per client per round, mean over clients, rounds and seeds)", "", tables.markdown_b(table)]
    return {"table_a": table_a, "table_b": table_b, "markdown": "\n".join(parts) + "\n"}


def _budgets(cells: list[Cell], task: str) -> str:
    budgets = next(cell.config.federation.budgets for cell in cells if cell.task == task)
    return str(list(budgets)) if isinstance(budgets, tuple) else f"{budgets} each"


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=float))
    tmp.replace(path)

