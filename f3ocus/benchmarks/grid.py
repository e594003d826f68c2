"""The benchmark grid: which cells (task x model x method x seed) a `f3ocus bench paper` call runs, and each
cell's experiment config.

A cell's config is the task's offline config (`configs/tasks/t<k>_<name>.yaml`) + the model family (its
cached foundation checkpoint) + the method's overrides + the profile's schedule + the seed. Its id
(`t1.vilt.f3ocus.s0`) names its MLflow child run and its result file; its `config_hash` (of the resolved
config) decides whether a result on disk is still valid, so re-running a command skips finished cells and
re-runs only those whose config changed.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from f3ocus.benchmarks.methods import METHODS, Method
from f3ocus.config.load import load_config, to_dict
from f3ocus.config.schema import ConfigError, ExperimentConfig

TASKS_DIR = Path(__file__).resolve().parents[2] / "configs" / "tasks"
TASK_PATTERN = re.compile(r"^(t\d+)_[a-z0-9_]+\.yaml$")


@dataclass(frozen=True)
class Profile:
    """A schedule and a default grid. `rounds` and `samples_per_client` override every task's own values."""

    name: str
    tasks: tuple[str, ...] | None  # None = every task found
    methods: tuple[str, ...]
    models: tuple[str, ...]
    seeds: int
    rounds: int
    samples_per_client: int | None
    peft_tasks: tuple[str, ...] | None = None  # PEFT methods only on these tasks (Table B), unless --methods names them


ALL_METHODS = tuple(METHODS)
PROFILES: dict[str, Profile] = {
    # Table A: every selection method on every task; Table B: the PEFT methods on T1 (as the paper's efficiency
    # table); both of the paper's table models, 3 seeds (docs/RESULTS.md).
    "full": Profile("full", None, ALL_METHODS, ("blip", "vilt"), seeds=3, rounds=5, samples_per_client=100,
                    peft_tasks=("t1",)),
    # <= 20 min on 2 cores (measured ~5 min with --jobs 2): the same tables on one model, one seed, 3 short rounds.
    "quick": Profile("quick", None, ALL_METHODS, ("blip",), seeds=1, rounds=3, samples_per_client=60,
                     peft_tasks=("t1",)),
}


# Config keys added after grids had run, with the default that computes what the grid computed before them: left
# out of a cell's hash while at that default, so a resumed grid does not re-run its finished cells.
ADDED_LATER: dict[tuple[str, str], Any] = {("federation", "precision"): "fp32", ("federation", "head_lr"): None,
                                           ("federation", "local_objective"): "supervised",
                                           ("federation", "distill_temperature"): 3.0}


@dataclass(frozen=True)
class Cell:
    """One experiment of the grid."""

    task: str
    model: str
    method: str
    seed: int
    config: ExperimentConfig

    @property
    def id(self) -> str:
        return f"{self.task}.{self.model}.{self.method}.s{self.seed}"

    @property
    def config_hash(self) -> str:
        payload = to_dict(self.config)
        payload["tracking"] = {}  # where it is logged does not change what it computes
        for (section, key), default in ADDED_LATER.items():  # at its default, a later key leaves cells valid
            if key in payload.get(section, {}) and payload[section][key] == default:
                del payload[section][key]
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def find_tasks(tasks_dir: Path = TASKS_DIR) -> dict[str, Path]:
    """Task key ("t1") -> its offline config; the `_real` variants need data this machine lacks."""
    found: dict[str, Path] = {}
    for path in sorted(Path(tasks_dir).glob("t*.yaml")):
        match = TASK_PATTERN.match(path.name)
        if match and not path.stem.endswith("_real"):
            if match.group(1) in found:
                raise ConfigError("--tasks", f"two offline configs for {match.group(1)}: {found[match.group(1)]}, {path}")
            found[match.group(1)] = path
    return found


def build_cells(profile: Profile, *, tasks: tuple[str, ...] | None, methods: tuple[str, ...] | None,
                models: tuple[str, ...] | None, seeds: int | None, tracking: dict[str, Any],
                engine: str = "local", overrides: tuple[str, ...] = (), tasks_dir: Path = TASKS_DIR) -> list[Cell]:
    """Every cell of the grid, each config loaded and schema-checked (ConfigError names the cell and field).

    Args:
        profile: schedule and default grid; `tasks`/`methods`/`models`/`seeds` narrow or replace it.
        tracking: tracking-section values every cell gets (experiment, tracking_uri, output_dir).
        engine: federation.engine of every cell ("local": one process; "ray": actors).
        overrides: extra `key=value` applied last to every cell (`--set`).
    """
    available = find_tasks(tasks_dir)
    task_keys = tasks or profile.tasks or tuple(available)
    unknown = [task for task in task_keys if task not in available]
    if unknown:
        raise ConfigError("--tasks", f"unknown task(s) {unknown}; found in {tasks_dir}: {sorted(available)}")
    method_keys = methods or profile.methods
    unknown = [method for method in method_keys if method not in METHODS]
    if unknown:
        raise ConfigError("--methods", f"unknown method(s) {unknown}; known: {', '.join(METHODS)}")
    cells = []
    # Model, then seed, then task: an interrupted grid has whole seeds of whole models (complete table columns).
    for model in models or profile.models:
        for seed in range(seeds or profile.seeds):
            for task in task_keys:
                for method in method_keys:
                    if methods is None and profile.peft_tasks is not None and task not in profile.peft_tasks \
                            and METHODS[method].group == "peft":
                        continue
                    where = f"{task}.{model}.{method}.s{seed}"
                    try:
                        config = load_config(available[task], cell_overrides(
                            METHODS[method], model=model, seed=seed, profile=profile, engine=engine,
                            tracking={**tracking, "run_name": where}) + list(overrides))
                    except ConfigError as error:
                        raise ConfigError(error.field, f"{error.message} (cell {where}, {available[task]})") from None
                    cells.append(Cell(task, model, method, seed, config))
    return cells


def cell_overrides(method: Method, *, model: str, seed: int, profile: Profile, engine: str,
                   tracking: dict[str, Any]) -> list[str]:
    """`key=value` strings that turn a task config into this cell's config."""
    values: dict[str, Any] = {"model.family": model, "model.checkpoint": "foundation", "seed": seed,
                              "federation.engine": engine, "federation.rounds": profile.rounds,
                              **method.overrides, **{f"tracking.{key}": value for key, value in tracking.items()}}
    if profile.samples_per_client is not None:
        values["data.samples_per_client"] = profile.samples_per_client
    return [f"{key}={json.dumps(value) if not isinstance(value, str) else value}" for key, value in values.items()]
