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

from pathlib import Path

SCRATCH = "scratch"  # the tiny preset with seeded random weights
FOUNDATION = "foundation"  # the tiny preset pretrained offline on easy-vqa (cached; f3ocus.models.foundation)
BUILTIN_CHECKPOINTS = (SCRATCH, FOUNDATION)
PRESET_PREFIX = "tiny-"
DEFAULT_IMAGE_SIZE = 32

PRESET_UNITS: dict[str, tuple[str, ...]] = {
    "llava": ("vision.0", "vision.1", "vision.2", "vision.3", "connector",
              "language.0", "language.1", "language.2", "language.3"),
    "vilt": ("fusion.0", "fusion.1", "fusion.2", "fusion.3", "fusion.4", "fusion.5"),
    "blip": ("vision.0", "vision.1", "vision.2", "language.0", "language.1", "language.2"),
    "blip2": ("vision.0", "vision.1", "vision.2", "qformer.0", "qformer.1", "connector",
              "language.0", "language.1", "language.2"),
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


def list_units(family: str, checkpoint: str = SCRATCH, cache_dir: str | Path | None = None) -> list[str]:
    """Unit names of a model without building it.

    "scratch" and "foundation" share the tiny preset's architecture: their units come from
    `PRESET_UNITS`. Any other checkpoint's config is read and the model built on the meta device.
    `cache_dir` is accepted for symmetry with `build_vqa_model`.

    Raises:
        ValueError: unknown family; OSError: an unreadable checkpoint config.
    """
    del cache_dir
    name = family_name(family)
    if checkpoint in BUILTIN_CHECKPOINTS:
        return list(PRESET_UNITS[name])
    from f3ocus.models.registry import units_from_config

    return units_from_config(name, checkpoint)
