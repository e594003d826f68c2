"""The Tune trial: one federated experiment, its actors inside the trial's placement group, one report per round.

`run_trial(config, context)` resolves the trial's experiment config (base + `set:` + its space values),
runs it through `f3ocus.experiment.run_experiment` with the coordinator and client actors pinned to the
bundles of the trial's own placement group (`ray.util.get_current_placement_group()`), and reports each
round to Tune (`tune.report`), so a scheduler such as ASHA can stop it after any round. A stop surfaces
as `SystemExit` inside `tune.report`; the engine then aborts the run (MLflow run KILLED, client actors and
coordinator killed) and the trial ends. Its MLflow run is a child of the sweep's parent run.

A trial on the local engine (`federation.engine: local`) is cheap: the coordinator and its one worker run
in the trial's own process, which (with `reuse_actors`) serves trial after trial, so torch and
transformers are imported once per Tune actor, not once per trial and actor; a stop closes its MLflow run
KILLED there too (`f3ocus.federated.local_engine`). Every trial's run carries the pid of the process that
ran its federation (`PID_TAG`), which shows whether trials shared a process.
"""

from __future__ import annotations

import gc
import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from f3ocus.sweeps import tracking
from f3ocus.sweeps.placement import trial_layout
from f3ocus.sweeps.spec import SweepSpec, describe, trial_config
from f3ocus.tracking import names

if TYPE_CHECKING:  # the sweep driver imports this module: it stays free of torch (records imports it)
    from f3ocus.federated.records import RoundRecord

PID_TAG = "f3ocus.sweep.pid"  # the trial function's process (on the local engine, the whole federation's)
# Tune waits this long (default 2 s) for a stopped trial's thread to end before reusing its actor; a
# local-engine trial closes its MLflow run on the way out, which can take longer on a loaded machine.
THREAD_TIMEOUT_ENV, THREAD_TIMEOUT_S = "TUNE_FUNCTION_THREAD_TIMEOUT_S", "30"


@dataclass(frozen=True)
class TrialContext:
    """What every trial needs from the sweep driver (plain data, shipped to the trial actor)."""

    spec: SweepSpec
    tracking_uri: str | None
    output_dir: str
    parent_run_id: str | None
    cwd: str | None = None  # the driver's working dir: relative paths in configs mean the same in trials


def run_trial(config: dict[str, Any], context: TrialContext) -> None:
    """The Tune function trainable (bind `context` with `tune.with_parameters`)."""
    import ray
    from ray import tune

    from f3ocus.experiment import run_experiment
    from f3ocus.federated.ray_engine import ActorPlacement

    if context.cwd and os.path.isdir(context.cwd):
        os.chdir(context.cwd)  # Tune starts trials in their own result dir
    trial_id = tune.get_context().get_trial_id()
    values = {key: config[key] for key in context.spec.space_keys}
    cfg = trial_config(context.spec, values, **_tracking(context, trial_id))
    resources = context.spec.options.trial_resources
    layout = trial_layout(cfg, resources.driver, resources.strategy)
    if layout.in_process:  # the whole federation runs here: no actors to place
        placement, on_round = None, _report
        os.environ.setdefault(THREAD_TIMEOUT_ENV, THREAD_TIMEOUT_S)  # read by Tune in this process at reuse
        # A reused process: the previous trial's coordinator and model may linger in reference cycles until
        # the collector runs; free them before this trial loads its own (memory, GPU memory above all).
        gc.collect()
    else:
        group = ray.util.get_current_placement_group()
        placement = None if group is None else ActorPlacement(group, layout.coordinator_bundle,
                                                              layout.client_bundles)
        on_round = _report
    tags = {tracking.SWEEP_TAG: context.spec.name, tracking.ROLE_TAG: "trial", tracking.TRIAL_TAG: trial_id,
            tracking.VALUES_TAG: describe(values), PID_TAG: str(os.getpid())}
    if context.parent_run_id:
        tags[tracking.PARENT_TAG] = context.parent_run_id
    prefix = f"[{trial_id}] "
    run_experiment(cfg, show=lambda line: print(prefix + line, flush=True), on_round=on_round,
                   placement=placement, run_tags=tags)


def _tracking(context: TrialContext, trial_id: str) -> dict[str, Any]:
    """The tracking keys a sweep sets on each trial: one experiment, one output dir, a unique run name."""
    keys = {"experiment": context.spec.experiment, "run_name": f"{context.spec.name}-{trial_id}",
            "output_dir": context.output_dir}
    if context.tracking_uri:
        keys["tracking_uri"] = context.tracking_uri
    return keys


def _report(record: RoundRecord, run_info: dict[str, Any]) -> None:
    """One Tune result per training round (round 0, the evaluation before training, is not reported)."""
    from ray import tune

    if record.round == 0:
        return
    tune.report(round_result(record, run_info))


def round_result(record: RoundRecord, run_info: dict[str, Any]) -> dict[str, Any]:
    """A round's record as the flat result Tune gets: its `records.scheduler_metrics` (MLflow's names and
    values), plus where the run lives."""
    from f3ocus.federated import records

    metrics = records.scheduler_metrics(record)
    # The optional metrics come last, after where the run lives, as Tune always had them.
    optional = {key: metrics.pop(key) for key in (names.TRAIN_LOSS, names.EVAL_SCORE) if key in metrics}
    return {
        "round": record.round,
        **metrics,
        "mlflow_run_id": run_info.get("mlflow_run_id") or "",
        "coordinator_node": run_info.get("coordinator_node", ""),
        "client_nodes": json.dumps(run_info.get("client_nodes", [])),
        **optional,
    }
