"""YAML file + `--set a.b=c` overrides -> a typed, frozen `ExperimentConfig`.

A config file may list `defaults:` (paths relative to the file) whose mappings are deep-merged first,
so experiments compose reusable fragments from `configs/<section>/`. Every key is checked against the
schema: an unknown key, a wrong type, a non-finite number (`.inf`, `.nan`) or a value rejected by a section's
`__post_init__` raises `ConfigError` naming the dotted field. Nothing here imports torch or Ray, so this runs before either.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import yaml

from f3ocus.config.schema import ConfigError, ExperimentConfig

_MISSING = object()


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Read `path`, apply `key=value` overrides, and bind the result to the schema.

    Raises:
        ConfigError: unreadable file, unknown key, wrong type or invalid value (message names the field).
    """
    try:
        raw = _read_with_defaults(Path(path), seen=())
        for override in overrides:
            key, value = parse_override(override)
            _set_dotted(raw, key, value)
        return bind(ExperimentConfig, raw, "")
    except RecursionError:  # a YAML alias that contains itself, merged or bound
        raise ConfigError("config", f"{path}: a value refers to itself or is nested too deeply") from None


def to_dict(config: Any) -> dict[str, Any]:
    """The config as plain YAML-able data (tuples become lists)."""
    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        return value
    return plain(config)


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"a": {"b": 1}}` -> `{"a.b": 1}`; lists are kept as values (MLflow params are flat dot-keys)."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _read_with_defaults(path: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    try:
        path = path.resolve()
    except (OSError, RuntimeError, ValueError) as error:  # embedded NUL, symlink loop
        raise ConfigError("config", f"cannot read {str(path)!r}: {error}") from None
    if path in seen:
        raise ConfigError("defaults", f"circular include of {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError("config", f"file not found: {path}") from None
    except OSError as error:  # a directory, no permission, name too long, ...
        raise ConfigError("config", f"cannot read {path}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise ConfigError("config", f"{path} is not UTF-8 text: {error}") from None
    except ValueError as error:  # an embedded NUL byte in the name
        raise ConfigError("config", f"cannot read {str(path)!r}: {error}") from None
    except yaml.YAMLError as error:
        raise ConfigError("config", f"{path} is not valid YAML: {_yaml_problem(error)}") from None
    except RecursionError:
        raise ConfigError("config", f"{path} is nested too deeply to be a config") from None
    if not isinstance(data, dict):
        raise ConfigError("config", f"{path} must hold a mapping at top level")
    fragments = data.pop("defaults", None) or []
    if isinstance(fragments, str):
        fragments = [fragments]
    if not isinstance(fragments, list) or not all(isinstance(fragment, str) for fragment in fragments):
        raise ConfigError("defaults", f"{path}: expected a list of file paths, got {fragments!r}")
    merged: dict[str, Any] = {}
    for fragment in fragments:
        _deep_merge(merged, _read_with_defaults(path.parent / fragment, seen + (path,)))
    _deep_merge(merged, data)
    return merged


def _yaml_problem(error: yaml.YAMLError) -> str:
    """One line: what PyYAML found wrong and where (its own message spans several lines)."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or " ".join(str(error).split())
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}"


def _deep_merge(base: dict[str, Any], update: Mapping[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = value


def parse_override(text: str) -> tuple[str, Any]:
    """`key=value` with a YAML value (`federation.budgets=[1,2]`); a value YAML cannot read stays a string."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError("--set", f"expected key=value, got {text!r}")
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError:
        return key.strip(), value
    except RecursionError:
        raise ConfigError(key.strip(), "--set value nested too deeply") from None


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(key, f"cannot set a sub-key of a non-mapping value {child!r}")
        node = child
    node[parts[-1]] = value


def bind(cls: type, raw: Any, path: str) -> Any:
    """Build dataclass `cls` from mapping `raw`, checking keys and types; `path` prefixes error fields."""
    if not isinstance(raw, Mapping):
        raise ConfigError(path or "config", f"expected a mapping, got {type(raw).__name__} {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            hint = difflib.get_close_matches(str(key), list(fields), n=1)
            suffix = f" (did you mean {hint[0]!r}?)" if hint else f" (known: {', '.join(fields)})"
            raise ConfigError(_join(path, _key_text(key)), f"unknown key{suffix}")
    hints = typing.get_type_hints(cls)
    values = {name: _coerce(hints[name], raw[name], _join(path, name)) for name in fields if name in raw}
    try:
        return cls(**values)
    except ConfigError as error:
        raise error.under(path) from None


def _key_text(key: Any) -> str:
    """A key as it reads in a field path: quoted when empty, padded or not a plain string (`''`, `'lr '`)."""
    text = str(key)
    plain = isinstance(key, str) and text and text == text.strip() and text.isprintable()
    return text if plain else repr(key)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _coerce(hint: Any, value: Any, path: str) -> Any:
    """Check `value` against type `hint`; return it in the schema's representation (lists -> tuples)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return bind(hint, value, path)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(option, value, path)
            except ConfigError as error:
                errors.append(error.message)
        raise ConfigError(path, " or ".join(dict.fromkeys(errors)))
    if origin is Literal:
        if value not in args:
            raise ConfigError(path, f"must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(path, f"expected a list, got {value!r}")
        return tuple(_coerce(args[0], item, f"{path}[{i}]") for i, item in enumerate(value))
    return _coerce_scalar(hint, value, path)


def _coerce_scalar(hint: Any, value: Any, path: str) -> Any:
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an integer beyond the float range
            raise ConfigError(path, f"number out of range: {value}") from None
        if not math.isfinite(number):  # YAML's .inf / .nan, or a literal beyond the float range (1.0e+999)
            raise ConfigError(path, f"must be a finite number, got {value}")
        return number
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint in (str, bool) and isinstance(value, hint):
        return value
    expected = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(hint, str(hint))
    raise ConfigError(path, f"expected {expected}, got {value!r}")
