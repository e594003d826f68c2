"""Run `f3ocus bench paper` or `f3ocus bench study` as a Ray job: every cell is a Tune trial on the cluster.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python ray_jobs/bench.py paper --quick --jobs 2 --output-dir /abs/path/runs

Inside a job, $RAY_ADDRESS points at the cluster: the grid's driver (Tune, the parent MLflow run, the
`cells/<cell>.json` files and the tables) runs here, its trials on the cluster's nodes. Give an absolute
`--output-dir` that every node can write: the job's working dir is a temporary copy. Re-submitting the same
command resumes the grid (finished cells with the same config are skipped).
Smoke: `python ray_jobs/bench.py --smoke-test [--output-dir DIR]` runs a 2-cell grid (T1, ViLT from scratch,
Last-K and Random, 1 round, 20 rows per client, 2 at a time; both cells "ok"; under 4.5 min for submit to exit,
measured inside tests/integration/test_bench_grid.py on the shared 2-core box at load ~11). Exit 2 with one
message for a bad flag or cell config, 1 if a cell failed.
"""

from __future__ import annotations

import sys

from _job import run_job  # ray_jobs/_job.py: sys.path, offline defaults

SMOKE = ["paper", "--quick", "--tasks", "t1", "--models", "vilt", "--methods", "last_k,random", "--jobs", "2",
         "--set", "model.checkpoint=scratch", "--set", "data.samples_per_client=20", "--set", "federation.rounds=1"]


def smoke_argv(args: list[str]) -> list[str]:
    """`--smoke-test` becomes the tiny grid's flags; the other flags given (e.g. `--output-dir`) follow them.
    (`run_job`'s own smoke handling inserts a config path, which `f3ocus bench` does not take.)"""
    if "--smoke-test" not in args:
        return args
    return [*SMOKE, *(arg for arg in args if arg != "--smoke-test")]


if __name__ == "__main__":
    sys.argv[1:] = smoke_argv(sys.argv[1:])
    sys.exit(run_job("bench", "configs/smoke/cpu_tiny.yaml"))
