"""`model.selectable`: which stacks' blocks are units; the deep presets (llava24, vilt12)."""

from __future__ import annotations

import pytest
import torch

from f3ocus.config.load import load_config
from f3ocus.config.schema import ConfigError
from f3ocus.config.validate import validate
from f3ocus.models.catalog import PRESET_UNITS, list_units, selectable_units, stack_of
from f3ocus.models.registry import build_vqa_model


def test_selectable_units_keeps_named_stacks_in_model_order() -> None:
    units = ["vision.0", "vision.1", "connector", "language.0", "language.1"]

    assert selectable_units(units, None) == units
    assert selectable_units(units, ["language"]) == ["language.0", "language.1"]
    assert selectable_units(units, ["language", "connector"]) == ["connector", "language.0", "language.1"]
    assert stack_of("language.7") == "language" and stack_of("connector") == "connector"


def test_selectable_unknown_stack_names_the_stacks_the_model_has() -> None:
    with pytest.raises(ValueError, match=r"\['fusion'\]"):
        selectable_units(["fusion.0", "fusion.1"], ["language"])


def test_deep_presets_have_the_papers_block_counts() -> None:
    assert list_units("llava24", selectable=["language"]) == [f"language.{i}" for i in range(24)]
    assert len(PRESET_UNITS["llava24"]) == 27  # + 2 vision blocks and the connector, frozen in the study
    assert list_units("tiny-vilt12") == [f"fusion.{i}" for i in range(12)]


def test_blocks_outside_the_selectable_stacks_are_frozen_even_with_every_unit_selected() -> None:
    model = build_vqa_model("llava", "scratch", answers=["yes", "no"], selectable=["language"])

    model.set_trainable([True] * len(model.units))

    assert list(model.units) == ["language.0", "language.1", "language.2", "language.3"]
    trainable = {name for name, param in model.named_parameters() if param.requires_grad}
    assert trainable and not any("vision_tower" in name or "multi_modal_projector" in name for name in trainable)
    assert any(".language_model.layers.3." in name for name in trainable)


def test_adapter_mode_injects_lora_only_into_selectable_blocks() -> None:
    model = build_vqa_model("llava", "scratch", answers=["yes", "no"], unit_mode="adapter", selectable=["language"])

    lora = [name for name, _ in model.named_parameters() if ".lora_" in name]
    assert lora and all("language_model" in name for name in lora)


def test_config_selectable_is_validated_against_the_family() -> None:
    cfg = load_config("configs/smoke/cpu_tiny.yaml", ["model.family=vilt", "model.selectable=[language]",
                                                      "federation.budgets=1"])
    with pytest.raises(ConfigError) as error:
        validate(cfg)
    assert error.value.field == "model.selectable"


def test_budgets_are_checked_against_the_selectable_units_only() -> None:
    cfg = load_config("configs/smoke/cpu_tiny.yaml", ["model.family=llava", "model.selectable=[language]",
                                                      "federation.budgets=5"])
    with pytest.raises(ConfigError, match="exceeds the 4 selectable units"):
        validate(cfg)


def test_deep_llava_pools_a_finite_feature_per_sample() -> None:
    model = build_vqa_model("llava24", "scratch", answers=["a", "b", "c"], selectable=["language"])
    from PIL import Image

    inputs = model.encode([Image.new("RGB", (32, 32), (200, 30, 30))] * 2, ["what color is the shape?"] * 2)
    with torch.no_grad():
        logits = model(**inputs)
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()
