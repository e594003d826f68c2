"""Scale: one federation of N virtual clients served by 2 client actors; peak RSS of every Ray process vs N.

Run:   .venv/bin/python bench/scale.py [--clients 10,100,1000] [--rounds 1] [--method top_k]
       (~1 min at 10 clients, ~2 at 100, ~10-15 at 1,000 on the 2-core dev box)
Results are recorded in docs/BENCHMARKS.md, "## Scale: virtual clients".

Each N runs in a fresh process (its own local Ray instance) through `run_experiment`, the same path as
`f3ocus run`: configs/smoke/cpu_tiny.yaml (tiny LLaVA from scratch), easy-vqa dealt out i.i.d. to N clients
with `--samples` rows each (10: 8 train + 2 test), budget 2 for every client, `federation.engine=ray` with
2 client actors of 1 CPU each and the coordinator actor, selection `--method` (top_k: every client also
scores its units, and the end-of-run unit-rank artifacts cover all N clients), MLflow on, in a sqlite file
in the run's temporary folder (per-client metrics: 3 per client per round).

Memory: a sampler thread in the child reads, every `--interval` seconds, the RSS (`psutil`) of every
descendant process whose title Ray set to `ray::Coordinator...` (the coordinator actor) or
`ray::ClientWorker...` (a client actor), and of the driver itself; the table gives each one's peak.
Ray's own daemons (raylet, GCS) are not counted. Times: each round's `seconds` from the round records
(round 0 = the initial evaluation of every client), and the data preparation (partitioning, store, majority
baseline for N clients) from the start to the `run dir:` line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = "configs/smoke/cpu_tiny.yaml"
ROLES = (("coordinator", "ray::Coordinator"), ("client", "ray::ClientWorker"))
MIB = 2 ** 20


class RssSampler(threading.Thread):
    """Peak RSS per process of this process's Ray actors (by process title) and of this process."""

    def __init__(self, interval: float):
        super().__init__(daemon=True)
        self.interval = interval
        self.peaks: dict[int, dict] = {}  # pid -> {"role", "peak"}
        self._stop_event = threading.Event()

    def run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop_event.is_set():
            self._note(me, "driver")
            for process in me.children(recursive=True):
                try:
                    title = " ".join(process.cmdline())
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    continue
                for role, prefix in ROLES:
                    if title.startswith(prefix):
                        self._note(process, role)
            self._stop_event.wait(self.interval)

    def _note(self, process, role: str) -> None:
        import psutil

        try:
            rss = process.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return
        entry = self.peaks.setdefault(process.pid, {"role": role, "peak": 0})
        entry["peak"] = max(entry["peak"], rss)

    def stop(self) -> dict[str, list[int]]:
        self._stop_event.set()
        self.join()
        by_role: dict[str, list[int]] = {}
        for entry in self.peaks.values():
            by_role.setdefault(entry["role"], []).append(entry["peak"])
        return {role: sorted(peaks) for role, peaks in by_role.items()}


def child(args: argparse.Namespace) -> None:
    """One federation size in this process; writes its figures to `args.child` (JSON)."""
    for key, value in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "RAY_AUTH_MODE": "disabled",
                       "TOKENIZERS_PARALLELISM": "false", "RAY_USAGE_STATS_ENABLED": "0"}.items():
        os.environ.setdefault(key, value)
    os.environ.pop("RAY_ADDRESS", None)  # always a fresh local instance: its processes are our children
    from f3ocus.config import load_config
    from f3ocus.experiment import run_experiment

    out_dir = Path(args.out_dir)
    overrides = [
        "data.task=easy_vqa", "data.modalities=null", f"data.samples_per_client={args.samples}",
        "data.partition.scheme=iid", f"data.partition.num_clients={args.clients}", "federation.budgets=2",
        f"federation.rounds={args.rounds}", "federation.engine=ray", "federation.num_actors=2",
        "federation.worker_resources.num_cpus=1", f"selection.method={args.method}",
        f"tracking.output_dir={out_dir}", "tracking.mlflow=true", f"tracking.tracking_uri=sqlite:///{out_dir}/mlflow.db",
        f"tracking.experiment=scale-{args.clients}", f"seed={args.seed}",
    ]
    cfg = load_config(args.config, overrides)
    sampler = RssSampler(args.interval)
    sampler.start()
    lines: list[tuple[float, str]] = []
    start = time.perf_counter()
    result = run_experiment(cfg, show=lambda line: lines.append((time.perf_counter() - start, line)))
    wall = time.perf_counter() - start
    peaks = sampler.stop()
    prepared_at = next((stamp for stamp, line in lines if line.startswith("run dir:")), None)
    history = result["history"]
    Path(args.child).write_text(json.dumps({
        "clients": args.clients, "rounds": result["rounds"], "wall": wall, "data_seconds": prepared_at,
        "round_seconds": [record["seconds"] for record in history],
        "phase_seconds": [record["phase_seconds"] for record in history],
        "bytes_up": [record["bytes_up"] for record in history],
        "failed": [len(record["failed_clients"]) for record in history],
        "accuracy": result["final"]["accuracy"], "peaks": peaks,
        "num_clients_evaluated": len(result["final"]["per_client"]),
    }))


def run_size(clients: int, args: argparse.Namespace, tmp: Path) -> dict:
    target = tmp / f"scale-{clients}.json"
    out_dir = tmp / f"out-{clients}"
    command = [sys.executable, __file__, "--child", str(target), "--out-dir", str(out_dir), "--config", args.config,
               "--clients", str(clients), "--rounds", str(args.rounds), "--samples", str(args.samples),
               "--method", args.method, "--seed", str(args.seed), "--interval", str(args.interval)]
    log = tmp / f"scale-{clients}.log"
    with log.open("w") as handle:
        done = subprocess.run(command, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise RuntimeError(f"{clients} clients: exit {done.returncode}; last lines:\n"
                           + "\n".join(log.read_text().splitlines()[-30:]))
    return json.loads(target.read_text())


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "load average: " + ", ".join(f"{value:.2f}" for value in os.getloadavg())


def mib(value: int) -> str:
    return f"{value / MIB:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="10,100,1000", help="comma-separated federation sizes")
    parser.add_argument("--rounds", type=int, default=1, help="training rounds after the initial evaluation")
    parser.add_argument("--samples", type=int, default=10, help="rows per client (test_fraction 0.2)")
    parser.add_argument("--method", default="top_k", help="selection.method (top_k scores; first_k does not)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--interval", type=float, default=0.2, help="RSS sampling period, seconds")
    parser.add_argument("--config", default=CONFIG)
    parser.add_argument("--json", help="also write every size's figures here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.clients = int(args.clients)
        child(args)
        return
    sizes = [int(value) for value in args.clients.split(",")]
    results = []
    with tempfile.TemporaryDirectory(prefix="f3ocus-bench-scale-") as tmp:
        for clients in sizes:
            before = uptime()
            result = run_size(clients, args, Path(tmp))
            result.update(uptime_before=before, uptime_after=uptime())
            results.append(result)
            print(f"# {clients} clients: {json.dumps(result)}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    print(f"\n{args.samples} rows per client, {args.rounds} round(s) after the initial evaluation, selection "
          f"{args.method}, 2 client actors x 1 CPU, seed {args.seed}, config {args.config}\n")
    print("| clients | data prep s | round 0 s (eval) | round 1 s | round 1 score / train / evaluate / log s "
          "| coordinator peak RSS MiB | client actors peak RSS MiB | driver peak RSS MiB | upload round 1 MB "
          "| failed | load before -> after |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        phases = r["phase_seconds"][1] if len(r["phase_seconds"]) > 1 else {}
        split = " / ".join(f"{phases.get(p, 0.0):.1f}" for p in ("score", "train", "evaluate", "log"))
        peaks = r["peaks"]
        load = lambda text: text.split("load average:")[-1].strip()  # noqa: E731
        print(f"| {r['clients']} | {r['data_seconds']:.1f} | {r['round_seconds'][0]:.1f} | "
              f"{r['round_seconds'][1]:.1f} | {split} | {', '.join(map(mib, peaks.get('coordinator', [])))} | "
              f"{', '.join(map(mib, peaks.get('client', [])))} | {', '.join(map(mib, peaks.get('driver', [])))} | "
              f"{r['bytes_up'][1] / 1e6:.1f} | {sum(r['failed'])} | {load(r['uptime_before'])} -> "
              f"{load(r['uptime_after'])} |")


if __name__ == "__main__":
    main()
