"""Run a sweep as a Ray job: every trial is one federated experiment inside its own placement group.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python ray_jobs/sweep.py configs/sweeps/smoke_2x2x2.yaml [--set key=value ...]

Inside a job, $RAY_ADDRESS points at the cluster: Tune runs here, trials and their actors land on the
cluster's nodes. `--set` keys address the sweep file (`--set set.tracking.output_dir=/shared/runs`).
The working dir is uploaded without .venv, runs/, data or caches (`.rayignore`, `.gitignore`).
Smoke: `python ray_jobs/sweep.py --smoke-test` runs configs/sweeps/smoke_2x2x2.yaml (8 trials of 1 round,
2 at a time, local engine in reused trial processes; 42 s on a quiet 2-core machine, docs/BENCHMARKS.md).
Exit 2 with one message for an invalid sweep, 1 if a trial failed.
"""

from __future__ import annotations

import sys

from _job import run_job  # ray_jobs/_job.py: sys.path, offline defaults, --smoke-test

if __name__ == "__main__":
    sys.exit(run_job("sweep", "configs/sweeps/smoke_2x2x2.yaml"))
