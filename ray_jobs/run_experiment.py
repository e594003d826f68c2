"""Run one experiment as a Ray job.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python ray_jobs/run_experiment.py configs/experiments/quickstart.yaml [--set key=value ...]

Inside a job, $RAY_ADDRESS points at the cluster, so the coordinator and client actors land on it.
Smoke: `python ray_jobs/run_experiment.py --smoke-test` runs configs/smoke/cpu_tiny.yaml (tiny LLaVA from
scratch, 3 clients, 2 rounds, CPU, ~1 min). Exit code 2 with one message for an invalid config.
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
            args = [str(REPO / "configs/smoke/cpu_tiny.yaml"), *args]
    return ["run", *args]


if __name__ == "__main__":
    sys.exit(main(_argv(sys.argv[1:])))
