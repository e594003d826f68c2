"""The model families by name and the units of their tiny presets: plain data, no torch or transformers.

The driver validates a config before Ray starts. With these tables it checks `model.family` and the
budgets against the unit count of a built-in checkpoint ("scratch", "foundation") without importing
transformers' model classes, which would cost the driver ~2.5 s of its start-up for a list it can know
in advance (docs/BENCHMARKS.md, "Start-up"). Any other checkpoint (a hub id or a local directory) is
read from its config on the meta device (`f3ocus.models.registry.units_from_config`).

`PRESET_UNITS` is what `discover_units` finds on each tiny preset; `tests/unit/models/test_model_units.py`
builds every preset and checks it against this table, and `FAMILY_NAMES` against `registry.FAMILIES`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

SCRATCH = "scratch"  # the tiny preset with seeded random weights
FOUNDATION = "foundation"  # the tiny preset pretrained offline on easy-vqa (cached; f3ocus.models.foundation)
# the same, with medical-style VQA on the MedMNIST modalities that no T2 client holds in the pretraining mix
FOUNDATION_MED = "foundation-med"
FOUNDATION_CORPUS: dict[str, str] = {FOUNDATION: "general", FOUNDATION_MED: "medical"}
BUILTIN_CHECKPOINTS = (SCRATCH, FOUNDATION, FOUNDATION_MED)
PRESET_PREFIX = "tiny-"
DEFAULT_IMAGE_SIZE = 32

PRESET_UNITS: dict[str, tuple[str, ...]] = {
    "llava": ("vision.0", "vision.1", "vision.2", "vision.3", "connector",
              "language.0", "language.1", "language.2", "language.3"),
    "vilt": ("fusion.0", "fusion.1", "fusion.2", "fusion.3", "fusion.4", "fusion.5"),
    "blip": ("vision.0", "vision.1", "vision.2", "language.0", "language.1", "language.2"),
    "blip2": ("vision.0", "vision.1", "vision.2", "qformer.0", "qformer.1", "connector",
              "language.0", "language.1", "language.2"),
    # The deep presets (as many selectable blocks as the paper's models): LLaVA with 24 language blocks, ViLT with 12.
    "llava24": ("vision.0", "vision.1", "connector", *(f"language.{i}" for i in range(24))),
    "vilt12": tuple(f"fusion.{i}" for i in range(12)),
}
FAMILY_NAMES: tuple[str, ...] = tuple(PRESET_UNITS)


def family_name(family: str) -> str:
    """The family's name ("llava" for "llava" or its preset name "tiny-llava").

    Raises:
        ValueError: unknown family (the message names it and lists the known ones).
    """
    name = family.removeprefix(PRESET_PREFIX)
    if name not in FAMILY_NAMES:
        raise ValueError(f"unknown model family {family!r}; known: {sorted(FAMILY_NAMES)} "
                         f"(presets {[PRESET_PREFIX + known for known in FAMILY_NAMES]})")
    return name


def list_units(family: str, checkpoint: str = SCRATCH, cache_dir: str | Path | None = None,
               selectable: Sequence[str] | None = None) -> list[str]:
    """Unit names of a model without building it.

    "scratch" and the foundations share the tiny preset's architecture: their units come from
    `PRESET_UNITS`. Any other checkpoint's config is read and the model built on the meta device.
    `cache_dir` is accepted for symmetry with `build_vqa_model`. `selectable` keeps only the units of
    those stacks (see `selectable_units`).

    Raises:
        ValueError: unknown family, a `selectable` stack the model does not have; OSError: an unreadable
            checkpoint config.
    """
    del cache_dir
    name = family_name(family)
    if checkpoint in BUILTIN_CHECKPOINTS:
        units = list(PRESET_UNITS[name])
    else:
        from f3ocus.models.registry import units_from_config

        units = units_from_config(name, checkpoint)
    return selectable_units(units, selectable)


def stack_of(unit: str) -> str:
    """The stack a unit belongs to: its name's prefix ("language" for "language.7"; "connector")."""
    return unit.split(".", 1)[0]


def selectable_units(units: Sequence[str], selectable: Sequence[str] | None) -> list[str]:
    """The units of the `selectable` stacks (all units when None), in model order.

    The paper selects among the LLM blocks of LLaVA / BLIP-2 (vision tower and connector frozen) and among
    every block of ViLT: `model.selectable: [language]` says the former. Units left out are frozen for the
    whole run and never offered to the server's solver.

    Raises:
        ValueError: a named stack the model does not have (the message lists the stacks it has).
    """
    if selectable is None:
        return list(units)
    stacks = list(dict.fromkeys(stack_of(unit) for unit in units))
    unknown = [stack for stack in selectable if stack not in stacks]
    if unknown or not selectable:
        raise ValueError(f"selectable stacks {list(selectable)}: the model's stacks are {stacks}")
    return [unit for unit in units if stack_of(unit) in selectable]
