"""Sweep files: YAML -> a checked `SweepSpec`, the trials' experiment configs, and their validation.

A sweep file names a `base:` experiment config (relative to the sweep file), fixed overrides (`set:`)
and search spaces on dot-keys of the experiment schema (`grid:` every combination, `choice:` one value
per sample, `uniform:` / `loguniform:` a number in [low, high]), plus how Ray Tune runs the trials. Keys
under `set:` and the spaces may be written dotted (`selection.solver: [nsga2, sa]`) or nested.

Everything here runs before Ray starts and imports neither Ray nor torch: an unknown sweep key, a bad
value, an unknown experiment key in `set:` or a space, and any trial whose resolved experiment config
does not validate (`validate_trials`) raise `ConfigError` naming the field (the CLI exits 2).
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal, Mapping, Sequence

import yaml

from f3ocus.config.load import bind, load_config, parse_override
from f3ocus.config.schema import ConfigError, ExperimentConfig, ResourcesConfig
from f3ocus.tracking import names

SPACE_KINDS = ("grid", "choice", "uniform", "loguniform")
# What every trial reports to Tune each round (the names a sweep's `metric` may use).
REPORTED_METRICS = names.SCHEDULER_METRICS
# Set per trial by the sweep itself (one MLflow experiment, one run name per trial).
SWEEP_OWNED = ("tracking.experiment", "tracking.run_name")
STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")
# Above this many enumerable trial configurations, validation checks a covering subset (see `validation_points`).
MAX_VALIDATED = 256
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class SchedulerSpec:
    """`none` runs every trial to the end; `asha` stops bad trials early on `metric` after each round.

    `grace_period`: rounds every trial runs before it can be stopped; `max_t`: the last round (default:
    the largest `federation.rounds` among the trials).
    """

    type: Literal["none", "asha"] = "none"
    grace_period: int = 1
    reduction_factor: float = 2.0
    max_t: int | None = None

    def __post_init__(self) -> None:
        _require(self.type in ("none", "asha"), "type", f"must be none or asha, got {self.type!r}")
        _require(self.grace_period >= 1, "grace_period", f"must be >= 1, got {self.grace_period}")
        _require(self.reduction_factor > 1, "reduction_factor", f"must be > 1, got {self.reduction_factor}")
        _require(self.max_t is None or self.max_t >= self.grace_period, "max_t",
                 f"must be >= grace_period ({self.grace_period}), got {self.max_t}")


@dataclass(frozen=True)
class TrialResourcesSpec:
    """What a trial reserves besides its actors: the trial function itself (`driver`, the process that
    prepares data and reports to Tune) and the placement strategy of its bundles. The coordinator and
    client bundles come from each trial's `federation.coordinator_resources` / `worker_resources`."""

    driver: ResourcesConfig = field(default_factory=lambda: ResourcesConfig(num_cpus=0.0))
    strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"

    def __post_init__(self) -> None:
        _require(self.strategy in STRATEGIES, "strategy", f"must be one of {', '.join(STRATEGIES)}, "
                                                          f"got {self.strategy!r}")


@dataclass(frozen=True)
class SweepOptions:
    """The scalar part of a sweep file (how Tune runs the trials), checked by `f3ocus.config.load.bind`.

    `reuse_actors`: a finished trial's Tune actor (its process, imports and placement group) serves the
    next trial with the same resources. null (default) = on when every trial runs the local engine (the
    trial process is the whole federation, so reuse saves its process start and torch/transformers
    imports), off otherwise (Ray-engine trials start their own actors anyway); `SweepSpec.reuses_actors`.
    """

    num_samples: int = 1
    max_concurrent_trials: int = 1
    metric: str = names.EVAL_ACC
    mode: Literal["max", "min"] = "max"
    scheduler: SchedulerSpec = field(default_factory=SchedulerSpec)
    trial_resources: TrialResourcesSpec = field(default_factory=TrialResourcesSpec)
    experiment: str | None = None
    storage_path: str | None = None
    search_seed: int | None = 0
    max_failures: int = 0
    reuse_actors: bool | None = None

    def __post_init__(self) -> None:
        _require(self.num_samples >= 1, "num_samples", f"must be >= 1, got {self.num_samples}")
        _require(self.max_concurrent_trials >= 1, "max_concurrent_trials",
                 f"must be >= 1, got {self.max_concurrent_trials}")
        _require(self.metric in REPORTED_METRICS, "metric",
                 f"must be one of {', '.join(REPORTED_METRICS)} (what trials report), got {self.metric!r}")
        _require(self.mode in ("max", "min"), "mode", f"must be max or min, got {self.mode!r}")
        _require(self.max_failures >= 0, "max_failures", f"must be >= 0, got {self.max_failures}")


TOP_LEVEL = ("name", "base", "set", *SPACE_KINDS, *(f.name for f in dataclasses.fields(SweepOptions)))


@dataclass(frozen=True)
class Space:
    """One searched dot-key: `grid`/`choice` values, or `uniform`/`loguniform` (low, high)."""

    kind: str
    key: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class SweepSpec:
    """A checked sweep file. `fixed` holds `set:` (dot-key -> value); `spaces` the searched keys."""

    name: str
    path: Path
    base: Path
    fixed: dict[str, Any]
    spaces: tuple[Space, ...]
    options: SweepOptions

    @property
    def space_keys(self) -> tuple[str, ...]:
        return tuple(space.key for space in self.spaces)

    @property
    def experiment(self) -> str:
        """The MLflow experiment of the parent run and of every trial's run."""
        return self.options.experiment or self.name

    def reuses_actors(self, trials: Sequence[ExperimentConfig]) -> bool:
        """`options.reuse_actors`, or when null: whether every trial in `trials` runs the local engine."""
        if self.options.reuse_actors is not None:
            return self.options.reuse_actors
        return all(cfg.federation.engine == "local" for cfg in trials)

    @property
    def num_trials(self) -> int:
        """Trials Tune will run: grid combinations x num_samples."""
        grid = [len(space.values) for space in self.spaces if space.kind == "grid"]
        return math.prod(grid) * self.options.num_samples


def load_sweep(path: str | Path, overrides: Sequence[str] = ()) -> SweepSpec:
    """Read a sweep file, apply `--set key=value` overrides (keys of the sweep file), check it.

    Override keys address the sweep file: `max_concurrent_trials=1`, `scheduler.grace_period=2`,
    `set.federation.rounds=3` (an experiment key applied to every trial), `grid.seed=[0,1,2]`.

    Raises:
        ConfigError: unreadable file, unknown key, bad value; the field is named.
    """
    path = Path(path)
    raw = _read_yaml(path)
    for text in overrides:
        key, value = parse_override(text)
        _apply_override(raw, key, value)
    return parse_sweep(raw, path)


def parse_sweep(raw: Mapping[str, Any], path: Path) -> SweepSpec:
    """Check a sweep mapping (as read from `path`, which anchors `base:`) and return the spec."""
    for key in raw:
        if key not in TOP_LEVEL:
            raise ConfigError(str(key), f"unknown sweep key{_hint(str(key))}")
    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError("name", f"must be letters, digits, '_', '.' or '-', got {name!r}")
    base = _base_path(raw.get("base"), path)
    fixed = _dot_keys(raw.get("set") or {}, "set")
    spaces = _spaces(raw, fixed)
    options = bind(SweepOptions, {k: v for k, v in raw.items() if k not in ("name", "base", "set", *SPACE_KINDS)}
                   | _scheduler_mapping(raw), "")
    return SweepSpec(name, path.resolve(), base, fixed, spaces, options)


# ------------------------------------------------------------------------------------------------ trials
def trial_config(spec: SweepSpec, overrides: Mapping[str, Any], **tracking: Any) -> ExperimentConfig:
    """The experiment config of one trial: base file + `set:` + the trial's space values + `tracking`.

    `tracking`: keys of the tracking section the sweep sets for its trials (experiment, run_name,
    tracking_uri, output_dir).
    """
    values = {**spec.fixed, **overrides, **{f"tracking.{key}": value for key, value in tracking.items()}}
    return load_config(spec.base, [override_text(key, value) for key, value in values.items()])


def base_config(spec: SweepSpec) -> ExperimentConfig:
    """The base config with `set:` applied (what every trial shares), unknown keys named under `set.`."""
    try:
        load_config(spec.base)
    except ConfigError as error:  # the base file's own errors name its own fields
        raise ConfigError(error.field, f"{error.message} (in the base config {spec.base})") from None
    try:
        return trial_config(spec, {})
    except ConfigError as error:
        raise error.under("set") from None


def validation_points(spec: SweepSpec) -> Iterator[dict[str, Any]]:
    """Space values covering every trial's config: grid and choice values, and both ends of each range.

    The full product when it has at most `MAX_VALIDATED` points; otherwise every grid combination with
    the other spaces at their first value, plus each other value on the first grid combination.
    """
    options = [(space.key, list(space.values)) for space in spec.spaces]
    total = math.prod(len(values) for _, values in options)
    if total <= MAX_VALIDATED:
        for combination in itertools.product(*(values for _, values in options)):
            yield dict(zip((key for key, _ in options), combination))
        return
    first = {key: values[0] for key, values in options}
    grid = [(space.key, list(space.values)) for space in spec.spaces if space.kind == "grid"]
    for combination in itertools.product(*(values for _, values in grid)):
        yield {**first, **dict(zip((key for key, _ in grid), combination))}
    for space in spec.spaces:
        if space.kind != "grid":
            for value in space.values[1:]:
                yield {**first, space.key: value}


def validate_trials(spec: SweepSpec) -> list[tuple[dict[str, Any], ExperimentConfig]]:
    """Bind and validate every trial config `validation_points` yields; return (overrides, config) pairs.

    Raises:
        ConfigError: the first failure, its field prefixed by the space kind when a space value is at
            fault (`grid.model.family: ...`), else naming the trial's values.
    """
    from f3ocus.config.validate import validate

    base_config(spec)  # the base file's and `set:`'s own errors first, named there
    kinds = {space.key: space.kind for space in spec.spaces}
    checked = []
    for overrides in validation_points(spec):
        try:
            cfg = trial_config(spec, overrides)
            validate(cfg)
        except ConfigError as error:
            kind = next((kinds[key] for key in kinds if error.field == key or error.field.startswith(key + ".")
                         or error.field.startswith(key + "[")), None)
            if kind is not None:
                raise error.under(kind) from None
            raise ConfigError(error.field, f"{error.message} (in the trial {describe(overrides)})") from None
        checked.append((overrides, cfg))
    return checked


def describe(overrides: Mapping[str, Any]) -> str:
    """`model.family=vilt, seed=1` (a trial's space values, for names and messages)."""
    return ", ".join(f"{key}={_compact(value)}" for key, value in overrides.items()) or "(no search space)"


def override_text(key: str, value: Any) -> str:
    """A `key=value` override that `f3ocus.config.load` reads back as exactly `value`."""
    text = yaml.safe_dump(value, default_flow_style=True, width=math.inf).strip()
    return f"{key}={text.removesuffix('...').strip()}"


# ------------------------------------------------------------------------------------------- parsing
def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError("sweep", f"file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError("sweep", f"cannot read {path}: {error}") from None
    except yaml.YAMLError as error:
        raise ConfigError("sweep", f"{path} is not valid YAML: {' '.join(str(error).split())}") from None
    if not isinstance(data, dict):
        raise ConfigError("sweep", f"{path} must hold a mapping at top level")
    return data


def _apply_override(raw: dict[str, Any], key: str, value: Any) -> None:
    head, _, rest = key.partition(".")
    if head not in TOP_LEVEL:
        raise ConfigError(key, f"unknown sweep key{_hint(head)}")
    if head in ("set", *SPACE_KINDS):
        if not rest:
            raise ConfigError(key, f"name the experiment key: --set {head}.federation.rounds=...")
        section = raw.get(head) or {}
        if not isinstance(section, Mapping):
            raise ConfigError(head, f"expected a mapping, got {section!r}")
        raw[head] = {**_dot_keys(section, head), rest: value}
        return
    if head == "scheduler" and rest and isinstance(raw.get("scheduler"), str):
        raw["scheduler"] = {"type": raw["scheduler"]}  # `scheduler: asha` + --set scheduler.grace_period=2
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(key, f"cannot set a sub-key of the value {child!r}")
        node = child
    node[parts[-1]] = value


def _hint(key: str) -> str:
    if key in (f.name for f in dataclasses.fields(ExperimentConfig)):
        return (f" ({key!r} is an experiment key: put it under `set:` or a search space, "
                f"e.g. --set set.{key}.… or grid.{key}.…)")
    close = difflib.get_close_matches(key, TOP_LEVEL, n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(TOP_LEVEL)})"


def _base_path(base: Any, path: Path) -> Path:
    if not isinstance(base, str) or not base:
        raise ConfigError("base", "give the experiment config every trial starts from, e.g. "
                                  "base: ../experiments/quickstart.yaml (relative to the sweep file)")
    resolved = (path.parent / base).resolve()
    if not resolved.is_file():
        raise ConfigError("base", f"file not found: {resolved}")
    return resolved


def _dot_keys(section: Any, where: str) -> dict[str, Any]:
    """`{a: {b: 1}, "c.d": 2}` -> `{"a.b": 1, "c.d": 2}` (leaves are anything but a mapping)."""
    if not isinstance(section, Mapping):
        raise ConfigError(where, f"expected a mapping of dot-keys, got {section!r}")
    flat: dict[str, Any] = {}
    for key, value in section.items():
        if not isinstance(key, str) or not key:
            raise ConfigError(where, f"keys must be non-empty strings, got {key!r}")
        if isinstance(value, Mapping) and value:
            for sub, leaf in _dot_keys(value, f"{where}.{key}").items():
                flat[f"{key}.{sub}"] = leaf
        else:
            flat[key] = value
    return flat


def _spaces(raw: Mapping[str, Any], fixed: Mapping[str, Any]) -> tuple[Space, ...]:
    seen: dict[str, str] = {key: "set" for key in fixed}
    for key in fixed:
        if key in SWEEP_OWNED:
            raise ConfigError(f"set.{key}", "is set by the sweep for each trial (use the sweep's `experiment:`)")
    spaces = []
    for kind in SPACE_KINDS:
        for key, values in _dot_keys(raw.get(kind) or {}, kind).items():
            where = f"{kind}.{key}"
            if key in seen:
                raise ConfigError(where, f"is also given under {seen[key]}:")
            if key.startswith("tracking.") or key in SWEEP_OWNED:
                raise ConfigError(where, "tracking keys are shared by every trial of a sweep: put them under `set:`")
            seen[key] = kind
            spaces.append(Space(kind, key, _space_values(kind, values, where)))
    return tuple(spaces)


def _space_values(kind: str, values: Any, where: str) -> tuple[Any, ...]:
    if not isinstance(values, list) or not values:
        raise ConfigError(where, f"expected a non-empty list of values, got {values!r}")
    if kind in ("grid", "choice"):
        return tuple(values)
    if len(values) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise ConfigError(where, f"expected [low, high] numbers, got {values!r}")
    low, high = (float(v) for v in values)
    if not low < high:
        raise ConfigError(where, f"low must be < high, got {values!r}")
    if kind == "loguniform" and low <= 0:
        raise ConfigError(where, f"loguniform bounds must be > 0, got {values!r}")
    return (low, high)


def _scheduler_mapping(raw: Mapping[str, Any]) -> dict[str, Any]:
    """`scheduler: asha` / `none` / null as the mapping form `{type: ...}`."""
    scheduler = raw.get("scheduler")
    if scheduler is None:
        return {"scheduler": {"type": "none"}} if "scheduler" in raw else {}
    if isinstance(scheduler, str):
        return {"scheduler": {"type": scheduler}}
    return {}


def _compact(value: Any) -> str:
    return override_text("", value)[1:]


def _require(condition: bool, field_path: str, message: str) -> None:
    if not condition:
        raise ConfigError(field_path, message)
