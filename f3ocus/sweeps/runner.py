"""`run_sweep`: check everything, prepare shared inputs, start Tune, summarise into MLflow and JSON.

Order, so that every user error surfaces before any trial starts: validate the sweep and every trial
config it can enumerate (no Ray) -> build the foundation checkpoints and data stores the trials share
(data errors) -> pick the tracking URI (start a local tracking server when SQLite would see concurrent
writers) -> join or start Ray and check that each trial's placement group can ever fit the cluster ->
parent MLflow run -> `Tuner.fit()` -> `sweep_result.json`, best trial on the parent run, children's
final statuses.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any, Callable

from f3ocus.config.load import flatten, to_dict
from f3ocus.config.schema import ConfigError
from f3ocus.sweeps import tracking
from f3ocus.sweeps.placement import check_fits, trial_layout
from f3ocus.sweeps.spec import SweepSpec, describe, validate_trials

RESULT_FILE = "sweep_result.json"


def run_sweep(spec: SweepSpec, *, show: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every trial of `spec` on Ray Tune; return (and write to `<sweep dir>/sweep_result.json`) the summary.

    Raises:
        ConfigError: an invalid sweep or trial config, or a trial that can never fit the cluster.
        DataError: bad data, found while building a trial's data store.
    """
    from f3ocus.prepared import OFFLINE_ENV

    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    checked = validate_trials(spec)
    base = checked[0][1]
    output_dir = Path(base.tracking.output_dir).expanduser().resolve()
    sweep_dir = output_dir / "sweeps" / f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    show(f"sweep {spec.name}: {spec.num_trials} trial(s), at most {spec.options.max_concurrent_trials} at a time; "
         f"{len(checked)} trial config(s) validated; sweep dir {sweep_dir}")
    output_dir.mkdir(parents=True, exist_ok=True)
    store_uri, server = _tracking(spec, base, output_dir, sweep_dir, show) if base.tracking.mlflow else (None, None)
    _prebuild(checked, show)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        if server is not None:
            stack.callback(server.stop)
            server.start()  # starts while Ray starts; waited for below
        if _init_ray():
            stack.callback(_shutdown_ray)
        if server is not None:
            server.wait()
        uri = server.uri if server is not None else store_uri
        check_fits([(describe(values), trial_layout(cfg, spec.options.trial_resources.driver,
                                                    spec.options.trial_resources.strategy))
                    for values, cfg in checked], _node_resources())
        parent = _open_parent(spec, uri, output_dir, sweep_dir) if uri else None
        try:
            grid = _fit(spec, uri, output_dir, parent, [cfg for _, cfg in checked], show)
        except BaseException:
            if parent is not None:
                parent.close("FAILED")
            raise
        summary = _summarise(spec, grid, store_uri, parent, sweep_dir)
        (sweep_dir / RESULT_FILE).write_text(json.dumps(summary, indent=2, default=str))
        if parent is not None:
            _close_parent(parent, summary, sweep_dir, show)
    return summary


# ------------------------------------------------------------------------------------------ before Tune
def _prebuild(checked: list[tuple[dict, Any]], show: Callable[[str], None]) -> None:
    """Foundation checkpoints and data stores the trials share, built once here (not raced by trials)."""
    from f3ocus.config.validate import check_budgets, check_min_clients
    from f3ocus.experiment import _quiet_libraries, build_data, ensure_model
    from f3ocus.models.catalog import list_units

    _quiet_libraries()
    seen: set[str] = set()
    for values, cfg in checked:
        key = json.dumps([to_dict(cfg.data), cfg.seed, cfg.model.family, cfg.model.checkpoint,
                          cfg.model.unit_mode, cfg.model.selectable, to_dict(cfg.federation)], sort_keys=True,
                         default=str)
        if key in seen:
            continue
        seen.add(key)
        ensure_model(cfg, show)
        store = build_data(cfg)
        units = list_units(cfg.model.family, cfg.model.checkpoint, cache_dir=cfg.model.cache_dir,
                           selectable=cfg.model.selectable)
        try:
            check_budgets(cfg, num_units=len(units), num_clients=len(store.clients))
            check_min_clients(cfg, num_clients=len(store.clients))
        except ConfigError as error:
            raise ConfigError(error.field, f"{error.message} (in the trial {describe(values)})") from None


def _tracking(spec: SweepSpec, base: Any, output_dir: Path, sweep_dir: Path,
              show: Callable[[str], None]) -> tuple[str, tracking.MlflowServer | None]:
    """The tracking store, and a local tracking server (not started yet) when trials would write to a
    SQLite store concurrently; trials log to the server when there is one, else to the store."""
    from f3ocus.tracking.mlflow_logger import resolve_tracking_uri

    uri = resolve_tracking_uri(base.tracking.tracking_uri, output_dir)
    if uri.startswith(("http://", "https://")):
        try:
            tracking.wait_until_up(uri, timeout=20)
        except RuntimeError:
            raise ConfigError("tracking.tracking_uri", f"no MLflow tracking server answers at {uri}; start one "
                                                       f"(f3ocus mlflow-server) or give a sqlite:/// URI") from None
    tracking.ensure_experiment(uri, spec.experiment, output_dir / "mlartifacts")
    if not uri.startswith("sqlite") or spec.options.max_concurrent_trials == 1:
        return uri, None
    server = tracking.MlflowServer(uri, output_dir / "mlartifacts", sweep_dir / "mlflow_server.log")
    show(f"mlflow: {spec.options.max_concurrent_trials} concurrent trials must not write {uri} directly "
         f"(SQLite locks); starting a tracking server on it at {server.uri}, stopped at the end of the sweep")
    return uri, server


def _init_ray() -> bool:
    """Join $RAY_ADDRESS (a `ray start` cluster, or the cluster of a `ray job submit` job) or start Ray here."""
    import ray

    from f3ocus.prepared import OFFLINE_ENV

    if ray.is_initialized():
        return False
    env = {key: os.environ[key] for key in (*OFFLINE_ENV, "F3OCUS_CACHE_DIR") if key in os.environ}
    ray.init(address=os.environ.get("RAY_ADDRESS"), include_dashboard=False, configure_logging=False,
             runtime_env={"env_vars": env})
    return True


def _shutdown_ray() -> None:
    import ray

    ray.shutdown()


def _node_resources() -> list[dict[str, float]]:
    import ray

    return [node["Resources"] for node in ray.nodes() if node.get("Alive")]


def _open_parent(spec: SweepSpec, uri: str, output_dir: Path, sweep_dir: Path):
    from f3ocus.prepared import git_sha

    params = {"sweep.base": str(spec.base), "sweep.num_trials": spec.num_trials,
              **{f"sweep.{key}": value for key, value in flatten(to_dict(spec.options)).items()},
              **{f"sweep.set.{key}": value for key, value in spec.fixed.items()},
              **{f"sweep.{space.kind}.{space.key}": list(space.values) for space in spec.spaces}}
    return tracking.open_parent(
        uri, spec.experiment, sweep_dir.name, output_dir / "mlartifacts",
        tags={tracking.SWEEP_TAG: spec.name, "f3ocus.sweep.file": str(spec.path), "f3ocus.git_sha": git_sha(),
              "f3ocus.sweep.dir": str(sweep_dir)},
        params=params, sweep_file=spec.path, resolved=_resolved(spec), buffer_path=sweep_dir / "mlflow_buffer.jsonl")


def _resolved(spec: SweepSpec) -> dict[str, Any]:
    return {"name": spec.name, "base": str(spec.base), "set": spec.fixed,
            **{kind: {s.key: list(s.values) for s in spec.spaces if s.kind == kind}
               for kind in ("grid", "choice", "uniform", "loguniform")},
            **to_dict(spec.options)}


# ------------------------------------------------------------------------------------------------- Tune
def _fit(spec: SweepSpec, uri: str | None, output_dir: Path, parent: Any, trials: list[Any],
         show: Callable[[str], None]):
    """Run Tune over the sweep; `trials` are the validated trial configs (rounds, engines)."""
    from ray import tune

    from f3ocus.sweeps.space import param_space, scheduler, search_algorithm
    from f3ocus.sweeps.trainable import TrialContext, run_trial

    context = TrialContext(spec, uri, str(output_dir), parent.run_id if parent is not None else None, os.getcwd())
    reuse = spec.reuses_actors(trials)
    trainable = tune.with_resources(tune.with_parameters(run_trial, context=context),
                                    resources=_Resources(spec))
    storage = Path(spec.options.storage_path or output_dir / "tune").expanduser()
    tuner = tune.Tuner(
        trainable, param_space=param_space(spec),
        tune_config=tune.TuneConfig(metric=spec.options.metric, mode=spec.options.mode,
                                    num_samples=spec.options.num_samples, search_alg=search_algorithm(spec),
                                    scheduler=scheduler(spec, max(cfg.federation.rounds for cfg in trials)),
                                    reuse_actors=reuse),
        run_config=tune.RunConfig(name=f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}",
                                  storage_path=str(storage.resolve()) if "://" not in str(storage) else str(storage),
                                  failure_config=tune.FailureConfig(max_failures=spec.options.max_failures),
                                  verbose=1))
    engines = sorted({cfg.federation.engine for cfg in trials})
    show(f"tune: starting; {'/'.join(engines)} engine trials, trial actors {'reused' if reuse else 'not reused'}; "
         f"results under {storage}")
    started = time.perf_counter()
    grid = tuner.fit()
    show(f"tune: {len(grid)} trial(s) ended after {time.perf_counter() - started:.0f} s")
    return grid


@dataclasses.dataclass(frozen=True)
class _Resources:
    """Tune's per-trial resource request, `config -> PlacementGroupFactory`: the trial's placement group,
    from its own resolved config (trials of one sweep may differ in actors and their resources)."""

    spec: SweepSpec

    def __call__(self, config: dict[str, Any]):
        from ray import tune

        from f3ocus.sweeps.spec import trial_config

        values = {key: config[key] for key in self.spec.space_keys}
        resources = self.spec.options.trial_resources
        layout = trial_layout(trial_config(self.spec, values), resources.driver, resources.strategy)
        return tune.PlacementGroupFactory([dict(b) for b in layout.bundles], strategy=layout.strategy)


# ------------------------------------------------------------------------------------------------ after
def _summarise(spec: SweepSpec, grid: Any, uri: str | None, parent: Any, sweep_dir: Path) -> dict[str, Any]:
    """Every trial's values, last result, status and MLflow run; the best trial by the sweep's metric."""
    metric, mode = spec.options.metric, spec.options.mode
    trials = []
    for result in grid:
        metrics = dict(result.metrics or {})
        values = {key: (result.config or {}).get(key) for key in spec.space_keys}
        rounds_planned = _planned_rounds(spec, values)
        status = "ERROR" if result.error else ("STOPPED" if metrics.get("round", 0) < rounds_planned else "DONE")
        trials.append({
            "trial_id": metrics.get("trial_id"), "values": values, "status": status,
            "error": str(result.error).strip().splitlines()[-1] if result.error else None,
            "rounds": metrics.get("round", 0), "rounds_planned": rounds_planned,
            "metrics": {k: v for k, v in metrics.items() if "/" in k and isinstance(v, (int, float))},
            "mlflow_run_id": metrics.get("mlflow_run_id") or None,
            "coordinator_node": metrics.get("coordinator_node"),
            "client_nodes": json.loads(metrics.get("client_nodes") or "[]"),
            "path": result.path,
        })
    scored = [t for t in trials if t["status"] != "ERROR" and metric in t["metrics"]]
    best = (max if mode == "max" else min)(scored, key=lambda t: t["metrics"][metric]) if scored else None
    return {"sweep": spec.name, "sweep_dir": str(sweep_dir), "metric": metric, "mode": mode,
            "tracking_uri": uri, "parent_run_id": parent.run_id if parent is not None else None,
            "experiment_id": getattr(parent, "experiment_id", None),
            "num_trials": len(trials), "num_errors": sum(t["status"] == "ERROR" for t in trials),
            "num_stopped": sum(t["status"] == "STOPPED" for t in trials), "best": best, "trials": trials}


def _planned_rounds(spec: SweepSpec, values: dict[str, Any]) -> int:
    from f3ocus.sweeps.spec import trial_config

    try:
        return trial_config(spec, values).federation.rounds
    except ConfigError:
        return 0


def _close_parent(parent: Any, summary: dict[str, Any], sweep_dir: Path, show: Callable[[str], None]) -> None:
    """Best trial's metrics and values on the parent run, `sweep/trials.json`, children's statuses."""
    by_run = {t["mlflow_run_id"]: t for t in summary["trials"] if t["mlflow_run_id"]}
    statuses = tracking.close_children(
        parent.tracking_uri, parent.experiment_id, parent.run_id,
        lambda run_id: "KILLED" if by_run.get(run_id, {}).get("status") == "STOPPED" else "FAILED", warn=show)
    for trial in summary["trials"]:
        trial["mlflow_status"] = statuses.get(trial["mlflow_run_id"])
    (sweep_dir / RESULT_FILE).write_text(json.dumps(summary, indent=2, default=str))
    best = summary["best"]
    if best is not None:
        parent.log_metrics(best["metrics"], step=best["rounds"])
        parent.log_params({f"best.{key}": value for key, value in best["values"].items()}
                          | {"best.mlflow_run_id": best["mlflow_run_id"], "best.trial_id": best["trial_id"]})
    parent.log_metrics({"sweep/trials": summary["num_trials"], "sweep/errors": summary["num_errors"],
                        "sweep/stopped_early": summary["num_stopped"]}, step=0)
    parent.log_artifact(sweep_dir / RESULT_FILE, "sweep")
    failed = summary["num_errors"] == summary["num_trials"]
    parent.close("FAILED" if failed else "FINISHED")
