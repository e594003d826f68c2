"""BLIP and BLIP-2 families: tiny presets, encoding, pooled features, stack rules, save/load round trip.

The expected module paths below pin the transformers 5.23 layout: the families themselves only carry
regexes, so a release that moves a stack fails here first, with the paths that moved.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from transformers import AutoProcessor

from f3ocus.models._rng import isolated_rng
from f3ocus.models.families.blip import BLIP_FAMILY
from f3ocus.models.families.blip2 import BLIP2_FAMILY
from f3ocus.models.family import FamilySpec
from f3ocus.models.tokenizer import IMAGE
from f3ocus.models.units import discover_units

WORDS = ("what", "is", "the", "color", "of", "shape", "how", "many", "does", "image", "contain",
         "a", "circle", "red", "blue", "green", "square", "triangle", "yes", "no")
QUESTIONS = ("what color is the shape", "is it red", "how many shapes does the image contain")
IMAGE_SIZE = 32

# family name -> {rule prefix / "connector" / "unused": module paths the regex must hit in named_modules()}
EXPECTED_PATHS = {
    "blip": {"vision": ["vision_model.encoder.layers"], "language": ["text_encoder.encoder.layer"],
             "connector": [], "unused": ["text_decoder"]},
    "blip2": {"vision": ["vision_model.encoder.layers"], "qformer": ["qformer.encoder.layer"],
              "language": ["language_model.model.decoder.layers"], "connector": ["language_projection"],
              "unused": ["language_model.lm_head"]},
}
EXPECTED_UNITS = {
    "blip": ["vision.0", "vision.1", "vision.2", "language.0", "language.1", "language.2"],
    "blip2": ["vision.0", "vision.1", "vision.2", "qformer.0", "qformer.1", "connector",
              "language.0", "language.1", "language.2"],
}
FAMILIES = {"blip": BLIP_FAMILY, "blip2": BLIP2_FAMILY}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def built(request) -> tuple[FamilySpec, nn.Module, object]:
    spec = FAMILIES[request.param]
    with isolated_rng(0):
        model, processor = spec.build_tiny(WORDS, IMAGE_SIZE)
    return spec, model, processor


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)) for _ in range(3)]


def _module_paths(model: nn.Module, pattern: str | None, kind: type = nn.Module) -> list[str]:
    if pattern is None:
        return []
    return [path for path, module in model.named_modules()
            if path and isinstance(module, kind) and re.search(pattern, path)]


def test_tiny_preset_has_1_to_6_million_parameters(built):
    spec, model, _ = built

    n_params = sum(parameter.numel() for parameter in model.parameters())

    assert 1_000_000 <= n_params <= 6_000_000, f"{spec.name}: {n_params:,} parameters"
    assert isinstance(model, spec.model_class)
    assert model.config._attn_implementation == "eager"


def test_encode_and_pool_shapes(built, images):
    spec, model, processor = built

    inputs = spec.encode(processor, images, QUESTIONS)
    features = spec.pool(model.eval(), inputs)

    assert set(inputs) == {"pixel_values", "input_ids", "attention_mask"}
    assert inputs["pixel_values"].shape == (3, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert inputs["input_ids"].shape == inputs["attention_mask"].shape
    lengths = inputs["attention_mask"].sum(dim=1)
    assert len(set(lengths.tolist())) == 3  # questions of different lengths -> padded rows
    assert features.shape == (3, spec.feature_dim(model))
    assert torch.isfinite(features).all()
    assert not torch.allclose(features[0], features[1])


def test_blip2_input_ids_carry_one_image_token_per_query(images):
    with isolated_rng(0):
        model, processor = BLIP2_FAMILY.build_tiny(WORDS, IMAGE_SIZE)
    image_token_id = processor.tokenizer.convert_tokens_to_ids(IMAGE)

    inputs = BLIP2_FAMILY.encode(processor, images, QUESTIONS)

    assert model.config.image_token_id == model.config.image_token_index == image_token_id
    n_query = model.config.num_query_tokens
    assert processor.num_query_tokens == n_query
    assert (inputs["input_ids"][:, :n_query] == image_token_id).all()
    assert ((inputs["input_ids"] == image_token_id).sum(dim=1) == n_query).all()
    assert (inputs["attention_mask"][:, :n_query] == 1).all()


def test_blip2_pool_matches_the_model_forward(images):
    with isolated_rng(0):
        model, processor = BLIP2_FAMILY.build_tiny(WORDS, IMAGE_SIZE)
    inputs = BLIP2_FAMILY.encode(processor, images, QUESTIONS)
    model.eval()

    with torch.no_grad():
        pooled = BLIP2_FAMILY.pool(model, inputs)
        outputs = model(**inputs, output_hidden_states=True)
    last = inputs["attention_mask"].sum(dim=1) - 1  # right padding
    reference = outputs.language_model_outputs.hidden_states[-1][torch.arange(3), last]

    torch.testing.assert_close(pooled, reference)


def test_gradient_reaches_every_unit_and_skips_unused_modules(built, images):
    spec, model, processor = built
    model.train()
    model.zero_grad(set_to_none=True)
    units = discover_units(model, spec)
    modules = dict(model.named_modules())
    unused_calls: list[str] = []
    hooks = [modules[path].register_forward_hook(lambda *_, p=path: unused_calls.append(p))
             for path in _module_paths(model, spec.unused_pattern)]
    inputs = spec.encode(processor, images, QUESTIONS)

    try:
        features = spec.pool(model, inputs)
    finally:
        for hook in hooks:
            hook.remove()
    # A random projection, not .sum(): the sum of a LayerNorm output has an exactly zero gradient.
    projection = torch.randn(features.shape, generator=torch.Generator().manual_seed(0))
    (features * projection).sum().backward()

    assert unused_calls == []
    for unit in units:
        grads = [parameter.grad for parameter in modules[unit.module_path].parameters()]
        assert grads and all(grad is not None for grad in grads), unit.name
        assert torch.stack([grad.norm() for grad in grads]).sum() > 0, unit.name
    model.zero_grad(set_to_none=True)
    model.eval()


def test_stack_rules_match_the_intended_module_lists(built):
    spec, model, _ = built
    expected = EXPECTED_PATHS[spec.name]

    for rule in spec.stacks:
        assert _module_paths(model, rule.pattern, nn.ModuleList) == expected[rule.prefix], rule.prefix
    assert _module_paths(model, spec.connector_pattern) == expected["connector"]
    assert _module_paths(model, spec.unused_pattern) == expected["unused"]
    for path, module in model.named_modules():  # e.g. BLIP's text_decoder layers: not a stack
        if isinstance(module, nn.ModuleList) and any(path.startswith(u) for u in expected["unused"]):
            assert not any(re.search(rule.pattern, path) for rule in spec.stacks), path


def test_discovered_unit_names(built):
    spec, model, _ = built

    units = discover_units(model, spec)

    assert [unit.name for unit in units] == EXPECTED_UNITS[spec.name]
    assert not any(unit.module_path.startswith(tuple(EXPECTED_PATHS[spec.name]["unused"])) for unit in units)


def test_save_and_reload_give_identical_pooled_features(built, images, tmp_path):
    spec, model, processor = built
    model.eval()
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)

    # attn_implementation is not serialised: without it the reloaded model would run sdpa.
    reloaded = spec.model_class.from_pretrained(tmp_path, attn_implementation="eager").eval()
    reloaded_processor = AutoProcessor.from_pretrained(tmp_path)
    inputs = spec.encode(processor, images, QUESTIONS)
    reloaded_inputs = spec.encode(reloaded_processor, images, QUESTIONS)
    with torch.no_grad():
        features = spec.pool(model, inputs)
        reloaded_features = spec.pool(reloaded, reloaded_inputs)

    assert type(reloaded_processor) is type(processor)
    assert reloaded.config._attn_implementation == "eager"
    assert set(reloaded_inputs) == set(inputs)
    for key, value in inputs.items():
        assert torch.equal(reloaded_inputs[key], value), key
    torch.testing.assert_close(reloaded_features, features, rtol=0, atol=0)


def test_every_blip2_unit_gets_lora_tensors_in_adapter_mode():
    from f3ocus.models.registry import build_vqa_model

    model = build_vqa_model("blip2", "scratch", answers=["yes", "no"], unit_mode="adapter")
    sizes = model.num_unit_parameters()
    assert all(sizes[unit] > 0 for unit in model.units), sizes  # incl. the bare-Linear connector
