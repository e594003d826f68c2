"""The grid runner of `f3ocus bench paper` and `f3ocus bench study`: every pending cell is one Ray Tune trial.

`run_grid` turns the pending cells into a `tune.grid_search` over their ids. Each trial runs one cell through
`paper.run_cell` (an ordinary experiment, an MLflow child of the bench's parent run) inside a placement group
sized from the cell's own config, and reports its summary once. A `Callback` on the driver writes
`cells/<cell>.json` as each trial ends, so the files land where the driver runs even when the trial ran on
another node, and a crash or Ctrl-C loses at most the running cells. `max_concurrent_trials` is `--jobs`;
trial actors are reused (`reuse_actors`), so one process imports torch once and runs many cells.

Ray is joined at $RAY_ADDRESS when it is set (a `ray start` cluster, or the cluster of a `ray job submit`
job), else started here on 127.0.0.1 without a dashboard; it is shut down only if it was started here.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from f3ocus.benchmarks.grid import Cell
from f3ocus.config.schema import ExperimentConfig, ResourcesConfig

OnCell = Callable[[dict[str, Any], int, int], None]  # (summary, index among this call's cells, their count)
SUMMARY_KEY = "cell_summary"  # one JSON string: Tune flattens nested result dicts ("a/b" keys)


@dataclasses.dataclass(frozen=True)
class GridContext:
    """What every trial needs from the driver (shipped once to the object store by `tune.with_parameters`)."""

    cells: Mapping[str, Cell]
    tracking_uri: str
    parent_run_id: str
    log_dir: str
    bench: str
    cwd: str  # the driver's working dir: relative paths in cell configs mean the same in trials


def run_grid(cells: Sequence[Cell], *, tracking_uri: str, parent_run_id: str, jobs: int, bench_dir: Path,
             bench: str, on_cell: OnCell) -> list[dict[str, Any]]:
    """Run `cells` as Tune trials, `jobs` at a time; return their summaries in the order they ended.

    Each summary is written to `bench_dir/cells/<cell>.json` and passed to `on_cell` as its trial ends.
    A cell that fails (inside the experiment, or its trial process dies) is a summary with status "failed";
    it is not retried.

    Raises:
        ConfigError: a cell whose placement group fits no node of the cluster.
        KeyboardInterrupt: the grid was interrupted (Ctrl-C); finished cells are on disk, the same command resumes.
    """
    if not cells:
        return []
    started_ray = _join_or_start_ray()
    try:
        _check_fits(cells)
        files = CellFiles({cell.id: cell for cell in cells}, bench_dir / "cells", on_cell)
        _fit(cells, tracking_uri, parent_run_id, jobs, bench_dir, bench, files)
    finally:
        if started_ray:
            import ray

            ray.shutdown()
    missing = [cell.id for cell in cells if cell.id not in files.summaries]
    if missing:  # Tune ends its loop quietly on SIGINT; the grid must not report tables over missing cells
        raise KeyboardInterrupt(f"interrupted: {len(missing)} cell(s) did not run; the same command resumes")
    return list(files.summaries.values())


def cell_layout(cfg: ExperimentConfig) -> tuple[list[dict[str, float]], str, Any]:
    """A cell's placement group bundles, its strategy, and the `ActorPlacement` its actors need (or None).

    `federation.engine: local` runs the whole federation in the trial process: one bundle of the worker's
    resources (its torch threads follow the same `worker_resources.num_cpus`, so a cell computes the same
    figures wherever it runs). `ray` starts a coordinator and client actors: the sweep trial's layout.
    """
    from f3ocus.sweeps.placement import bundle, trial_layout

    if cfg.federation.engine == "local":
        return [bundle(cfg.federation.worker_resources) or {"CPU": 1.0}], "PACK", None
    layout = trial_layout(cfg, ResourcesConfig(num_cpus=0.0), "PACK")
    return [dict(b) for b in layout.bundles], layout.strategy, layout


def run_cell_trial(config: dict[str, Any], context: GridContext) -> None:
    """The Tune function trainable: run the cell `config["cell"]`, report its summary once."""
    import ray
    from ray import tune

    from f3ocus.benchmarks.paper import run_cell

    if os.path.isdir(context.cwd):
        os.chdir(context.cwd)  # Tune starts a trial in its own result dir
    cell = context.cells[config["cell"]]
    _, _, layout = cell_layout(cell.config)
    placement = None
    if layout is not None:  # the Ray engine's actors go into this trial's own group, or they wait forever
        from f3ocus.federated.ray_engine import ActorPlacement

        group = ray.util.get_current_placement_group()
        placement = ActorPlacement(group, layout.coordinator_bundle, layout.client_bundles)
    summary = run_cell(cell, context.tracking_uri, context.parent_run_id, context.log_dir, context.bench,
                       placement=placement)
    summary["ray_node_id"] = ray.get_runtime_context().get_node_id()
    tune.report({SUMMARY_KEY: json.dumps(summary, default=float)})


class CellFiles:
    """The driver's Tune callback body: each trial's summary to `cells/<cell>.json`, then `on_cell`.

    Kept apart from `ray.tune.Callback` (see `_callback`) so its logic is testable without Ray.
    """

    def __init__(self, cells: Mapping[str, Cell], cells_dir: Path, on_cell: OnCell):
        self.cells, self.cells_dir, self.on_cell = cells, cells_dir, on_cell
        self.summaries: dict[str, dict[str, Any]] = {}

    def result(self, result: Mapping[str, Any]) -> None:
        if SUMMARY_KEY in result:
            self.record(json.loads(result[SUMMARY_KEY]))

    def error(self, cell_id: str, message: str) -> None:
        """A trial that ended without a summary (its process died, or the trainable raised)."""
        if cell_id in self.summaries:
            return
        from f3ocus.benchmarks.paper import cell_head

        lines = [line for line in message.strip().splitlines() if line.strip()] or ["unknown error"]
        self.record({**cell_head(self.cells[cell_id]), "status": "failed", "seconds": float("nan"),
                     "error": f"trial error: {lines[-1]}"})

    def record(self, summary: dict[str, Any]) -> None:
        from f3ocus.benchmarks.paper import _write_json

        _write_json(self.cells_dir / f"{summary['cell']}.json", summary)
        self.summaries[summary["cell"]] = summary
        self.on_cell(summary, len(self.summaries), len(self.cells))


def _callback(files: CellFiles):
    from ray.tune import Callback

    class _CellFilesCallback(Callback):
        # The Tuner pickles its run config (callbacks included) into the experiment dir for `Tuner.restore`;
        # this callback lives on the driver only and holds the CLI's printer: it is saved empty. (Its methods
        # reach `files` through `self`, not a closure, which would be pickled with the class.)
        def __init__(self, files: CellFiles):
            self.files = files

        def __getstate__(self):
            return {}

        def on_trial_result(self, iteration, trials, trial, result, **info):
            self.files.result(result)

        def on_trial_error(self, iteration, trials, trial, **info):
            self.files.error(trial.config["cell"], str(trial.get_error() or "the trial failed"))

    return _CellFilesCallback(files)


def _fit(cells: Sequence[Cell], tracking_uri: str, parent_run_id: str, jobs: int, bench_dir: Path, bench: str,
         files: CellFiles) -> None:
    from ray import tune

    context = GridContext({cell.id: cell for cell in cells}, tracking_uri, parent_run_id,
                          str(bench_dir / "logs"), bench, os.getcwd())
    trainable = tune.with_resources(tune.with_parameters(run_cell_trial, context=context),
                                    resources=_Resources(context.cells))
    tuner = tune.Tuner(
        trainable, param_space={"cell": tune.grid_search([cell.id for cell in cells])},
        tune_config=tune.TuneConfig(max_concurrent_trials=jobs, reuse_actors=True,
                                    trial_dirname_creator=_trial_dirname),
        run_config=tune.RunConfig(name=f"{bench}-{time.strftime('%Y%m%d-%H%M%S')}",
                                  storage_path=str(bench_dir / "tune"), callbacks=[_callback(files)],
                                  # a failed cell is data (run_cell never raises); a dead trial process is
                                  # recorded as failed too, and the same command retries it
                                  failure_config=tune.FailureConfig(max_failures=0), verbose=0))
    tuner.fit()


def _trial_dirname(trial: Any) -> str:
    return f"{trial.config['cell']}-{trial.trial_id}"


@dataclasses.dataclass(frozen=True)
class _Resources:
    """Tune's per-trial resource request, `config -> PlacementGroupFactory`, from the cell's own config."""

    cells: Mapping[str, Cell]

    def __call__(self, config: dict[str, Any]):
        from ray import tune

        bundles, strategy, _ = cell_layout(self.cells[config["cell"]].config)
        return tune.PlacementGroupFactory(bundles, strategy=strategy)


def _check_fits(cells: Sequence[Cell]) -> None:
    """Fail at once (ConfigError) on a cell that no node could ever hold, instead of Tune waiting forever."""
    import ray

    from f3ocus.sweeps.placement import TrialLayout, check_fits

    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    shapes = {}
    for cell in cells:
        bundles, strategy, _ = cell_layout(cell.config)
        shapes.setdefault(json.dumps([bundles, strategy], sort_keys=True), (cell.id, bundles, strategy))
    check_fits([(cell_id, TrialLayout(tuple(bundles), strategy, 0, ())) for cell_id, bundles, strategy
                in shapes.values()], nodes)


def _join_or_start_ray() -> bool:
    """Join $RAY_ADDRESS or start Ray here on 127.0.0.1; True when this call started it."""
    import ray

    from f3ocus.prepared import OFFLINE_ENV

    if ray.is_initialized():
        return False
    address = os.environ.get("RAY_ADDRESS")
    if address:
        # Trials on a cluster's other nodes get the offline switches and the model/data cache from here.
        env = {key: os.environ[key] for key in (*OFFLINE_ENV, "F3OCUS_CACHE_DIR") if key in os.environ}
        ray.init(address=address, configure_logging=False, runtime_env={"env_vars": env})
    else:
        # "local": never attach to an unrelated `ray start` instance of this machine. Its workers inherit this
        # process's environment, so no runtime env (which would make each trial wait for the runtime-env agent).
        # The trials are this command's own work (the driver only waits): they run at its priority, not at
        # Ray's default worker niceness 15, which on a shared machine starves them behind every nice-0 process.
        ray.init(address="local", include_dashboard=False, configure_logging=False, _node_ip_address="127.0.0.1",
                 _system_config={"worker_niceness": os.nice(0)})
    return True


__all__ = ["GridContext", "CellFiles", "cell_layout", "run_cell_trial", "run_grid"]
