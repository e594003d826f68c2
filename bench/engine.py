"""Engine overhead: the same experiment on Ray with 1 actor, on Ray with 2 actors, and as a sequential loop.

Run:   .venv/bin/python bench/engine.py [--rounds R] [--clients N] [--repeats K]   (~10 min with the defaults)
       add `--before DIR` (DIR: a copy of f3ocus/ + configs/ before a change) to also run `ray1-before` and
       `ray2-before` from that copy, interleaved with the others
       `--transfer-probe`: only the cost of one actor call carrying the broadcast, per way of passing it
Results are recorded in docs/BENCHMARKS.md, "## Engine overhead, start-up and communication".

The experiment: configs/experiments/quickstart.yaml (cached tiny-LLaVA foundation), its 4 modalities dealt
out i.i.d. to N clients (`data.partition.scheme=iid`, equal shards, so the per-client work is balanced),
`--samples` rows per client, budget 2 for every client, MLflow off (the coordinator's logging is the same
in every variant), same seed everywhere. Variants, each in a fresh process:

- `seq`:  `federation.engine=local`: the Coordinator called in-process over a `LocalPool`, which is a plain
          `for` loop calling `ClientWorker.score/train/evaluate` directly (1 torch thread, like one actor);
          selection, masked FedAvg, checkpoint and selection JSON are the same code as on Ray.
- `ray1`: the Ray engine, coordinator actor + 1 client actor (1 CPU).
- `ray2`: the Ray engine, coordinator actor + 2 client actors (1 CPU each).

Niceness: Ray starts its worker processes (the coordinator and client actors) at nice 15 (its default
`worker_niceness`), so on a shared machine they yield the CPU to everyone else's nice-0 processes. For the
same footing, the `seq` process and the ceiling workload (below) run at nice 15 too; the Ray drivers, which
only wait during rounds, stay at 0.

The variants run interleaved, `--repeats` times, and the ratios are taken within each repeat (the machine
is shared, so absolute times drift). Round time = interval between the driver's consecutive round lines,
steady state only: round 0 (the initial evaluation) and round 1 (each actor's first encode of its client
shards) are excluded. The per-phase split comes from each round record's `phase_seconds` (coordinator wall
time per phase) and `worker_seconds` (compute time the workers report in their replies, summed): for a
phase, communication + waiting = wall - worker compute / actors (Ray: `ray.put` of the broadcast, argument
and reply (de)serialisation, scheduling, and idle actors at the end of a phase).

Load-robust estimates (last table): the share of a round outside worker compute, o = 1 - worker compute /
actors / round, is measured under one load within one run; for equal compute ray1 / seq = (1 - o_seq) /
(1 - o_ray1), and with a free second core (per-task compute as with one actor) seq / ray2 = 2 (1 - o_ray2) /
(1 - o_seq).

Ceiling: before every `ray2` run, the same fixed 1-thread torch workload (an MLP's forward + backward + SGD
steps) runs once alone and then twice at once in two fresh processes (started together on a barrier);
2 x alone / together is the speed-up two processes could get from the machine at that moment, whatever
the engine: on a shared 2-core machine other jobs take part of the second core. Both at nice 15, as above.
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
CONFIG = "configs/experiments/quickstart.yaml"
NICE = 15  # Ray's default worker niceness: the compute of every variant runs at it
VARIANTS = {"seq": ["federation.engine=local"],
            "ray1": ["federation.engine=ray", "federation.num_actors=1"],
            "ray2": ["federation.engine=ray", "federation.num_actors=2"]}
PHASES = ("score", "select", "train", "aggregate", "evaluate", "log")
WORKER_PHASES = ("score", "train", "evaluate")


def child(args: argparse.Namespace) -> None:
    """One variant in this process; writes round-line timestamps and the round records to `args.child`."""
    for key, value in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "RAY_AUTH_MODE": "disabled"}.items():
        os.environ.setdefault(key, value)
    from f3ocus.config import load_config
    from f3ocus.experiment import run_experiment

    lines: list[tuple[float, str]] = []
    cfg = load_config(args.config, args.overrides)
    result = run_experiment(cfg, show=lambda line: lines.append((time.perf_counter(), line)))
    round_times = {}
    for stamp, line in lines:  # "round 2/6: acc ..." once a round is done
        parts = line.split()
        if len(parts) > 1 and parts[0] == "round" and parts[1].endswith(":"):
            round_times[int(parts[1].split("/")[0])] = stamp
    Path(args.child).write_text(json.dumps({"round_times": round_times, "history": result["history"],
                                            "accuracy": result["final"]["accuracy"],
                                            "bytes_up_total": result["bytes_up_total"],
                                            "startup_order": list(result.get("startup_seconds", {}))}))


def ceiling_child(start_at: float) -> None:
    """A fixed 1-thread torch workload, started at `start_at` (time.time()); prints its seconds."""
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(512, 512), torch.nn.GELU(), torch.nn.Linear(512, 512), torch.nn.GELU(),
                                torch.nn.Linear(512, 16))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    inputs, labels = torch.randn(64, 512), torch.randint(0, 16, (64,))
    time.sleep(max(0.0, start_at - time.time()))
    started = time.perf_counter()
    for _ in range(200):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(inputs), labels).backward()
        optimizer.step()
    print(time.perf_counter() - started)


def ceiling() -> dict:
    """Seconds of the workload alone and of two copies at once, and the speed-up 2 x alone / together."""
    def launch(count: int) -> list[float]:
        start_at = time.time() + 4.0  # after both processes imported torch
        processes = [subprocess.Popen([sys.executable, __file__, "--ceiling-child", str(start_at)],
                                      stdout=subprocess.PIPE, text=True, preexec_fn=lambda: os.nice(NICE))
                     for _ in range(count)]
        return [float(p.communicate()[0].strip()) for p in processes]

    alone = launch(1)[0]
    together = max(launch(2))
    return {"alone": alone, "together": together, "speedup": 2 * alone / together}


def transfer_probe(calls: int = 20, repeats: int = 3) -> None:
    """ms per actor call (best of `repeats` x `calls`): a tiny argument, the quickstart-sized broadcast
    (5.7 MB in 110 tensors) as a `GlobalState` argument (Ray deserialises it per call), the same with a
    3 MB reply, and as a `SharedState` (fetched once per version, as `RayPool` passes it now)."""
    import ray
    import torch

    from f3ocus.federated.messages import ClientUpdate, GlobalState, SharedState
    from f3ocus.federated.worker import ClientWorker

    ray.init(address="local", include_dashboard=False, configure_logging=False, log_to_driver=False)

    @ray.remote(num_cpus=1)
    class Probe:
        _resolve = ClientWorker._resolve

        def __init__(self):
            self._broadcast = None

        def call(self, state, reply_mb):
            state = self._resolve(state)
            tensors = dict(list(state.tensors.items())[:int(len(state.tensors) * reply_mb / 5.7)])
            return ClientUpdate("c", 1, tensors, 0.0, 0.0)

    state = GlobalState(0, {f"t{i}": torch.randn(13000) for i in range(110)})
    probe = Probe.remote()
    ray.get(probe.call.remote(GlobalState(0, {}), 0))
    ref = ray.put(state)
    cases = {"tiny argument": (GlobalState(1, {}), 0), "GlobalState 5.7 MB": (ref, 0),
             "GlobalState 5.7 MB + 3 MB reply": (ref, 3), "SharedState 5.7 MB": (SharedState(0, [ref]), 0),
             "SharedState 5.7 MB + 3 MB reply": (SharedState(0, [ref]), 3)}
    print(f"load {load_average()}\n| argument | ms per call (best of {repeats} x {calls}) |\n|---|---|")
    for label, (argument, reply_mb) in cases.items():
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            for _ in range(calls):
                ray.get(probe.call.remote(argument, reply_mb))
            best = min(best, (time.perf_counter() - started) / calls * 1000)
        print(f"| {label} | {best:.1f} |", flush=True)
    ray.shutdown()


def run_variant(name: str, args: argparse.Namespace, out_dir: Path, repeat: int) -> dict:
    variant = VARIANTS[name.removesuffix("-before")]
    overrides = [f"federation.rounds={args.rounds}", f"data.samples_per_client={args.samples}",
                 "data.partition.scheme=iid", f"data.partition.num_clients={args.clients}", "federation.budgets=2",
                 "federation.worker_resources.num_cpus=1", f"tracking.output_dir={out_dir}", "tracking.mlflow=false",
                 f"seed={args.seed}", *variant, *args.set]
    target = out_dir / f"{name}-{repeat}.json"
    command = [sys.executable, __file__, "--child", str(target), "--config", args.config]
    for override in overrides:
        command += ["--override", override]
    # `-before` variants import the package from the --before copy (driver and, through the environment, actors).
    repo = Path(args.before) if name.endswith("-before") else ROOT
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")]))}
    started = time.perf_counter()
    nice = (lambda: os.nice(NICE)) if name.startswith("seq") else None  # Ray renices its own workers
    subprocess.run(command, cwd=repo, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   preexec_fn=nice)
    data = json.loads(target.read_text())
    data["wall"] = time.perf_counter() - started
    return data


def summarise(data: dict, actors: int) -> dict:
    """Mean steady-state round time (driver side) and the mean per-phase split of the same rounds."""
    stamps = {int(k): v for k, v in data["round_times"].items()}
    steady = [r for r in sorted(stamps) if r >= 2 and r - 1 in stamps]
    round_s = statistics.mean(stamps[r] - stamps[r - 1] for r in steady)
    records = [rec for rec in data["history"] if rec["round"] in steady]
    phase = {p: statistics.mean(rec["phase_seconds"].get(p, 0.0) for rec in records) for p in PHASES}
    compute = {p: statistics.mean(rec["worker_seconds"].get(p, 0.0) for rec in records) / actors
               for p in WORKER_PHASES}
    comm = {p: phase[p] - compute[p] for p in WORKER_PHASES}
    return {"round_s": round_s, "phase": phase, "compute": compute, "comm": comm,
            "other": round_s - sum(phase.values()), "accuracy": data["accuracy"],
            "bytes_up_total": data["bytes_up_total"], "wall": data["wall"], "startup_order": data["startup_order"]}


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def report(results: dict[str, list[dict]], names: list[str], args: argparse.Namespace) -> None:
    """The tables of docs/BENCHMARKS.md from the per-run summaries."""
    print(f"\n{args.clients} clients x {args.samples} rows, {args.rounds} rounds (2..{args.rounds} measured), "
          f"seed {args.seed}, config {args.config}\n")
    print("| variant | repeat | round s | " + " | ".join(PHASES) + " | worker compute | comm + wait | other "
          "| load 1/5/15 before -> after | final acc | bytes up |")
    print("|---|---|---|" + "---|" * len(PHASES) + "---|---|---|---|---|---|")
    for name in names:
        for s in results[name]:
            compute, comm = sum(s["compute"].values()), sum(s["comm"].values())
            share = lambda value: f"{value:.2f} ({100 * value / s['round_s']:.0f} %)"  # noqa: E731
            print(f"| {name} | {s['repeat']} | {s['round_s']:.2f} | "
                  + " | ".join(share(s["phase"][p]) for p in PHASES)
                  + f" | {share(compute)} | {share(comm)} | {share(s['other'])} | {s['load_before']} -> "
                  f"{s['load_after']} | {s['accuracy']:.3f} | {s['bytes_up_total']} |")
    print("\nPer phase (mean over repeats), seconds: wall / worker compute per actor / wall - compute")
    print("| variant | " + " | ".join(WORKER_PHASES) + " |\n|---|" + "---|" * len(WORKER_PHASES))
    for name in names:
        cells = []
        for phase in WORKER_PHASES:
            wall, compute = (statistics.mean(s[key][phase] for s in results[name]) for key in ("phase", "compute"))
            cells.append(f"{wall:.2f} / {compute:.2f} / {wall - compute:.2f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    if {"seq", "ray1", "ray2"} <= set(names):
        print("\n| repeat | ray1 / seq (target <= 1.10) | seq / ray2 (target >= 1.6) | ceiling: 2 procs / 1 "
              "(load before) |\n|---|---|---|---|")
        for repeat in range(args.repeats):
            seq, ray1, ray2 = (results[n][repeat]["round_s"] for n in ("seq", "ray1", "ray2"))
            c = results["ray2"][repeat]["ceiling"]
            print(f"| {repeat} | {ray1 / seq:.3f} | {seq / ray2:.3f} | {c['speedup']:.2f} ({c['alone']:.2f} s alone, "
                  f"{c['together']:.2f} s two at once; load {c['load']}) |")
        if args.before:
            print("\n| repeat | ray1-before / seq | seq / ray2-before | ceiling before ray2-before |\n|---|---|---|---|")
            for repeat in range(args.repeats):
                seq, ray1, ray2 = (results[n][repeat]["round_s"] for n in ("seq", "ray1-before", "ray2-before"))
                c = results["ray2-before"][repeat]["ceiling"]
                print(f"| {repeat} | {ray1 / seq:.3f} | {seq / ray2:.3f} | {c['speedup']:.2f} |")
    if "seq" in names:
        share = {name: statistics.mean(1 - sum(s["compute"].values()) / s["round_s"] for s in results[name])
                 for name in names}
        print("\n| variant | outside worker compute, o (per repeat) | load-robust estimate |\n|---|---|---|")
        for name in names:
            per_repeat = ", ".join(f"{100 * (1 - sum(s['compute'].values()) / s['round_s']):.1f} %" for s in results[name])
            if name.startswith("ray1"):
                estimate = f"{name} / seq = {(1 - share['seq']) / (1 - share[name]):.3f}"
            elif name.startswith("ray2"):
                estimate = f"seq / {name} with a free core = {2 * (1 - share[name]) / (1 - share['seq']):.2f}"
            else:
                estimate = ""
            print(f"| {name} | {per_repeat} | {estimate} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6, help="rounds per run (2..R are measured)")
    parser.add_argument("--clients", type=int, default=4, help="i.i.d. clients (even: 2 actors can split them)")
    parser.add_argument("--samples", type=int, default=200, help="rows per client (80 %% train)")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repeats of every variant")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", default=CONFIG)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra config override")
    parser.add_argument("--variants", default="seq,ray1,ray2")
    parser.add_argument("--before", metavar="DIR", help="also run ray1/ray2 from this copy of the repository")
    parser.add_argument("--transfer-probe", action="store_true", help="only the per-call transfer probe")
    parser.add_argument("--keep", help="keep the raw per-run JSON files in this folder")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--ceiling-child", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--override", dest="overrides", action="append", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if args.ceiling_child is not None:
        ceiling_child(args.ceiling_child)
        return
    if args.transfer_probe:
        transfer_probe()
        return
    if args.rounds < 3:
        parser.error("--rounds must be >= 3 (rounds 0 and 1 are not measured)")
    names = args.variants.split(",")
    if args.before:
        names += [f"{name}-before" for name in names if name.startswith("ray")]
    results: dict[str, list[dict]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="f3ocus-bench-engine-") as tmp:
        out_dir = Path(args.keep or tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        for repeat in range(args.repeats):
            order = names[repeat % len(names):] + names[:repeat % len(names)]  # rotate the order per repeat
            for name in order:
                measured_ceiling = None
                if name.startswith("ray2"):
                    measured_ceiling = {"load": load_average(), **ceiling()}
                    print(f"# repeat {repeat} ceiling: {json.dumps(measured_ceiling)}", flush=True)
                before = load_average()
                summary = summarise(run_variant(name, args, out_dir, repeat), 2 if name.startswith("ray2") else 1)
                summary.update(repeat=repeat, load_before=before, load_after=load_average(), ceiling=measured_ceiling)
                results[name].append(summary)
                print(f"# repeat {repeat} {name}: round {summary['round_s']:.2f} s, run {summary['wall']:.0f} s, "
                      f"load {before} -> {summary['load_after']}; coordinator start-up steps "
                      f"{summary['startup_order']}", flush=True)
    report(results, names, args)

if __name__ == "__main__":
    main()
