"""Start-up of `f3ocus run` on Ray: from the command's start to the first round (round 0, the initial evaluation).

Run:   .venv/bin/python bench/startup.py [--repeats K] [--set KEY=VALUE ...]   (~1 min per repeat)
       .venv/bin/python bench/startup.py --before DIR   (DIR: a copy of f3ocus/ + configs/ before a change;
                                                         before and after runs alternate)
       .venv/bin/python bench/startup.py --runtime-env-probe 3   (Ray alone: 2 actors ready with and without a
                                                                  job runtime env, 3 alternating pairs)
Results are recorded in docs/BENCHMARKS.md, "## Engine overhead, start-up and communication".

Runs `f3ocus run configs/experiments/quickstart.yaml --set federation.rounds=1` (as `.venv/bin/python -m
f3ocus.cli`, so that `--before` can point it at another copy of the package; foundation checkpoint
and data store cached: the first repeat warms them and is reported but not counted) and timestamps every
line it prints. Milestones, seconds from the command's start:

  model    `model: foundation checkpoint ...`: Python + f3ocus imports, config, validation (unit listing)
  data     `run dir: ...`: federated data store loaded, budgets, majority baseline, MLflow URI
  ray      `ray: starting coordinator ...`: `ray.init` (local instance) done, client actors requested
  round0   start of round 0 = time of the `round 0/1` line - that round's `seconds`: the coordinator actor
           is up, the client actors have loaded the model, the MLflow run is open

and, from the result's `startup_seconds["at"]` (Unix times taken inside the actors, minus the command's
start), the start-up timeline of the actors:

  w_import   the first client actor's process begins importing f3ocus (the actor was handed a process)
  w_init     its `ClientWorker.__init__` begins (torch imported)
  coord      the coordinator actor's `__init__` begins (process up, torch imported, arguments in)
  logger     the coordinator has opened the MLflow run
  w_ready    the coordinator has the first client actor's model info (imports, store, model load done)

Code from before the start-up changes (`--before`) has no timeline: those cells read "-".
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
MILESTONES = (("model", "model: "), ("data", "run dir: "), ("ray", "ray: starting"))
TIMELINE = (("w_import", "f3ocus_import"), ("w_init", "worker_init"), ("coord", "coordinator"), ("logger", "logger"),
            ("w_ready", "model_info"))
KEYS = ("model", "data", "ray", "w_import", "w_init", "coord", "logger", "w_ready", "round0", "total")
HEADER = ("| {code}run | load before | model (imports, validation) | data | ray.init done | w_import | w_init | "
          "coord | logger | w_ready | **round 0 starts** | total (1 round) |")


def table_rows(label: str, measured: list[dict]) -> list[str]:
    """Markdown rows: one per measured run, then the median of each column (over the runs that have it)."""
    median = {key: statistics.median(values) for key in KEYS
              if (values := [t[key] for t in measured if key in t])}
    rows = []
    for name, t in [*((str(index), row) for index, row in enumerate(measured, 1)), ("median", median)]:
        cells = [f"{t[key]:.1f}" if key in t else "-" for key in KEYS]
        rows.append(f"| {label}{name} | {t.get('load', '')} | " + " | ".join(cells) + " |")
    return rows


def one_run(out_dir: Path, overrides: list[str], repo: Path = ROOT) -> dict[str, float]:
    """`f3ocus run` of the package in `repo` (its cwd and first on PYTHONPATH, so the actors import it too)."""
    result = out_dir / "result.json"
    command = [str(ROOT / ".venv/bin/python"), "-m", "f3ocus.cli", "run", "configs/experiments/quickstart.yaml",
               "--set", "federation.rounds=1", "--set", f"tracking.output_dir={out_dir}", "--output-json", str(result)]
    for override in overrides:
        command += ["--set", override]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "RAY_AUTH_MODE": "disabled"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(repo), env.get("PYTHONPATH")]))
    start, started_at = time.perf_counter(), time.time()
    process = subprocess.Popen(command, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    times: dict[str, float] = {}
    output: list[str] = []
    for line in process.stdout:
        output.append(line)
        now = time.perf_counter() - start
        for name, prefix in MILESTONES:
            if line.startswith(prefix) and name not in times:
                times[name] = now
        if line.startswith("round 0/"):
            times["round0_line"] = now
    if process.wait() != 0:
        raise RuntimeError(f"f3ocus run failed: {' '.join(command)}\n{''.join(output[-30:])}")
    times["total"] = time.perf_counter() - start
    summary = json.loads(result.read_text())
    times["round0"] = times["round0_line"] - summary["history"][0]["seconds"]
    at = summary["startup_seconds"].get("at", {})
    for key, event in TIMELINE:
        if event in at:
            times[key] = at[event] - started_at
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="measured runs (after one warm-up run)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra config override")
    parser.add_argument("--before", metavar="DIR", help="a copy of the repository (f3ocus/ and configs/: the code "
                        "before a change): runs alternate between it and this checkout")
    parser.add_argument("--runtime-env-probe", type=int, metavar="PAIRS", help="only the Ray probe (see above)")
    args = parser.parse_args()
    if args.runtime_env_probe:
        runtime_env_probe(args.runtime_env_probe)
        return
    if args.before:
        compare(args)
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="f3ocus-bench-startup-") as tmp:
        for repeat in range(args.repeats + 1):
            load = " ".join(f"{value:.2f}" for value in os.getloadavg())
            times = one_run(Path(tmp), args.set)
            times["load"] = load
            rows.append(times)
            print(f"# run {repeat}{' (warm-up)' if repeat == 0 else ''}: " + json.dumps(times), flush=True)
    print("\nSeconds from the command's start (see the module docstring).\n")
    print(HEADER.format(code=""))
    print("|" + "---|" * 12)
    print("\n".join(table_rows("", rows[1:])))

PROBE = """
import os, sys, time
import ray
started = time.perf_counter()
ray.init(address="local", include_dashboard=False, configure_logging=False, log_to_driver=False,
         runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1"}} if sys.argv[1] == "env" else None)
ready = time.perf_counter()

@ray.remote(num_cpus=1)
class Probe:
    def pid(self):
        return os.getpid()

actors = [Probe.remote() for _ in range(2)]
ray.get([actor.pid.remote() for actor in actors])
print(ready - started, time.perf_counter() - ready)
ray.shutdown()
"""


def runtime_env_probe(pairs: int) -> None:
    """ray.init + two 1-CPU actors answering, with a job runtime env (env_vars) and without, alternating."""
    print("| pair | runtime env | load before | ray.init s | 2 actors ready s |\n|---|---|---|---|---|")
    for pair in range(pairs):
        for mode in ("env", "none") if pair % 2 == 0 else ("none", "env"):
            load = " ".join(f"{value:.2f}" for value in os.getloadavg())
            out = subprocess.run([str(ROOT / ".venv/bin/python"), "-c", PROBE, mode], capture_output=True, text=True,
                                 env={**os.environ, "RAY_AUTH_MODE": "disabled"}, check=True).stdout.split()
            print(f"| {pair + 1} | {'env_vars' if mode == 'env' else 'none'} | {load} | {float(out[-2]):.2f} | "
                  f"{float(out[-1]):.2f} |", flush=True)


def compare(args: argparse.Namespace) -> None:
    """Alternate before / after runs (after one warm-up of each) and print both tables' medians."""
    rows: dict[str, list[dict]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory(prefix="f3ocus-bench-startup-") as tmp:
        for repeat in range(args.repeats + 1):
            for label in ("before", "after") if repeat % 2 else ("after", "before"):
                load = " ".join(f"{value:.2f}" for value in os.getloadavg())
                times = one_run(Path(tmp), args.set, Path(args.before) if label == "before" else ROOT)
                times["load"] = load
                print(f"# {label} run {repeat}{' (warm-up)' if repeat == 0 else ''}: " + json.dumps(times), flush=True)
                if repeat:
                    rows[label].append(times)
    print("\nSeconds from the command's start (see the module docstring).\n")
    print(HEADER.format(code="code | "))
    print("|" + "---|" * 13)
    for label, measured in rows.items():
        print("\n".join(table_rows(f"{label} | ", measured)))

if __name__ == "__main__":
    sys.exit(main())
