"""Checks across sections, run before any data is built and before Ray starts.

Each failure is a `ConfigError` naming the field: unknown model family / selector / scorer / task, a
local data or checkpoint path that does not exist, a budget larger than the model's number of units,
a budgets list whose length does not match the number of clients, `federation.min_clients` above the
number of clients, prompt mode without the head (the prompt trains with the head), FedDAT without the
dual-adapter unit mode or that mode without FedDAT.
"""

from __future__ import annotations

from pathlib import Path

from f3ocus.config.schema import ConfigError, ExperimentConfig
from f3ocus.models.catalog import BUILTIN_CHECKPOINTS
from f3ocus.tasks import SOURCE_TASKS, TASKS


def validate(cfg: ExperimentConfig) -> list[str]:
    """Validate `cfg`; return the model's unit names (needed to check budgets).

    Raises:
        ConfigError: the first problem found, naming its field.
    """
    from f3ocus.importance.registry import SCORERS
    from f3ocus.models.catalog import FAMILY_NAMES, list_units, selectable_units  # no transformers for built-ins
    from f3ocus.selection.registry import SELECTORS

    _known("model.family", cfg.model.family, FAMILY_NAMES)
    _known("selection.method", cfg.selection.method, SELECTORS)
    _known("selection.scorer", cfg.selection.scorer, SCORERS)
    _known("data.task", cfg.data.task, TASKS)
    _check_source("data", cfg.data.task, cfg.data.path, cfg.data.modalities)
    for index, source in enumerate(cfg.data.sources):
        _known(f"data.sources[{index}].task", source.task, SOURCE_TASKS)
        _check_source(f"data.sources[{index}]", source.task, source.path, source.modalities)
    if cfg.model.checkpoint not in BUILTIN_CHECKPOINTS and _looks_local(cfg.model.checkpoint):
        _exists("model.checkpoint", cfg.model.checkpoint)
    try:
        units = list_units(cfg.model.family, cfg.model.checkpoint, cache_dir=cfg.model.cache_dir)
    except (OSError, ValueError) as error:
        raise ConfigError("model.checkpoint", f"cannot read the model config: {error}") from None
    try:
        units = selectable_units(units, cfg.model.selectable)
    except ValueError as error:
        raise ConfigError("model.selectable", str(error)) from None
    if cfg.model.unit_mode == "prompt" and not cfg.federation.train_head:
        raise ConfigError("federation.train_head", "must be true with model.unit_mode 'prompt': the prompt vectors "
                                                   "train with the head and the units own nothing")
    _check_local_objective(cfg)
    check_budgets(cfg, num_units=len(units), num_clients=expected_num_clients(cfg))
    check_min_clients(cfg, num_clients=expected_num_clients(cfg))
    return units


def _check_local_objective(cfg: ExperimentConfig) -> None:
    """FedDAT and the dual-adapter unit mode go together: its personal adapters are the client state it keeps,
    and without FedDAT they would never train."""
    feddat, dual = cfg.federation.local_objective == "feddat", cfg.model.unit_mode == "dual_adapter"
    if feddat and not dual:
        raise ConfigError("model.unit_mode", f"must be 'dual_adapter' with federation.local_objective 'feddat' (its "
                                             f"shared + personal adapters), got {cfg.model.unit_mode!r}")
    if dual and not feddat:
        raise ConfigError("federation.local_objective", "must be 'feddat' with model.unit_mode 'dual_adapter' (nothing "
                                                        f"else trains the personal adapters), got "
                                                        f"{cfg.federation.local_objective!r}")


def check_budgets(cfg: ExperimentConfig, *, num_units: int, num_clients: int | None) -> tuple[int, ...] | None:
    """Budgets must not exceed the unit count and, as a list, must have one entry per client.

    Returns the per-client budgets when `num_clients` is known, else None.
    """
    budgets = cfg.federation.budgets
    listed = budgets if isinstance(budgets, tuple) else (budgets,)
    for index, budget in enumerate(listed):
        if budget > num_units:
            where = "federation.budgets" if isinstance(budgets, int) else f"federation.budgets[{index}]"
            raise ConfigError(where, f"budget {budget} exceeds the {num_units} selectable units of "
                                     f"{cfg.model.family} ({cfg.model.unit_mode} mode)")
    if num_clients is None:
        return None
    if isinstance(budgets, tuple) and len(budgets) != num_clients:
        raise ConfigError("federation.budgets", f"lists {len(budgets)} budgets for {num_clients} clients")
    return budgets if isinstance(budgets, tuple) else (budgets,) * num_clients


def check_min_clients(cfg: ExperimentConfig, *, num_clients: int | None) -> None:
    """`federation.min_clients` (usable updates a round needs) must be between 1 and the number of clients.

    The lower bound is checked by the schema; the upper one only once `num_clients` is known (None: skip).
    """
    minimum = cfg.federation.min_clients
    if minimum < 1:
        raise ConfigError("federation.min_clients", f"must be >= 1, got {minimum}")
    if num_clients is not None and minimum > num_clients:
        raise ConfigError("federation.min_clients", f"is {minimum} but the federation has only {num_clients} clients")


def expected_num_clients(cfg: ExperimentConfig) -> int | None:
    """The client count when the config alone determines it (else it is known after the data is built)."""
    partition, data = cfg.data.partition, cfg.data
    if partition.scheme != "natural":
        return partition.num_clients
    task = TASKS.get(data.task)
    return None if task is None or task.natural_clients is None else task.natural_clients(data)


def _check_source(where: str, task: str, path: str | None, modalities: tuple[str, ...] | None) -> None:
    """Per-task checks of a data section or one multi_source source (`where` prefixes the field names), from
    the task's registry entry (`f3ocus.tasks`)."""
    spec = TASKS[task]
    known = spec.known_modalities()
    if known is not None:
        for index, name in enumerate(modalities or ()):
            _known(f"{where}.modalities[{index}]", name, known)
    if spec.requires_path is not None and path is None:
        raise ConfigError(f"{where}.path", f"task {task} reads {spec.requires_path}: set its path")
    if path is not None and (spec.local_path or _looks_local(path)):
        _exists(f"{where}.path", path)


def _known(field_path: str, value: str, known) -> None:
    if value not in known:
        raise ConfigError(field_path, f"unknown value {value!r}; known: {', '.join(sorted(known))}")


def _looks_local(value: str) -> bool:
    return value.startswith(("/", "./", "../", "~")) or _path_exists(value)


def _exists(field_path: str, value: str) -> None:
    if not _path_exists(value):
        raise ConfigError(field_path, f"path does not exist: {value}")


def _path_exists(value: str) -> bool:
    """`Path(value).expanduser().exists()`, False where the OS cannot even ask (name too long, `~nosuchuser`)."""
    try:
        return Path(value).expanduser().exists()
    except (OSError, RuntimeError, ValueError):
        return False
