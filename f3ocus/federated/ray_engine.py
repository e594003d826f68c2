"""Run a federation on Ray: a coordinator actor that owns a pool of client actors; the driver shows progress.

The driver connects to `$RAY_ADDRESS` when set (a `ray start` cluster, or a `ray job submit` job) and
otherwise starts a local Ray instance. The coordinator actor is threaded (`max_concurrency=2`) so the
driver can poll `progress()` while `run_round` works. Worker actors get `num_cpus` and fractional
`num_gpus` from `federation.worker_resources`. If the coordinator actor dies, the driver starts a new
one from the last checkpoint (up to `federation.coordinator_restarts` times): completed rounds are
never redone or lost.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Any, Callable

from f3ocus.config.schema import ExperimentConfig
from f3ocus.federated.coordinator import CHECKPOINT, Coordinator, FederationState, TooFewClientsError
from f3ocus.federated.pool import RayPool
from f3ocus.federated.progress import format_progress, format_round


def run_on_ray(cfg: ExperimentConfig, prepared: Any, resume: FederationState | None = None, *,
               show: Callable[[str], None] = print) -> dict[str, Any]:
    """Start (or join) Ray, run every remaining round on actors, return the coordinator's summary."""
    import ray

    started_ray = _init_ray()
    restarts = 0
    try:
        while True:
            coordinator = _start_coordinator(cfg, prepared, resume, show)
            try:
                return _run_rounds(cfg, coordinator, show)
            except ray.exceptions.RayActorError as error:
                if restarts >= cfg.federation.coordinator_restarts:
                    raise
                restarts += 1
                resume = FederationState.load(Path(prepared.run_dir) / CHECKPOINT)
                show(f"coordinator died ({type(error).__name__}); restarting from the checkpoint of round "
                     f"{resume.round_idx} ({restarts}/{cfg.federation.coordinator_restarts})")
            finally:
                ray.kill(coordinator)
    finally:
        if started_ray:
            ray.shutdown()


def _init_ray() -> bool:
    """Join $RAY_ADDRESS or start a local instance; True when this call started Ray."""
    import ray

    from f3ocus.experiment import OFFLINE_ENV

    if ray.is_initialized():
        return False
    env = {key: os.environ[key] for key in (*OFFLINE_ENV, "F3OCUS_CACHE_DIR", "MLFLOW_TRACKING_URI")
           if key in os.environ}
    ray.init(address=os.environ.get("RAY_ADDRESS"), include_dashboard=False, log_to_driver=True,
             runtime_env={"env_vars": env}, configure_logging=False)
    return True


def _start_coordinator(cfg: ExperimentConfig, prepared: Any, resume: FederationState | None,
                       show: Callable[[str], None]) -> Any:
    import ray

    from f3ocus.experiment import make_logger, worker_spec

    fed = cfg.federation
    actor_options = {"num_cpus": fed.worker_resources.num_cpus, "num_gpus": fed.worker_resources.num_gpus}
    make_pool = functools.partial(RayPool, worker_spec(cfg, prepared), fed.num_actors, actor_options,
                                  retries=fed.client_retries)
    coordinator_cls = ray.remote(Coordinator).options(
        num_cpus=fed.coordinator_resources.num_cpus, num_gpus=fed.coordinator_resources.num_gpus,
        max_concurrency=2)
    show(f"ray: starting coordinator + {fed.num_actors} client actors "
         f"({fed.worker_resources.num_cpus:g} CPU, {fed.worker_resources.num_gpus:g} GPU each) "
         f"for {len(prepared.federation.clients)} clients")
    return coordinator_cls.remote(cfg, prepared.federation, str(prepared.run_dir), make_pool,
                                  functools.partial(make_logger, cfg, prepared), resume)


def _run_rounds(cfg: ExperimentConfig, coordinator: Any, show: Callable[[str], None]) -> dict[str, Any]:
    import ray

    if ray.get(coordinator.needs_initial_evaluation.remote()):
        _watch(coordinator.evaluate_initial.remote(), coordinator, show)
    for round_idx in range(ray.get(coordinator.next_round.remote()), cfg.federation.rounds + 1):
        try:
            _watch(coordinator.run_round.remote(round_idx), coordinator, show)
        except ray.exceptions.RayTaskError as error:
            if isinstance(error.cause, TooFewClientsError):  # the same clear stop as the local engine
                raise error.cause from None
            raise
    return ray.get(coordinator.finish.remote())


def _watch(ref: Any, coordinator: Any, show: Callable[[str], None]) -> dict[str, Any]:
    """Wait for one round, redrawing a progress line on a terminal; print the round's summary line."""
    import ray

    live = sys.stdout.isatty()
    while True:
        ready, _ = ray.wait([ref], timeout=0.5)
        if ready:
            break
        if live:
            sys.stdout.write("\r" + format_progress(ray.get(coordinator.progress.remote())) + "\033[K")
            sys.stdout.flush()
    record = ray.get(ref)
    if live:
        sys.stdout.write("\r\033[K")
    show(format_round(record, ray.get(coordinator.progress.remote())))
    return record
