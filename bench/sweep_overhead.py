"""Sweep overhead: the same N one-round cells as one Ray Tune sweep (`run_sweep`) and as a plain loop.

Run:   .venv/bin/python bench/sweep_overhead.py [--trials N [N2 ...]] [--concurrent C] [--engine local|ray]
       [--logs DIR] [--json FILE]   (N = 8, C = 1, local: ~1.5 min on 2 quiet cores, 4-6 min on busy ones)
Results are recorded in docs/BENCHMARKS.md, "## Sweep overhead".

The cells: configs/sweeps/smoke_2x2x2.yaml's `set:` (tiny preset, 1 round, 30 samples per client, F3OCUS
with NSGA-II, pop 10) over model.family [llava, vilt] x seeds 0..N/2-1 (N even), on `--engine` (local: the
trial process runs the whole federation; ray: a coordinator and a client actor per trial, as before, and
the plain loop then starts Ray for every cell too, so it is no longer plain). Every pass runs in a
fresh process and is timed from outside (interpreter start to exit), so each pays its own imports once:

- `warm`:  builds the foundation checkpoints and data stores the cells share (not timed: both passes then
           find them cached, as any sweep after the first does);
- `plain`: one Python process calls `run_experiment` on the N configs one after another (MLflow on, SQLite,
           as a single run logs);
- `sweep`: one process calls `run_sweep` (Ray started locally, Tune, MLflow parent + child runs; with C > 1
           and SQLite the sweep also starts its tracking server).

Both passes share one output dir (one data store, one MLflow SQLite file, experiments `plain` and
`sweep_overhead`). Per-trial overhead = (sweep - plain) / N. With C = 1 both passes do the cells one at a
time on one core each, so that difference is what Tune, Ray and the trial process add. Within one run, the
median gap between one cell's MLflow run and the next is each further cell's cost outside its run; the
sweep's gap minus the plain loop's is the marginal overhead per trial, and the rest of (sweep - plain) is
fixed per sweep. Several sizes (`--trials 2 8`) run one after another: compare them only at a similar load.
Fixed costs the sweep contains, measured alone in another fresh process: Ray start + shutdown
(`ray.init(address="local")`), `mlflow server` start (only paid with C > 1), and the import of torch +
transformers + f3ocus (paid once per new trial process). `in runs` is the sum of the cells' own run time
(the MLflow run's start to end) in each pass. Each cell's final eval/acc is compared between the passes
(same config and seed: the same figures).

Niceness: Ray starts its workers (the trial processes) at nice 15; the plain pass runs at nice 15 too.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ROOT / "configs/sweeps/smoke_2x2x2.yaml"
NICE = 15  # Ray's default worker niceness
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "RAY_AUTH_MODE": "disabled"}


def sweep_file(path: Path, trials: int, concurrent: int, engine: str, output_dir: Path) -> Path:
    """The benchmark's sweep: the smoke sweep's `set:`, a family x seed grid of `trials` cells."""
    import yaml

    smoke = yaml.safe_load(SMOKE.read_text())
    path.write_text(yaml.safe_dump({
        "name": "sweep_overhead", "base": str((SMOKE.parent / smoke["base"]).resolve()),
        "set": {**smoke["set"], "federation.engine": engine, "selection.solver": "nsga2",
                "tracking.output_dir": str(output_dir)},
        "grid": {"model.family": ["llava", "vilt"], "seed": list(range(trials // 2))},
        "max_concurrent_trials": concurrent, "scheduler": "none", "metric": "eval/acc", "mode": "max"}))
    return path


# ------------------------------------------------------------------------------------- passes (children)
def warm(path: Path) -> None:
    from f3ocus.sweeps import load_sweep
    from f3ocus.sweeps.runner import _prebuild
    from f3ocus.sweeps.spec import validate_trials

    _prebuild(validate_trials(load_sweep(path)), show=lambda line: None)


def plain(path: Path) -> None:
    """The cells one after another in this process, logged as single runs (same tracking as the sweep's)."""
    from f3ocus.experiment import run_experiment
    from f3ocus.sweeps import load_sweep
    from f3ocus.sweeps.spec import describe, trial_config, validate_trials

    spec = load_sweep(path)
    for values, _ in validate_trials(spec):
        cfg = trial_config(spec, values, experiment="plain", run_name=f"plain-{describe(values)}")
        run_experiment(cfg, show=lambda line: None, run_tags={"f3ocus.sweep.values": describe(values)})


def sweep(path: Path) -> None:
    from f3ocus.sweeps import load_sweep
    from f3ocus.sweeps.runner import run_sweep

    summary = run_sweep(load_sweep(path), show=lambda line: print(f"{time.time():.3f} {line}", flush=True))
    assert summary["num_errors"] == 0, summary


def fixed() -> None:
    """Fixed costs, each alone: imports (first, cold in this process), Ray start + shutdown, MLflow server."""
    started = time.perf_counter()
    import torch  # noqa: F401
    import transformers  # noqa: F401

    import f3ocus.experiment  # noqa: F401
    costs = {"imports_s": time.perf_counter() - started}
    import ray

    started = time.perf_counter()
    ray.init(address="local", include_dashboard=False, configure_logging=False, log_to_driver=False)
    costs["ray_init_s"] = time.perf_counter() - started
    started = time.perf_counter()
    ray.shutdown()
    costs["ray_shutdown_s"] = time.perf_counter() - started
    from f3ocus.sweeps import tracking

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        with tracking.MlflowServer(f"sqlite:///{tmp}/mlflow.db", Path(tmp) / "art", Path(tmp) / "server.log"):
            costs["mlflow_server_start_s"] = time.perf_counter() - started
    print(json.dumps(costs))


# ------------------------------------------------------------------------------------------------ driver
def timed(command: list[str], *, nice: int = 0) -> tuple[float, str, float]:
    """Wall seconds of `command` in a fresh process (at `nice` more niceness), its stdout, its start (Unix)."""
    started_at, started = time.time(), time.perf_counter()
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env={**os.environ, **OFFLINE},
                         preexec_fn=(lambda: os.nice(nice)) if nice else None)
    seconds = time.perf_counter() - started
    if run.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({run.returncode}):\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
    return seconds, run.stdout, started_at


def sweep_phases(stdout: str, started_at: float, wall: float) -> dict[str, float]:
    """Before Tune (start, imports, validation, data check, Ray and MLflow start), Tune's fit, after it
    (summary, children's statuses, Ray shutdown, exit), from the sweep's stamped `show` lines."""
    stamps = {}
    for line in stdout.splitlines():
        stamp, _, text = line.partition(" ")
        if text.startswith("tune: starting"):
            stamps["tune_start"] = float(stamp)
        elif text.startswith("tune: ") and "ended after" in text:
            stamps["tune_end"] = float(stamp)
    before = stamps["tune_start"] - started_at
    tune = stamps["tune_end"] - stamps["tune_start"]
    return {"sweep_before_tune_s": before, "sweep_tune_s": tune, "sweep_after_tune_s": wall - before - tune}


def runs_of(output_dir: Path, experiment: str) -> dict[str, dict]:
    """{cell values: {seconds in its MLflow run, final eval/acc, pid tag}} of the experiment's cell runs."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{output_dir}/mlflow.db")
    found = client.get_experiment_by_name(experiment)
    cells = {}
    for run in client.search_runs([found.experiment_id], max_results=1000):
        values = run.data.tags.get("f3ocus.sweep.values")
        if values is None or run.data.tags.get("f3ocus.sweep.role") == "parent":
            continue
        cells[values] = {"run_s": (run.info.end_time - run.info.start_time) / 1000,
                         "start": run.info.start_time / 1000, "end": run.info.end_time / 1000,
                         "acc": run.data.metrics.get("eval/acc"), "pid": run.data.tags.get("f3ocus.sweep.pid")}
    return cells


def median_gap(cells: dict[str, dict]) -> float:
    """Median seconds from one cell's run end to the next one's start (cells one at a time): what each
    further cell costs outside its run (its config, data and model set-up; in a sweep also Tune's turn)."""
    runs = sorted(cells.values(), key=lambda c: c["start"])
    return statistics.median(b["start"] - a["end"] for a, b in zip(runs, runs[1:])) if len(runs) > 1 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, nargs="+", default=[8],
                        help="cells (even): llava/vilt x N/2 seeds; several sizes run one after another")
    parser.add_argument("--concurrent", type=int, default=1, help="the sweep's max_concurrent_trials")
    parser.add_argument("--engine", choices=("local", "ray"), default="local")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--logs", help="keep each pass's output in this directory")
    parser.add_argument("--pass", dest="which", choices=("warm", "plain", "sweep", "fixed"), help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.which:
        for key, value in OFFLINE.items():
            os.environ.setdefault(key, value)
        sys.path.insert(0, str(ROOT))
        {"warm": lambda: warm(Path(args.file)), "plain": lambda: plain(Path(args.file)),
         "sweep": lambda: sweep(Path(args.file)), "fixed": fixed}[args.which]()
        return
    if any(n < 2 or n % 2 for n in args.trials):
        parser.error("--trials must be even and >= 2")
    sys.path.insert(0, str(ROOT))
    me = [sys.executable, str(Path(__file__).resolve())]
    fixed_costs = json.loads(timed([*me, "--pass", "fixed"])[1].strip().splitlines()[-1])
    sizes = [measure(me, n, args) for n in args.trials]
    figures = {"fixed_alone": fixed_costs, "sizes": sizes, "load_1min_end": os.getloadavg()[0]}
    report(args, fixed_costs, sizes)
    print(json.dumps(figures))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


def measure(me: list[str], n: int, args: argparse.Namespace) -> dict:
    """Both passes over `n` cells (shared output dir: one data store, one MLflow DB, two experiments)."""
    with tempfile.TemporaryDirectory(prefix="sweep_overhead-") as tmp:
        tmp = Path(tmp)
        path = sweep_file(tmp / "cells.yaml", n, args.concurrent, args.engine, tmp / "out")
        timed([*me, "--pass", "warm", "--file", str(path)])
        plain_s, plain_out, _ = timed([*me, "--pass", "plain", "--file", str(path)], nice=NICE)
        sweep_s, sweep_out, started_at = timed([*me, "--pass", "sweep", "--file", str(path)])
        if args.logs:
            Path(args.logs).mkdir(parents=True, exist_ok=True)
            (Path(args.logs) / f"plain-{n}.log").write_text(plain_out)
            (Path(args.logs) / f"sweep-{n}.log").write_text(sweep_out)
        plain_cells, sweep_cells = runs_of(tmp / "out", "plain"), runs_of(tmp / "out", "sweep_overhead")
    in_plain, in_sweep = (sum(c["run_s"] for c in cells.values()) for cells in (plain_cells, sweep_cells))
    same = [key for key in plain_cells if sweep_cells.get(key, {}).get("acc") == plain_cells[key]["acc"]]
    return {"trials": n, "concurrent": args.concurrent, "engine": args.engine, "plain_s": plain_s,
            "sweep_s": sweep_s, "extra_s": sweep_s - plain_s, "overhead_per_trial_s": (sweep_s - plain_s) / n,
            "sweep_over_plain": sweep_s / plain_s, "in_run_plain_s": in_plain, "in_run_sweep_s": in_sweep,
            "trial_processes": len({c["pid"] for c in sweep_cells.values()}),
            "same_acc": f"{len(same)}/{len(plain_cells)}", **sweep_phases(sweep_out, started_at, sweep_s),
            "gap_plain_s": median_gap(plain_cells), "gap_sweep_s": median_gap(sweep_cells),
            "load_1min": os.getloadavg()[0]}


def report(args: argparse.Namespace, fixed_costs: dict, sizes: list[dict]) -> None:
    print(f"fixed costs, each alone in a fresh process: imports (torch, transformers, f3ocus) "
          f"{fixed_costs['imports_s']:.1f} s, ray.init {fixed_costs['ray_init_s']:.1f} s + shutdown "
          f"{fixed_costs['ray_shutdown_s']:.1f} s, mlflow server start {fixed_costs['mlflow_server_start_s']:.1f} s")
    for f in sizes:
        n = f["trials"]
        print(f"{n} one-round cells ({f['engine']} engine), sweep with max_concurrent_trials={f['concurrent']}:")
        print(f"  plain loop, one process    {f['plain_s']:7.1f} s   (in runs {f['in_run_plain_s']:6.1f} s)")
        print(f"  run_sweep (Ray + Tune)     {f['sweep_s']:7.1f} s   (in runs {f['in_run_sweep_s']:6.1f} s; "
              f"{f['trial_processes']} trial process(es))")
        print(f"  overhead per trial         {f['overhead_per_trial_s']:7.2f} s   (sweep / plain = "
              f"{f['sweep_over_plain']:.2f})")
        print(f"  sweep phases: before Tune {f['sweep_before_tune_s']:.1f} s, Tune {f['sweep_tune_s']:.1f} s "
              f"(outside runs {(f['sweep_tune_s'] - f['in_run_sweep_s']) / n:.2f} s per trial), after Tune "
              f"{f['sweep_after_tune_s']:.1f} s")
        if f["concurrent"] == 1:
            marginal = f["gap_sweep_s"] - f["gap_plain_s"]
            print(f"  between two cells (median): plain {f['gap_plain_s']:.2f} s, sweep {f['gap_sweep_s']:.2f} s -> "
                  f"{marginal:.2f} s per further trial, {f['extra_s'] - marginal * n:.1f} s fixed per sweep")
        print(f"  same final eval/acc in both passes: {f['same_acc']} cells; load average {f['load_1min']:.2f}")


if __name__ == "__main__":
    main()
