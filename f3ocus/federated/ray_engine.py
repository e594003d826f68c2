"""Run a federation on Ray: a coordinator actor that owns a pool of client actors; the driver shows progress.

The driver connects to `$RAY_ADDRESS` when set (a `ray start` cluster, or a `ray job submit` job) and
otherwise starts a local Ray instance. The coordinator actor is threaded (`max_concurrency=2`) so the
driver can poll `progress()` while `run_round` works. Worker actors get `num_cpus` and fractional
`num_gpus` from `federation.worker_resources`. If the coordinator actor dies, the driver starts a new
one from the last checkpoint (up to `federation.coordinator_restarts` times): completed rounds are
never redone or lost.

Two optional hooks serve Ray Tune sweeps (`f3ocus.sweeps`) and leave a plain run unchanged: `placement`
schedules the coordinator and each client actor into given bundles of a placement group (a trial's
own), and `on_round(record, run_info)` is called after every round (round 0 = the initial evaluation)
with the round's record and where the run lives (MLflow run id, Ray nodes of the coordinator and of the
client actors). If `on_round` raises (a scheduler stopping the trial), the run is aborted: the coordinator
gets up to `ABORT_TIMEOUT_S` to close its MLflow run as KILLED and kill its client actors, then it is
killed itself, the driver kills the client actors it started, and the exception propagates. The last
completed round's checkpoint stays in the run dir.

Start-up order: the driver creates the client actors (`RayPool`) first and hands the pool to the
coordinator actor, so the slowest part of start-up, each client actor's process start, torch and
transformers imports and model load, overlaps the coordinator's own start and its opening of the MLflow
run. The driver owns those first client actors (it kills them when their coordinator ends or is
replaced); actors the coordinator starts in place of dead ones are its own and die with it.
"""

from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from f3ocus.config.schema import ExperimentConfig
from f3ocus.federated.coordinator import Coordinator
from f3ocus.federated.pool import RayPool
from f3ocus.federated.checkpoint import load_latest
from f3ocus.federated.state import FederationState, TooFewClientsError
from f3ocus.federated.progress import format_progress, format_round
from f3ocus.federated.records import RoundRecord
from f3ocus.federated.rounds import run_rounds
from f3ocus.prepared import OFFLINE_ENV, Prepared, make_logger, worker_spec


OnRound = Callable[[RoundRecord, dict[str, Any]], None]
ABORT_TIMEOUT_S = 15.0  # how long an aborted run waits for its coordinator to close MLflow and stop workers


@dataclass(frozen=True)
class ActorPlacement:
    """Bundles of an existing placement group for the coordinator and for each client actor.

    `client_bundles[i]` is the bundle of client actor i (one per `federation.num_actors`). Every actor
    also captures its child tasks in the group, so nothing a trial starts runs outside its reservation.
    """

    placement_group: Any  # ray.util.placement_group.PlacementGroup
    coordinator_bundle: int
    client_bundles: tuple[int, ...]

    def options(self, bundle: int) -> dict[str, Any]:
        """Ray actor options that schedule an actor into `bundle` of the group."""
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        return {"scheduling_strategy": PlacementGroupSchedulingStrategy(
            placement_group=self.placement_group, placement_group_bundle_index=bundle,
            placement_group_capture_child_tasks=True)}


def run_on_ray(cfg: ExperimentConfig, prepared: Prepared, resume: FederationState | None = None, *,
               show: Callable[[str], None] = print, on_round: OnRound | None = None,
               placement: ActorPlacement | None = None) -> dict[str, Any]:
    """Start (or join) Ray, run every remaining round on actors, return the coordinator's summary.

    `on_round` and `placement`: see the module docstring.
    """
    import ray

    if placement is not None and len(placement.client_bundles) != cfg.federation.num_actors:
        raise ValueError(f"placement has {len(placement.client_bundles)} client bundles for "
                         f"{cfg.federation.num_actors} client actors")
    started_ray = _init_ray()
    restarts = 0
    try:
        while True:
            # The client actors are created here, before the coordinator, so their start (process, torch /
            # transformers imports, model load: the longest part of start-up) overlaps the coordinator's.
            pool = _start_pool(cfg, prepared, placement)
            coordinator = None
            try:
                coordinator = _start_coordinator(cfg, prepared, pool, resume, show, placement)
                return _run_rounds(cfg, coordinator, show, on_round)
            except ray.exceptions.RayActorError as error:
                if restarts >= cfg.federation.coordinator_restarts:
                    raise
                restarts += 1
                resume = load_latest(Path(prepared.run_dir), warn=show)
                show(f"coordinator died ({type(error).__name__}); restarting from the checkpoint of round "
                     f"{resume.round_idx} ({restarts}/{cfg.federation.coordinator_restarts})")
            finally:
                if coordinator is not None:
                    ray.kill(coordinator)
                pool.shutdown()  # the driver owns the first actors; replacements die with their coordinator
    finally:
        if started_ray:
            ray.shutdown()


def _init_ray() -> bool:
    """Join $RAY_ADDRESS or start a local instance; True when this call started Ray."""
    import ray

    if ray.is_initialized():
        return False
    address = os.environ.get("RAY_ADDRESS")
    # Joining a cluster: its workers get our environment through the job's runtime env. Otherwise a new
    # local instance ("local": never an unrelated `ray start` instance of this machine), whose workers
    # inherit this process's environment already; a runtime env there would only make every actor start
    # wait for the runtime-env agent (1.5-2.5 s more for two actors on 2 busy cores).
    env = {key: os.environ[key] for key in (*OFFLINE_ENV, "F3OCUS_CACHE_DIR", "MLFLOW_TRACKING_URI")
           if key in os.environ}
    ray.init(address=address or "local", include_dashboard=False, log_to_driver=True,
             runtime_env={"env_vars": env} if address else None, configure_logging=False)
    return True


def _start_pool(cfg: ExperimentConfig, prepared: Prepared, placement: ActorPlacement | None = None) -> RayPool:
    """The client actors, started now (they import and load the model while the caller goes on)."""
    fed = cfg.federation
    actor_options = {"num_cpus": fed.worker_resources.num_cpus, "num_gpus": fed.worker_resources.num_gpus}
    slot_options = None if placement is None else [placement.options(b) for b in placement.client_bundles]
    return RayPool(worker_spec(cfg, prepared), fed.num_actors, actor_options, retries=fed.client_retries,
                   slot_options=slot_options)


def _start_coordinator(cfg: ExperimentConfig, prepared: Prepared, pool: RayPool, resume: FederationState | None,
                       show: Callable[[str], None], placement: ActorPlacement | None = None) -> Any:
    """The coordinator actor, handed `pool` (its copy holds the same actor handles and replaces dead actors)."""
    import ray

    fed = cfg.federation
    coordinator_cls = ray.remote(Coordinator).options(
        num_cpus=fed.coordinator_resources.num_cpus, num_gpus=fed.coordinator_resources.num_gpus,
        max_concurrency=2, **({} if placement is None else placement.options(placement.coordinator_bundle)))
    show(f"ray: starting coordinator + {fed.num_actors} client actors "
         f"({fed.worker_resources.num_cpus:g} CPU, {fed.worker_resources.num_gpus:g} GPU each) "
         f"for {len(prepared.federation.clients)} clients")
    return coordinator_cls.remote(cfg, prepared.federation, str(prepared.run_dir), functools.partial(_given, pool),
                                  functools.partial(make_logger, cfg, prepared), resume)


def _given(pool: RayPool) -> RayPool:
    """The coordinator's `make_pool` on Ray: the pool the driver already started."""
    return pool


def _run_rounds(cfg: ExperimentConfig, coordinator: Any, show: Callable[[str], None],
                on_round: OnRound | None = None) -> dict[str, Any]:
    """The round loop (`run_rounds`) driven from here, each round a call on the coordinator actor."""
    run_info = _run_info(coordinator) if on_round is not None else {}
    return run_rounds(_CoordinatorActor(coordinator, show), cfg.federation.rounds,
                      lambda record: _notify(on_round, record, run_info, coordinator))


class _CoordinatorActor:
    """The driver's side of a coordinator actor, with the calls of `RoundRunner`: a round is watched while it
    runs (`_watch`: live progress line, then its summary line, round 0 included)."""

    def __init__(self, actor: Any, show: Callable[[str], None]):
        self.actor = actor
        self.show = show

    def needs_initial_evaluation(self) -> bool:
        import ray

        return ray.get(self.actor.needs_initial_evaluation.remote())

    def evaluate_initial(self) -> RoundRecord:
        return _watch(self.actor.evaluate_initial.remote(), self.actor, self.show)

    def next_round(self) -> int:
        import ray

        return ray.get(self.actor.next_round.remote())

    def run_round(self, round_idx: int) -> RoundRecord:
        import ray

        try:
            return _watch(self.actor.run_round.remote(round_idx), self.actor, self.show)
        except ray.exceptions.RayTaskError as error:
            if isinstance(error.cause, TooFewClientsError):  # the same clear stop as the local engine
                raise error.cause from None
            raise

    def finish(self) -> dict[str, Any]:
        import ray

        return ray.get(self.actor.finish.remote())


def _run_info(coordinator: Any) -> dict[str, Any]:
    """MLflow run id, the coordinator's node and its client actors' nodes (asked once per coordinator)."""
    import ray

    info = ray.get(coordinator.run_info.remote())
    return {**info, "coordinator_node": ray.get(coordinator.__ray_call__.remote(_node_of))}


def _notify(on_round: OnRound | None, record: RoundRecord, run_info: dict[str, Any], coordinator: Any) -> None:
    """Call `on_round`; if it raises (the caller stops the run), abort the run cleanly and re-raise."""
    import ray

    if on_round is None:
        return
    try:
        on_round(record, run_info)
    except BaseException:  # noqa: BLE001 - includes the SystemExit a Tune trial stop raises in report()
        try:
            ray.get(coordinator.abort.remote("KILLED"), timeout=ABORT_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - best effort: the coordinator is killed by the caller anyway
            pass
        raise


def _node_of(_instance: object) -> str:
    """Run inside an actor by `__ray_call__`: the id of the node it lives on."""
    import ray

    return ray.get_runtime_context().get_node_id()


def _watch(ref: Any, coordinator: Any, show: Callable[[str], None]) -> RoundRecord:
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
