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

`--store` measures the client-state store alone (methods whose clients keep state, e.g. FedDAT): the real
`Coordinator` (in this process, fresh per N) runs `--rounds` rounds of FedDAT's shapes over N virtual clients
served by `SyntheticPool`, a stand-in worker that answers at once with tensors of the tiny model's sizes in
`dual_adapter` mode (`--family`: shared adapters + head uploaded, personal adapters as client state), so the
coordinator attaches, stores and indexes a real state per client per round. Reported per N: peak RSS of the
process (sampled), its growth over the RSS once the coordinator is built, the store's files and bytes on disk,
the checkpoint size and seconds per round. ~1 min for 10,100,1000 clients x 2 rounds on the dev box.
    .venv/bin/python bench/scale.py --store [--clients 10,100,1000] [--rounds 2] [--family llava]
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


class SyntheticPool:
    """A worker pool without a model: FedDAT's message shapes, answered at once (see the module docstring).

    Client k's update is the broadcast + (k % 7 + 1) / 100 on every unit tensor; its state is its previous one
    (the model's initial personal adapters for a new client) + 1. Evaluation reports a fixed score and the
    client's state's first value as its personal accuracy, so the state read back is the one written.
    """

    def __init__(self, family: str):
        from f3ocus.federated.messages import ModelInfo
        from f3ocus.federated.pool import FaultLog
        from f3ocus.models.registry import build_vqa_model

        model = build_vqa_model(family, "scratch", answers=["yes", "no"], unit_mode="dual_adapter")
        names = model.unit_parameter_names()
        self.info = ModelInfo(tuple(model.units), {unit: tuple(n) for unit, n in names.items()},
                              dict(model.num_unit_parameters()), model.trainable_state(),
                              client_state_names=tuple(model.client_state_names()))
        self.initial_state = model.client_state()
        self.probe = sorted(self.initial_state)[0]  # the state tensor evaluation reports back
        self.faults = FaultLog()  # WorkerPool protocol: nothing fails here

    def node_ids(self):
        return []

    def model_info(self):
        return self.info

    def map(self, method, state, tasks, on_done=None, attach=None):
        replies = []
        for task in tasks:
            reply = getattr(self, method)(state, attach(task) if attach else task)
            replies.append(reply)
            if on_done:
                on_done(reply)
        return replies

    def train(self, state, task):
        from f3ocus.federated.messages import ClientUpdate

        step = (int(task.client[1:]) % 7 + 1) / 100
        tensors = {name: tensor + step for name, tensor in state.tensors.items()}
        old = task.client_state if task.client_state is not None else self.initial_state
        return ClientUpdate(task.client, 8, tensors, 1.0, 0.0, client_state={n: t + 1 for n, t in old.items()})

    def evaluate(self, state, task):
        from f3ocus.federated.messages import EvalReport

        own = 0.0 if task.client_state is None else float(task.client_state[self.probe].reshape(-1)[0])
        return EvalReport(task.client, 0.5, 1.0, 2, 0.0, personal=EvalReport(task.client, own, 1.0, 2, 0.0))

    def shutdown(self):
        pass


def store_child(args: argparse.Namespace) -> None:
    """One federation size of `--store` in this process; writes its figures to `args.child` (JSON)."""
    import psutil

    from f3ocus.config.schema import ExperimentConfig, FederationConfig, ModelConfig, SelectionConfig, TrackingConfig
    from f3ocus.federated.client_state import CLIENT_STATE_DIR
    from f3ocus.federated.coordinator import Coordinator
    from f3ocus.federated.state import CHECKPOINT, Federation
    from f3ocus.tracking.base import NullLogger

    pool = SyntheticPool(args.family)
    clients = tuple(f"c{index:05d}" for index in range(args.clients))
    units = len(pool.info.units)
    cfg = ExperimentConfig(model=ModelConfig(family=args.family, unit_mode="dual_adapter"),
                           federation=FederationConfig(rounds=args.rounds, budgets=units, local_objective="feddat"),
                           selection=SelectionConfig(method="full"), tracking=TrackingConfig(mlflow=False))
    federation = Federation(clients, {c: 8 for c in clients}, (units,) * len(clients), {c: 0.5 for c in clients})
    run_dir = Path(args.out_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    sampler = RssSampler(args.interval)
    sampler.start()
    coordinator = Coordinator(cfg, federation, str(run_dir), lambda: pool, lambda run_id: NullLogger())
    built = psutil.Process().memory_info().rss
    coordinator.evaluate_initial()
    seconds = []
    for round_idx in range(1, args.rounds + 1):
        started = time.perf_counter()
        record = coordinator.run_round(round_idx)
        seconds.append(time.perf_counter() - started)
    peaks = sampler.stop()
    files = list((run_dir / CLIENT_STATE_DIR).rglob("*.safetensors"))
    last = coordinator.state.history[-1]
    expected = float(args.rounds) + float(pool.initial_state[pool.probe].reshape(-1)[0])
    Path(args.child).write_text(json.dumps({
        "clients": args.clients, "rounds": args.rounds, "family": args.family, "rss_after_build": built,
        "peak": peaks["driver"][0], "round_seconds": seconds, "store_files": len(files),
        "store_bytes": sum(path.stat().st_size for path in files), "checkpoint_bytes": (run_dir / CHECKPOINT).stat().st_size,
        "state_bytes_round": last["state_bytes"], "bytes_up_round": last["bytes_up"],
        "state_bytes_per_client": last["state_bytes_up_per_client"][clients[0]],
        "personal_read_back_ok": all(abs(v["personal"]["accuracy"] - expected) < 1e-5
                                     for v in record.per_client.values()),
    }))


def run_store_size(clients: int, args: argparse.Namespace, tmp: Path) -> dict:
    target = tmp / f"store-{clients}.json"
    command = [sys.executable, __file__, "--store", "--child", str(target), "--out-dir", str(tmp / f"store-{clients}"),
               "--clients", str(clients), "--rounds", str(args.rounds), "--family", args.family,
               "--interval", str(args.interval)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{clients} clients: exit {done.returncode}:\n{done.stderr[-3000:]}")
    return json.loads(target.read_text())


def store_main(args: argparse.Namespace, sizes: list[int]) -> None:
    results = []
    with tempfile.TemporaryDirectory(prefix="f3ocus-bench-store-") as tmp:
        for clients in sizes:
            before = uptime()
            result = run_store_size(clients, args, Path(tmp))
            result.update(uptime_before=before, uptime_after=uptime())
            results.append(result)
            print(f"# {clients} clients: {json.dumps(result)}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    first = results[0]
    print(f"\nclient-state store, FedDAT shapes of tiny {args.family} (dual_adapter: "
          f"{first['state_bytes_per_client'] / 1e3:.1f} kB of state per client), {args.rounds} round(s), "
          f"coordinator in-process with a stand-in pool\n")
    print("| clients | peak RSS MiB | growth over built MiB | s per round | store files | store on disk MiB "
          "| checkpoint kB | state MB moved / round | upload MB / round | read back | load before -> after |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    load = lambda text: text.split("load average:")[-1].strip()  # noqa: E731
    for r in results:
        print(f"| {r['clients']} | {mib(r['peak'])} | {(r['peak'] - r['rss_after_build']) / MIB:.1f} | "
              f"{sum(r['round_seconds']) / len(r['round_seconds']):.2f} | {r['store_files']} | "
              f"{r['store_bytes'] / MIB:.1f} | {r['checkpoint_bytes'] / 1e3:.0f} | {r['state_bytes_round'] / 1e6:.1f} | "
              f"{r['bytes_up_round'] / 1e6:.1f} | {'ok' if r['personal_read_back_ok'] else 'WRONG'} | "
              f"{load(r['uptime_before'])} -> {load(r['uptime_after'])} |")


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
    parser.add_argument("--store", action="store_true", help="the client-state store alone (see the docstring)")
    parser.add_argument("--family", default="llava", help="--store: the tiny model whose FedDAT shapes are used")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.clients = int(args.clients)
        (store_child if args.store else child)(args)
        return
    sizes = [int(value) for value in args.clients.split(",")]
    if args.store:
        store_main(args, sizes)
        return
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
