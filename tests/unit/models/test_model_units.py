"""Unit discovery on the tiny LLaVA and ViLT presets, and the cheap `list_units` used by config validation."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from f3ocus.models.families.llava import LLAVA
from f3ocus.models.family import FamilySpec, StackRule
from f3ocus.models.catalog import FAMILY_NAMES, PRESET_UNITS
from f3ocus.models.registry import (FAMILIES, build_vqa_model, get_family, list_presets, list_units,
                                    units_from_config)
from f3ocus.models.units import discover_units

EXPECTED_UNITS = {
    "llava": ["vision.0", "vision.1", "vision.2", "vision.3", "connector",
              "language.0", "language.1", "language.2", "language.3"],
    "vilt": ["fusion.0", "fusion.1", "fusion.2", "fusion.3", "fusion.4", "fusion.5"],
}
# Parameters allowed outside every unit: embeddings, norms, pooler, the answer head, unused modules.
OUTSIDE_UNITS_OK = re.compile(r"embed|norm|layrnorm|pooler|cls_token|^head\.|lm_head|classifier")


def test_units_named_and_ordered_input_side_first(family: str) -> None:
    model = build_vqa_model(family, "scratch", answers=["yes", "no"])

    assert list(model.units) == EXPECTED_UNITS[family]
    assert [unit.name for unit in model.unit_specs] == EXPECTED_UNITS[family]


def test_unit_parameters_disjoint_and_nothing_else_outside(family: str) -> None:
    model = build_vqa_model(family, "scratch", answers=["yes", "no"])

    owned = model.unit_parameter_names()
    flat = [name for unit in model.units for name in owned[unit]]
    outside = {name for name, _ in model.named_parameters()} - set(flat)

    assert all(owned[unit] for unit in model.units)
    assert len(flat) == len(set(flat))
    assert sorted(n for n in outside if not OUTSIDE_UNITS_OK.search(n)) == []
    assert owned["head"] == ["head.weight", "head.bias"]


def test_connector_is_the_llava_projector_and_unused_lm_head_is_no_unit() -> None:
    model = build_vqa_model("llava", "scratch", answers=["yes", "no"])

    paths = {unit.name: unit.module_path for unit in model.unit_specs}

    assert paths["connector"].endswith("multi_modal_projector")
    assert not any("lm_head" in path for path in paths.values())


def test_tiny_presets_have_1_to_6_million_parameters(family: str) -> None:
    model = build_vqa_model(family, "scratch", answers=["yes", "no"])

    count = sum(param.numel() for param in model.backbone.parameters())

    assert 1_000_000 <= count <= 6_000_000


def test_list_units_matches_built_model_without_weights(family: str, tmp_path: Path) -> None:
    model = build_vqa_model(family, "scratch", answers=["yes", "no"])
    model.backbone.save_pretrained(tmp_path)

    assert list_units(family) == list(model.units)
    assert list_units(f"tiny-{family}", "foundation", cache_dir=tmp_path / "none") == list(model.units)
    assert list_units(family, str(tmp_path)) == list(model.units)
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_preset_unit_table_matches_every_tiny_preset_built_on_meta(name: str) -> None:
    # The table lets validation skip transformers; it must say what discovery finds on the real preset.
    assert list(PRESET_UNITS[name]) == units_from_config(name, "scratch") == list_units(name, "scratch")


def test_catalog_names_exactly_the_registered_families() -> None:
    assert sorted(FAMILY_NAMES) == sorted(FAMILIES)


def test_validating_a_builtin_checkpoint_config_imports_no_transformers() -> None:
    # What keeps the driver's start-up short (docs/BENCHMARKS.md, "Start-up"): validation of the quickstart
    # (foundation checkpoint) lists its units from the catalog, not from transformers' model classes.
    code = ("import sys; from f3ocus.config import load_config; from f3ocus.config.validate import validate; "
            "units = validate(load_config('configs/experiments/quickstart.yaml')); "
            "print(len(units), sorted(m for m in ('transformers', 'peft') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[3]).stdout.split("\n")[-2]
    assert out == "9 []"


def test_unknown_family_is_named_in_the_error() -> None:
    with pytest.raises(ValueError, match="'albef'"):
        list_units("albef")
    with pytest.raises(ValueError, match="'albef'"):
        build_vqa_model("albef", "scratch", answers=["yes"])


def test_presets_cover_llava_and_vilt() -> None:
    assert {"tiny-llava", "tiny-vilt"} <= set(list_presets())
    assert get_family("tiny-vilt").name == "vilt"


def _toy_spec(unused_pattern: str | None) -> FamilySpec:
    return FamilySpec(name="toy", model_class=torch.nn.Module, build_tiny=LLAVA.build_tiny,
                      encode=LLAVA.encode, pool=LLAVA.pool, feature_dim=LLAVA.feature_dim,
                      stacks=(StackRule("block", r"layers$"),), unused_pattern=unused_pattern)


def _toy_backbone() -> torch.nn.Module:
    backbone = torch.nn.Module()
    backbone.a = torch.nn.Module()
    backbone.a.layers = torch.nn.ModuleList(torch.nn.Linear(2, 2) for _ in range(2))
    backbone.b = torch.nn.Module()
    backbone.b.layers = torch.nn.ModuleList(torch.nn.Linear(2, 2) for _ in range(3))
    return backbone


def test_second_list_with_same_prefix_continues_numbering() -> None:
    units = discover_units(_toy_backbone(), _toy_spec(None))

    assert [u.name for u in units] == [f"block.{i}" for i in range(5)]
    assert units[2].module_path == "b.layers.0"


def test_lists_inside_unused_modules_are_skipped_and_no_unit_raises() -> None:
    units = discover_units(_toy_backbone(), _toy_spec(r"^b$"))

    assert [(u.name, u.module_path) for u in units] == [("block.0", "a.layers.0"), ("block.1", "a.layers.1")]
    with pytest.raises(ValueError, match="no unit"):
        discover_units(torch.nn.Linear(2, 2), _toy_spec(None))
