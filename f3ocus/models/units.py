"""Selectable units: which blocks of a backbone a client may train, found by walking `named_modules()`.

It owns `UnitSpec` and `discover_units`. A unit is one child of an `nn.ModuleList` whose dotted path
matches one of the family's `StackRule`s (named `<prefix>.<i>`), or the family's connector module
(named `connector`). Order = first appearance in `named_modules()`, which for the supported families
is the data-flow order (vision, connector / qformer, language or fusion). No module path is
hard-coded: a transformers release that moves a stack only needs the family's regex to still match.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from torch import nn

from f3ocus.models.family import FamilySpec

CONNECTOR = "connector"


@dataclass(frozen=True)
class UnitSpec:
    """One selectable unit.

    Attributes:
        name: uniform name, e.g. "vision.3", "connector", "qformer.1", "language.7", "fusion.2".
        module_path: dotted path of the block in the backbone's `named_modules()`.
    """

    name: str
    module_path: str


def _inside(path: str, roots: list[str]) -> bool:
    """Whether `path` is one of `roots` or lies below one of them."""
    return any(path == root or path.startswith(root + ".") for root in roots)


def discover_units(backbone: nn.Module, spec: FamilySpec) -> list[UnitSpec]:
    """List the selectable units of `backbone` according to `spec`.

    Module lists inside `spec.unused_pattern` modules or inside an already found unit are skipped.
    A second list claimed by the same prefix continues its numbering (e.g. `vision.4` after `vision.3`).

    Args:
        backbone: the transformers model (possibly on the meta device or with LoRA injected).
        spec: the family's stack rules, connector and unused patterns.

    Returns:
        Units in `named_modules()` order; names are unique.

    Raises:
        ValueError: no unit found, or the connector pattern matches two unrelated modules.
    """
    units: list[UnitSpec] = []
    claimed: list[str] = []
    counts: Counter[str] = Counter()
    for path, module in backbone.named_modules():
        if not path or _inside(path, claimed) or is_unused_path(path, spec):
            continue
        found = _units_at(path, module, spec, counts)
        if found:
            units.extend(found)
            claimed.append(path)
    if not units:
        raise ValueError(f"{spec.name}: no unit found; stack rules "
                         f"{[rule.pattern for rule in spec.stacks]} match no nn.ModuleList")
    return units


def _units_at(path: str, module: nn.Module, spec: FamilySpec, counts: Counter[str]) -> list[UnitSpec]:
    """Units rooted at `path` (the connector, or one per child of a matching list); updates `counts`."""
    if spec.connector_pattern is not None and re.search(spec.connector_pattern, path):
        if counts[CONNECTOR]:
            raise ValueError(f"{spec.name}: connector pattern {spec.connector_pattern!r} matches "
                             f"more than one module (second: {path!r})")
        counts[CONNECTOR] += 1
        return [UnitSpec(CONNECTOR, path)]
    prefix = _stack_prefix(path, module, spec)
    if prefix is None:
        return []
    found = []
    for child_name, _ in module.named_children():
        found.append(UnitSpec(f"{prefix}.{counts[prefix]}", f"{path}.{child_name}"))
        counts[prefix] += 1
    return found


def is_unused_path(path: str, spec: FamilySpec) -> bool:
    """Whether `path` is (inside) a module the family marks as unused."""
    if spec.unused_pattern is None:
        return False
    parts = path.split(".")
    return any(re.search(spec.unused_pattern, ".".join(parts[:end])) for end in range(1, len(parts) + 1))


def _stack_prefix(path: str, module: nn.Module, spec: FamilySpec) -> str | None:
    """The prefix of the first stack rule naming this module list, or None."""
    if not isinstance(module, nn.ModuleList):
        return None
    for rule in spec.stacks:
        if re.search(rule.pattern, path):
            return rule.prefix
    return None
