"""F3OCUS end to end on the quickstart task: every solver x unit mode, one table.

    .venv/bin/python bench/f3ocus_quickstart.py [--rounds 2] [--solvers nsga2,abc,...] [--modes layer,adapter]
                                                [--scorer lntk] [--engine local] [--out DIR]

Each cell is one `f3ocus run configs/experiments/quickstart.yaml` with `selection.method=f3ocus`, the
given solver, scorer and unit mode (same seed, data and budgets as the quickstart), MLflow on (sqlite in
`--out`), so every run's per-round fronts, masks and rank heatmap can be opened in the MLflow UI. The
table gives the final mean accuracy, the last round's two objectives, the number of distinct units
trained over the run, the solver's mean seconds per round and the run's wall time.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

SOLVERS = ("nsga2", "abc", "aco", "sa", "mopso", "flow")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--solvers", default=",".join(SOLVERS))
    parser.add_argument("--modes", default="layer,adapter")
    parser.add_argument("--scorer", default="lntk")
    parser.add_argument("--engine", default="local", choices=("local", "ray"))
    parser.add_argument("--out", default=None, help="output dir (default: a new temporary dir)")
    args = parser.parse_args()
    for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ.setdefault(key, "1")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")

    from f3ocus.config import load_config
    from f3ocus.experiment import run_experiment

    out = args.out or tempfile.mkdtemp(prefix="f3ocus-bench-")
    print(f"output and MLflow store: {out}")
    header = f"{'solver':6} {'mode':7} {'acc':>6} {'majority':>8} {'importance':>10} {'variance':>8} " \
             f"{'units':>5} {'solve s':>7} {'wall s':>6}"
    print(header)
    print("-" * len(header))
    for mode in args.modes.split(","):
        for solver in args.solvers.split(","):
            cfg = load_config("configs/experiments/quickstart.yaml", [
                f"tracking.output_dir={out}", "tracking.experiment=bench-f3ocus-quickstart",
                f"tracking.run_name={solver}-{mode}", f"federation.engine={args.engine}",
                f"federation.rounds={args.rounds}", "selection.method=f3ocus", f"selection.scorer={args.scorer}",
                f"selection.solver={solver}", f"model.unit_mode={mode}"])
            start = time.perf_counter()
            result = run_experiment(cfg, show=lambda _: None)
            wall = time.perf_counter() - start
            rounds = [r for r in result["history"] if r["round"] > 0]
            last = rounds[-1]["selection"]
            units = {u for r in rounds for chosen in r["selected"].values() for u in chosen}
            solve = sum(r.get("phase_seconds", {}).get("select", 0.0) for r in rounds) / len(rounds)
            print(f"{solver:6} {mode:7} {result['final']['accuracy']:6.3f} "
                  f"{result['majority_baseline']['accuracy']:8.3f} {last['importance']:10.3f} "
                  f"{last['variance']:8.3f} {len(units):5d} {solve:7.2f} {wall:6.0f}", flush=True)


if __name__ == "__main__":
    main()
