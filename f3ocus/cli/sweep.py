"""`f3ocus sweep` and `f3ocus mlflow-server`: a Ray Tune sweep of experiments, and the MLflow server it logs to.

`f3ocus sweep SWEEP.yaml [--set key=value ...] [--check]`: `--set` keys address the sweep file
(`max_concurrent_trials=1`, `set.federation.rounds=3`, `grid.seed=[0,1,2]`); `--check` validates the
sweep and every trial config, then exits without starting Ray. Exit 0 when every trial ran, 1 when some
trial failed, 2 for an invalid sweep (printed by `f3ocus.cli.main` as `config error: <field>: ...`).

`f3ocus mlflow-server [--port 5000] [--backend-store-uri URI] [--artifacts-destination DIR]` runs
`mlflow server` in the foreground on 127.0.0.1 (default store `runs/mlflow.db`, artifacts
`runs/mlartifacts`); point runs and sweeps at it with `MLFLOW_TRACKING_URI=http://127.0.0.1:5000` or
`tracking.tracking_uri`.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
from pathlib import Path
from typing import Any


def add_parsers(commands: Any) -> None:
    """Add `sweep` and `mlflow-server` to the `f3ocus` subcommands."""
    sweep = commands.add_parser("sweep", help="run a Ray Tune sweep of experiments (configs/sweeps/*.yaml)")
    sweep.add_argument("sweep", help="sweep YAML, e.g. configs/sweeps/smoke_2x2x2.yaml")
    sweep.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a sweep-file key, repeatable: --set max_concurrent_trials=1 "
                            "--set set.federation.rounds=3 --set grid.seed=[0,1]")
    sweep.add_argument("--check", action="store_true", help="validate the sweep and every trial config, then exit")
    sweep.add_argument("--output-json", help="also write the sweep summary JSON here")
    sweep.set_defaults(handler=_sweep)

    server = commands.add_parser("mlflow-server", help="run an MLflow tracking server on 127.0.0.1 (foreground)")
    server.add_argument("--port", type=int, default=5000)
    server.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine "
                        "only; a multi-node cluster needs an address its nodes can reach)")
    server.add_argument("--backend-store-uri", help="default: sqlite:///<cwd>/runs/mlflow.db")
    server.add_argument("--artifacts-destination", help="default: runs/mlartifacts")
    server.add_argument("--workers", type=int, default=1, help="web workers (1 for a SQLite store)")
    server.set_defaults(handler=_mlflow_server)


def _sweep(args: argparse.Namespace) -> int:
    from f3ocus.sweeps.runner import run_sweep
    from f3ocus.sweeps.spec import load_sweep, validate_trials

    spec = load_sweep(args.sweep, args.overrides)
    if args.check:
        checked = validate_trials(spec)
        print(f"ok: sweep {spec.name}: {spec.num_trials} trial(s) of {spec.base.name}, "
              f"{len(checked)} trial config(s) validated")
        return 0
    summary = run_sweep(spec)
    if args.output_json:
        import json

        Path(args.output_json).write_text(json.dumps(summary, indent=2, default=str))
    print_sweep_summary(summary)
    return 1 if summary["num_errors"] else 0


def print_sweep_summary(summary: dict[str, Any]) -> None:
    """One line per trial (status, values, metric), the best trial, where to look in MLflow."""
    metric = summary["metric"]
    print(f"\nsweep {summary['sweep']}: {summary['num_trials']} trials, {summary['num_errors']} failed, "
          f"{summary['num_stopped']} stopped early")
    for trial in summary["trials"]:
        value = trial["metrics"].get(metric)
        shown = f"{value:.4f}" if isinstance(value, (int, float)) else "-"
        values = ", ".join(f"{k}={v}" for k, v in trial["values"].items())
        print(f"  {trial['status']:7s} {metric} {shown:>7s}  rounds {trial['rounds']}/{trial['rounds_planned']}  "
              f"{values}" + (f"  error: {trial['error']}" if trial["error"] else ""))
    best = summary["best"]
    if best is not None:
        print(f"best: {metric} {best['metrics'][metric]:.4f} with "
              + ", ".join(f"{k}={v}" for k, v in best["values"].items()) + f" (MLflow run {best['mlflow_run_id']})")
    print(f"summary: {summary['sweep_dir']}/sweep_result.json")
    uri = summary["tracking_uri"]
    if summary["parent_run_id"]:
        print(f"MLflow parent run id: {summary['parent_run_id']} (experiment {summary['experiment_id']})")
        if uri and uri.startswith("sqlite"):
            print(f"open it: mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000")
        elif uri:
            print(f"open it: {uri}/#/experiments/{summary['experiment_id']}")


def _mlflow_server(args: argparse.Namespace) -> int:
    from f3ocus.sweeps.tracking import die_with_parent, server_command, stop_group

    runs = Path("runs").resolve()
    backend = args.backend_store_uri or f"sqlite:///{runs}/mlflow.db"
    if backend.startswith("sqlite:///"):
        Path(backend.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True, exist_ok=True)
    artifacts = Path(args.artifacts_destination or runs / "mlartifacts")
    artifacts.mkdir(parents=True, exist_ok=True)
    command = server_command(backend, artifacts, host=args.host, port=args.port, workers=args.workers)
    print(f"MLflow tracking server on http://{args.host}:{args.port} (store {backend}, artifacts {artifacts}); "
          f"use it with MLFLOW_TRACKING_URI=http://{args.host}:{args.port}. Ctrl-C stops it.", flush=True)
    # Its own session: Ctrl-C or SIGTERM reach only us, and we stop the server's whole process group
    # (mlflow's CLI alone may outlive a Ctrl-C); if we are killed outright, Linux sends it SIGTERM.
    process = subprocess.Popen(command, start_new_session=True, preexec_fn=die_with_parent)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return process.wait()
    except KeyboardInterrupt:
        stop_group(process)
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt
