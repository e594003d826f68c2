"""Run a federation on Ray: a coordinator actor that owns a pool of client actors; the driver shows progress.

The driver connects to `$RAY_ADDRESS` when set (a `ray start` cluster, or a `ray job submit` job) and
otherwise starts a local Ray instance. The coordinator actor is threaded (`max_concurrency=2`) so the
driver can poll `progress()` while `run_round` works. Worker actors get `num_cpus` and fractional
`num_gpus` from `federation.worker_resources`.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from typing import Any, Callable

from f3ocus.config.schema import ExperimentConfig
from f3ocus.federated.coordinator import Coordinator
from f3ocus.federated.pool import RayPool
from f3ocus.federated.progress import format_progress, format_round


def run_on_ray(cfg: ExperimentConfig, prepared: Any, *, show: Callable[[str], None] = print) -> dict[str, Any]:
    """Start (or join) Ray, run every round on actors, return the coordinator's summary."""
    import ray

    from f3ocus.experiment import OFFLINE_ENV, make_logger, worker_spec

    started_ray = False
    if not ray.is_initialized():
        env = {key: os.environ[key] for key in (*OFFLINE_ENV, "F3OCUS_CACHE_DIR", "MLFLOW_TRACKING_URI")
               if key in os.environ}
        ray.init(address=os.environ.get("RAY_ADDRESS"), include_dashboard=False, log_to_driver=True,
                 runtime_env={"env_vars": env}, configure_logging=False)
        started_ray = True
    fed = cfg.federation
    actor_options = {"num_cpus": fed.worker_resources.num_cpus, "num_gpus": fed.worker_resources.num_gpus}
    make_pool = functools.partial(RayPool, worker_spec(cfg, prepared), fed.num_actors, actor_options)
    coordinator_cls = ray.remote(Coordinator).options(
        num_cpus=fed.coordinator_resources.num_cpus, num_gpus=fed.coordinator_resources.num_gpus,
        max_concurrency=2, name=None)
    show(f"ray: starting coordinator + {fed.num_actors} client actors "
         f"({fed.worker_resources.num_cpus} CPU, {fed.worker_resources.num_gpus} GPU each) "
         f"for {len(prepared.federation.clients)} clients")
    coordinator = coordinator_cls.remote(cfg, prepared.federation, str(prepared.run_dir), make_pool,
                                         functools.partial(make_logger, cfg, prepared))
    try:
        _watch(coordinator.evaluate_initial.remote(), coordinator, show)
        for round_idx in range(1, fed.rounds + 1):
            _watch(coordinator.run_round.remote(round_idx), coordinator, show)
        return ray.get(coordinator.finish.remote())
    finally:
        ray.kill(coordinator)
        if started_ray:
            ray.shutdown()


def _watch(ref: Any, coordinator: Any, show: Callable[[str], None]) -> dict[str, Any]:
    """Wait for one round, redrawing a progress line; print the round's summary line."""
    import ray

    live = sys.stdout.isatty()
    while True:
        ready, _ = ray.wait([ref], timeout=0.5)
        if live:
            sys.stdout.write("\r" + format_progress(ray.get(coordinator.progress.remote())) + "\033[K")
            sys.stdout.flush()
        if ready:
            break
    record = ray.get(ref)
    if live:
        sys.stdout.write("\r\033[K")
    progress = ray.get(coordinator.progress.remote())
    show(format_round(record, progress))
    return record
