"""`.venv/bin/python bench/baseline_scorers.py [--cases vilt:layer ...] [--repeats 2]`

Time of each baseline scorer on one 16-sample score batch vs one local epoch (400 samples, batch 32,
all units + head trainable), tiny scratch presets, 13 answers: the protocol of bench/lntk.py. Best of
`--repeats` interleaved rounds (epoch, scorer 1, scorer 2, ...), wall and CPU seconds, 1 torch thread."""
import argparse, os, sys, time
import torch
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.lntk import answer_set, make_examples, measure, run_epoch, trainable_copy
from f3ocus.importance.registry import build_scorer
from f3ocus.models.registry import build_vqa_model
from f3ocus.models.training import encode_examples

NAMES = ("magnitude", "snip", "grasp", "gradflow", "rgn", "synflow", "fisher", "spt", "fedselect", "grad_norm", "lntk")
parser = argparse.ArgumentParser()
parser.add_argument("--cases", nargs="*", default=["llava:layer", "vilt:layer", "blip:layer", "blip2:layer",
                                                   "llava:adapter", "vilt:adapter"])
parser.add_argument("--repeats", type=int, default=2)
args = parser.parse_args()
torch.set_num_threads(1)
rows = []
for case in args.cases:
    family, mode = case.split(":")
    answers = answer_set(13)
    model = build_vqa_model(family, "scratch", answers=answers, unit_mode=mode)
    shard = encode_examples(model, *make_examples(400, answers))
    batch, labels = shard.batch(torch.arange(16)), shard.labels[:16]
    best = {key: [float("inf"), float("inf")] for key in ("epoch", *NAMES)}
    for round_index in range(args.repeats):
        clone = trainable_copy(model)
        timings = {"epoch": measure(lambda: run_epoch(clone, shard, round_index))}
        del clone
        for name in NAMES:
            scorer = build_scorer(name)
            timings[name] = measure(lambda: scorer.score(model, batch, labels))
        for key, (wall, cpu, _) in timings.items():
            best[key] = [min(best[key][0], wall), min(best[key][1], cpu)]
    epoch_wall, epoch_cpu = best["epoch"]
    print(f"\n{family} {mode}: {len(model.units)} units, epoch {epoch_wall:.2f} s wall ({epoch_cpu:.2f} s CPU), "
          f"load {os.getloadavg()[0]:.1f}", flush=True)
    for name in NAMES:
        wall, cpu = best[name]
        rows.append((family, mode, name, wall, cpu, wall / epoch_wall, cpu / epoch_cpu, epoch_wall))
        print(f"  {name:10s} {wall:7.3f} s ({cpu:.3f} CPU)  {100 * wall / epoch_wall:6.1f} % wall  "
              f"{100 * cpu / epoch_cpu:6.1f} % CPU", flush=True)
print("\n| scorer | " + " | ".join(f"{f} {m}" for f, m in dict.fromkeys((r[0], r[1]) for r in rows)) + " |")
cases = list(dict.fromkeys((r[0], r[1]) for r in rows))
print("|---|" + "---|" * len(cases))
for name in NAMES:
    cells = [next(r for r in rows if (r[0], r[1]) == c and r[2] == name) for c in cases]
    print(f"| {name} | " + " | ".join(f"{1000 * r[3]:.0f} ms = {100 * r[5]:.1f} % ({100 * r[6]:.1f} % CPU)" for r in cells) + " |")
print("| epoch (400, b32) | " + " | ".join(f"{next(r for r in rows if (r[0], r[1]) == c)[7]:.2f} s" for c in cases) + " |")
print(f"load at end: {os.getloadavg()}")
