"""Run one experiment as a Ray job.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python ray_jobs/run_experiment.py configs/experiments/quickstart.yaml [--set key=value ...]

Inside a job, $RAY_ADDRESS points at the cluster, so the coordinator and client actors land on it.
Smoke: `python ray_jobs/run_experiment.py --smoke-test` runs configs/smoke/cpu_tiny.yaml (tiny LLaVA from
scratch, 3 clients, 2 rounds, CPU, ~1 min). Exit code 2 with one message for an invalid config.
"""

from __future__ import annotations

import sys

from _job import run_job  # ray_jobs/_job.py: sys.path, offline defaults, --smoke-test

if __name__ == "__main__":
    sys.exit(run_job("run", "configs/smoke/cpu_tiny.yaml"))
