"""Run a sweep as a Ray job: every trial is one federated experiment inside its own placement group.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python ray_jobs/sweep.py configs/sweeps/smoke_2x2x2.yaml [--set key=value ...]

Inside a job, $RAY_ADDRESS points at the cluster: Tune runs here, trials and their actors land on the
cluster's nodes. `--set` keys address the sweep file (`--set set.tracking.output_dir=/shared/runs`).
The working dir is uploaded without .venv, runs/, data or caches (`.rayignore`, `.gitignore`).
Smoke: `python ray_jobs/sweep.py --smoke-test` runs configs/sweeps/smoke_2x2x2.yaml (8 trials of 1 round,
2 at a time; ~3 min on 2 CPUs). Exit 2 with one message for an invalid sweep, 1 if a trial failed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the working dir shipped by `ray job submit` holds the f3ocus package

for key, value in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "RAY_AUTH_MODE": "disabled"}.items():
    os.environ.setdefault(key, value)

from f3ocus.cli import main  # noqa: E402


def _argv(args: list[str]) -> list[str]:
    if "--smoke-test" in args:
        args = [a for a in args if a != "--smoke-test"]
        if not args or args[0].startswith("-"):
            args = [str(REPO / "configs/sweeps/smoke_2x2x2.yaml"), *args]
    return ["sweep", *args]


if __name__ == "__main__":
    sys.exit(main(_argv(sys.argv[1:])))
