"""Benchmark of the LNTK scorer (docs/METHOD.md §2): time per kernel × solver vs one local epoch, and memory vs k.

Run:   HF_HUB_OFFLINE=1 .venv/bin/python bench/lntk.py            (~10-20 min on 2 busy cores)
Quick: HF_HUB_OFFLINE=1 .venv/bin/python bench/lntk.py --families llava --no-memory
Grad kernel only, exact vs one-pass ghost (~5 min on a quiet host, ~20 min at load 8):
       HF_HUB_OFFLINE=1 .venv/bin/python bench/lntk.py --no-memory --variants grad-exact grad-ghost \
           --modes layer adapter
Results are recorded in docs/BENCHMARKS.md, "## LNTK scorer".

Part 1, per tiny preset (`build_vqa_model(family, "scratch")`, 13 answers, 32×32 synthetic images) and
unit mode (default layer): wall and CPU time (min over `--repeats` interleaved rounds for exact and
ghost, 1 run for matrix-free) of scoring all units of one client on a 16-sample batch, for each kernel ×
solver, the largest relative error of λ₁ vs the exact solver of the same kernel, and the time of that
client's local epoch (400 samples, batch 32, `train_epochs`, ALL units + head trainable, on a copy).
Ghost rows also report how many tensors needed its per-sample-backward fallback (0 = the whole Gram
came from one pass).
Part 2 (llava): peak RSS growth while scoring its largest unit for k = 10, 100, 1000 answers, each in
a fresh subprocess (VmHWM reset through /proc/self/clear_refs), exact vs matrix-free (and ghost for the
grad kernel).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch
from PIL import Image

from f3ocus.importance.lntk import LntkScorer
from f3ocus.models.registry import FAMILIES, build_vqa_model
from f3ocus.models.training import encode_examples, train_epochs

WORDS = ("red", "blue", "green", "yellow", "teal", "brown", "gray", "black", "circle", "rectangle",
         "triangle", "yes", "no")
QUESTIONS = ("what color is the shape", "what shape is in the image", "is there a red shape",
             "does the image contain a circle", "is the shape blue")
# Part 2 scores only the largest unit (213k tensors; last, so its backward is short): the exact solver's
# peak is per group of units and the matrix-free one's per unit, so one unit shows how each scales with k.
MEMORY_UNIT = "language.3"
VARIANTS = (("logit", "exact"), ("logit", "matfree"), ("grad", "exact"), ("grad", "matfree"), ("grad", "ghost"))


def make_examples(count: int, answers: tuple[str, ...], seed: int = 0) -> tuple[list, list, list]:
    """count synthetic (image, question, answer) triples; images 32×32 RGB noise."""
    rng = np.random.default_rng(seed)
    images = [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(count)]
    questions = [QUESTIONS[index % len(QUESTIONS)] for index in range(count)]
    labels = [answers[int(rng.integers(len(answers)))] for _ in range(count)]
    return images, questions, labels


def answer_set(size: int) -> tuple[str, ...]:
    """The 13 easy-vqa-like answers, padded with synthetic ones up to `size`."""
    return tuple(WORDS[:size]) if size <= len(WORDS) else WORDS + tuple(f"a{i}" for i in range(size - len(WORDS)))


def trainable_copy(model):
    """A copy of `model` with all units + head trainable (the epoch never touches the scored model)."""
    clone = copy.deepcopy(model)
    clone.set_trainable([True] * len(clone.units))
    return clone


def run_epoch(clone, shard, seed: int) -> None:
    """One local epoch (400 samples, batch 32) of `clone`."""
    train_epochs(clone, shard, epochs=1, batch_size=32, lr=1e-4, generator=torch.Generator().manual_seed(seed))


def measure(run) -> tuple[float, float, object]:
    """(wall seconds, CPU seconds of this process, result) of one call of run(). CPU time (all threads)
    is what the call itself consumed, so it is far less sensitive to other jobs on the host than wall time."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = run()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def time_family(family: str, repeats: int, variants=VARIANTS, unit_mode: str = "layer") -> list[dict]:
    """Rows of part 1 for one family and unit mode: one per (kernel, solver) in `variants`.

    The epoch and every variant are timed in interleaved rounds (epoch, variant 1, variant 2, ...) and
    the minimum over rounds is kept for each, so that bursts of host load hit them alike; matrix-free
    variants run in the first round only (they are long; one run is enough to rank them).
    """
    answers = answer_set(13)
    model = build_vqa_model(family, "scratch", answers=answers, unit_mode=unit_mode)
    shard = encode_examples(model, *make_examples(400, answers))
    batch, labels = shard.batch(torch.arange(16)), shard.labels[:16]
    scorers = {(kernel, solver): LntkScorer(kernel, solver) for kernel, solver in variants}
    best = {key: [float("inf"), float("inf")] for key in ("epoch", *scorers)}  # [wall, cpu]
    values = {}
    for round_index in range(repeats):
        clone = trainable_copy(model)
        timings = {"epoch": measure(lambda: run_epoch(clone, shard, round_index))}
        for key, scorer in scorers.items():
            if key[1] != "matfree" or round_index == 0:
                timings[key] = measure(lambda: scorer.eigenvalues(model, batch, labels))
                values[key] = timings[key][2]
        for key, (wall, cpu, _) in timings.items():
            best[key] = [min(best[key][0], wall), min(best[key][1], cpu)]
    rows, exact = [], {}
    for (kernel, solver), scorer in scorers.items():
        if kernel not in exact:  # the reference of the kernel: its exact solver (computed untimed if not listed)
            exact[kernel] = values.get((kernel, "exact"))
            if exact[kernel] is None:
                exact[kernel] = LntkScorer(kernel, "exact").eigenvalues(model, batch, labels)
        floor = 1e-9 * exact[kernel].max()
        error = float(np.max(np.abs(values[kernel, solver] - exact[kernel]) / np.maximum(exact[kernel], floor)))
        (wall, cpu), (epoch_wall, epoch_cpu) = best[kernel, solver], best["epoch"]
        rows.append({"family": family, "mode": unit_mode, "units": len(model.units), "kernel": kernel,
                     "solver": solver, "score_s": wall, "epoch_s": epoch_wall, "ratio": wall / epoch_wall,
                     "score_cpu_s": cpu, "epoch_cpu_s": epoch_cpu, "cpu_ratio": cpu / epoch_cpu,
                     "rel_err_vs_exact": error,
                     "fallback": len(scorer.last_fallback) if solver == "ghost" else None,
                     "load": os.getloadavg()[0]})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def _peak_rss_mib() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024


def memory_probe(kernel: str, solver: str, n_answers: int) -> dict:
    """In this (fresh) process: peak RSS growth in MiB while scoring MEMORY_UNIT of tiny llava with k answers."""
    torch.manual_seed(0)
    answers = answer_set(n_answers)
    model = build_vqa_model("llava", "scratch", answers=answers)
    shard = encode_examples(model, *make_examples(16, answers))
    batch, labels = shard.batch(torch.arange(16)), shard.labels
    with torch.no_grad():
        model(**batch)  # warm-up: allocator and lazy inits outside the measurement
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # reset VmHWM to the current RSS
    base = _peak_rss_mib()
    start = time.perf_counter()
    try:
        LntkScorer(kernel, solver).eigenvalues(model, batch, labels, units=[MEMORY_UNIT])
        outcome = "ok"
    except MemoryError as error:
        outcome = "refused: " + str(error).split(";")[0]
    return {"kernel": kernel, "solver": solver, "answers": n_answers, "peak_mib": _peak_rss_mib() - base,
            "seconds": time.perf_counter() - start, "outcome": outcome}


def memory_table(kernels: tuple[str, ...]) -> list[dict]:
    """Part 2: one subprocess per (kernel, solver, k)."""
    rows = []
    for kernel in kernels:
        for n_answers in (10, 100, 1000):
            for solver in ("exact", "matfree", "ghost")[:3 if kernel == "grad" else 2]:
                command = [sys.executable, __file__, "--probe", kernel, solver, str(n_answers)]
                result = subprocess.run(command, capture_output=True, text=True, env=os.environ)
                lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
                row = json.loads(lines[-1]) if lines else {"kernel": kernel, "solver": solver, "answers": n_answers,
                                                          "outcome": "crashed: " + result.stderr[-200:]}
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def print_tables(timing: list[dict], memory: list[dict]) -> None:
    """Markdown tables of both parts."""
    print(f"\nload average at end: {os.getloadavg()}, torch threads: {torch.get_num_threads()}\n")
    print("| family | mode | units | kernel | solver | score 16 samples, wall (CPU) s | epoch 400, wall (CPU) s | "
          "score/epoch wall | score/epoch CPU | max rel err vs exact | load (1 min) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in timing:
        fallback = "" if row["fallback"] is None else f" ({row['fallback']} fallback)"
        print(f"| {row['family']} | {row['mode']} | {row['units']} | {row['kernel']} | {row['solver']}{fallback} | "
              f"{row['score_s']:.3f} ({row['score_cpu_s']:.3f}) | {row['epoch_s']:.2f} ({row['epoch_cpu_s']:.2f}) | "
              f"{100 * row['ratio']:.1f} % | {100 * row['cpu_ratio']:.1f} % | "
              f"{row['rel_err_vs_exact']:.1e} | {row['load']:.1f} |")
    if memory:
        print("\n| kernel | k answers | solver | peak RSS growth (MiB) | time (s) | outcome |")
        print("|---|---|---|---|---|---|")
        for row in memory:
            print(f"| {row['kernel']} | {row['answers']} | {row['solver']} | {row.get('peak_mib', float('nan')):.0f} | "
                  f"{row.get('seconds', float('nan')):.1f} | {row['outcome']} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="*", default=sorted(FAMILIES))
    parser.add_argument("--repeats", type=int, default=3, help="timings per measurement (best kept)")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--memory-kernels", nargs="*", default=["logit"])
    parser.add_argument("--variants", nargs="*", default=[f"{kernel}-{solver}" for kernel, solver in VARIANTS],
                        help="kernel-solver pairs of part 1, e.g. grad-exact grad-ghost")
    parser.add_argument("--modes", nargs="*", default=["layer"], help="unit modes of part 1 (layer, adapter)")
    parser.add_argument("--probe", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.probe:
        print(json.dumps(memory_probe(args.probe[0], args.probe[1], int(args.probe[2]))))
        return
    print(f"load average at start: {os.getloadavg()}", flush=True)
    variants = [tuple(variant.split("-")) for variant in args.variants]
    timing = [row for family in args.families for mode in args.modes
              for row in time_family(family, args.repeats, variants, mode)]
    memory = [] if args.no_memory else memory_table(tuple(args.memory_kernels))
    print_tables(timing, memory)


if __name__ == "__main__":
    main()
