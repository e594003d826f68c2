"""Checks across sections, run before any data is built and before Ray starts.

Each failure is a `ConfigError` naming the field: unknown model family / selector / scorer / task, a
local data or checkpoint path that does not exist, a budget larger than the model's number of units,
a budgets list whose length does not match the number of clients, `federation.min_clients` above the
number of clients.
"""

from __future__ import annotations

from pathlib import Path

from f3ocus.config.schema import ConfigError, ExperimentConfig

TASKS = ("ultra_medvqa", "easy_vqa", "slake", "vqa_rad", "pathvqa")
BUILTIN_CHECKPOINTS = ("foundation", "scratch")


def validate(cfg: ExperimentConfig) -> list[str]:
    """Validate `cfg`; return the model's unit names (needed to check budgets).

    Raises:
        ConfigError: the first problem found, naming its field.
    """
    from f3ocus.importance.registry import SCORERS
    from f3ocus.models.registry import FAMILIES, list_units
    from f3ocus.selection.registry import SELECTORS

    _known("model.family", cfg.model.family, FAMILIES)
    _known("selection.method", cfg.selection.method, SELECTORS)
    _known("selection.scorer", cfg.selection.scorer, SCORERS)
    _known("data.task", cfg.data.task, TASKS)
    if cfg.data.task == "ultra_medvqa" and cfg.data.modalities is not None:
        from f3ocus.data.medmnist_meta import FLAGS

        for index, flag in enumerate(cfg.data.modalities):
            _known(f"data.modalities[{index}]", flag, FLAGS)
    if cfg.model.checkpoint not in BUILTIN_CHECKPOINTS and _looks_local(cfg.model.checkpoint):
        _exists("model.checkpoint", cfg.model.checkpoint)
    if cfg.data.path is not None and (cfg.data.task in ("ultra_medvqa", "easy_vqa") or _looks_local(cfg.data.path)):
        _exists("data.path", cfg.data.path)
    checkpoint = "scratch" if cfg.model.checkpoint in BUILTIN_CHECKPOINTS else cfg.model.checkpoint
    try:
        units = list_units(cfg.model.family, checkpoint, cache_dir=cfg.model.cache_dir)
    except (OSError, ValueError) as error:
        raise ConfigError("model.checkpoint", f"cannot read the model config: {error}") from None
    check_budgets(cfg, num_units=len(units), num_clients=expected_num_clients(cfg))
    check_min_clients(cfg, num_clients=expected_num_clients(cfg))
    return units


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
    partition = cfg.data.partition
    if partition.scheme != "natural":
        return partition.num_clients
    if cfg.data.task == "ultra_medvqa" and cfg.data.modalities and partition.by == "source":
        return len(cfg.data.modalities)  # one client per MedMNIST file
    return None


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
