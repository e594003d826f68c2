"""`VqaModel` on tiny scratch presets: shapes, trainable masks, unit state round trips, adapter mode."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from f3ocus.models.registry import build_vqa_model
from f3ocus.models.training import encode_examples, train_epochs
from f3ocus.models.vqa_model import VqaModel

from .conftest import ANSWERS


def _model(family: str, unit_mode: str = "layer", seed: int = 0) -> VqaModel:
    return build_vqa_model(family, "scratch", answers=ANSWERS, unit_mode=unit_mode, seed=seed)


def test_encode_and_forward_shapes(family: str, examples) -> None:
    images, questions, _ = examples
    model = _model(family)

    inputs = model.encode(images, questions)
    logits = model(**inputs)

    assert all(value.shape[0] == len(images) for value in inputs.values())
    assert inputs["pixel_values"].shape == (len(images), 3, 32, 32)
    assert logits.shape == (len(images), len(ANSWERS))
    assert model.pooled_features(**inputs).shape == (len(images), 128)


def test_llava_input_ids_hold_one_image_token_per_vision_feature(examples) -> None:
    images, questions, _ = examples
    model = _model("llava")

    inputs = model.encode(images, questions)
    # transformers 5.23: per-image (tokens, hidden) tensors in `pooler_output` of the vision output.
    per_image = model.backbone.model.get_image_features(pixel_values=inputs["pixel_values"]).pooler_output
    emitted = sum(features.shape[0] for features in per_image)

    counts = (inputs["input_ids"] == model.backbone.config.image_token_id).sum(dim=1)
    assert counts.tolist() == [16] * len(images)
    assert emitted == 16 * len(images)


def test_set_trainable_selects_exactly_the_masked_units(family: str) -> None:
    model = _model(family)
    owned = model.unit_parameter_names()
    mask = [index % 2 == 1 for index in range(len(model.units))]

    model.set_trainable(mask, train_head=False)

    expected = {name for unit, keep in zip(model.units, mask) if keep for name in owned[unit]}
    assert {name for name, param in model.named_parameters() if param.requires_grad} == expected
    model.set_trainable(mask)
    assert {name for name, param in model.named_parameters() if param.requires_grad} == expected | set(owned["head"])
    with pytest.raises(ValueError, match="units"):
        model.set_trainable([True])


def test_trainable_state_round_trip_and_strictness(family: str, examples) -> None:
    images, questions, _ = examples
    source, target = _model(family), _model(family)
    inputs = source.encode(images, questions)
    unit = source.units[-1]
    trainable = set(target.trainable_state())
    with torch.no_grad():
        for name, param in target.named_parameters():
            if name in trainable:
                param.add_(torch.randn(param.shape, generator=torch.Generator().manual_seed(0)))
    assert not torch.allclose(source(**inputs), target(**inputs))

    state = source.trainable_state()
    partial = source.trainable_state([unit], include_head=False)
    target.load_trainable_state(state)

    assert set(partial) == set(source.unit_parameter_names()[unit])
    assert all(tensor.device.type == "cpu" and not tensor.requires_grad for tensor in state.values())
    assert torch.equal(source(**inputs), target(**inputs))
    with pytest.raises(KeyError, match="not.a.tensor"):
        target.load_trainable_state({"not.a.tensor": torch.zeros(1)})
    with pytest.raises(KeyError, match="nope"):
        source.trainable_state(["nope"])
    counts = source.num_unit_parameters()
    assert counts[unit] == sum(tensor.numel() for tensor in partial.values())


def test_adapter_mode_lora_on_every_unit_linear_and_frozen_base(family: str) -> None:
    model = _model(family, "adapter")
    owned = model.unit_parameter_names()

    for unit in model.unit_specs:
        block = model.backbone.get_submodule(unit.module_path)
        linears = [name for name, module in block.named_modules()
                   if isinstance(module, nn.Linear) and ".lora_" not in f".{name}" and not name.endswith("base_layer")]
        assert linears == [] and owned[unit.name]
        assert all(".lora_A." in name or ".lora_B." in name for name in owned[unit.name])
    trainable = {name for name, param in model.named_parameters() if param.requires_grad}
    assert all(".lora_" in name or name.startswith("head.") for name in trainable)


def test_adapter_is_identity_at_init_and_state_round_trip_reproduces_outputs(family: str, examples) -> None:
    images, questions, _ = examples
    base, adapted = _model(family), _model(family, "adapter")
    inputs = base.encode(images, questions)
    assert torch.equal(base(**inputs), adapted(**inputs))

    unit = adapted.units[len(adapted.units) // 2]
    with torch.no_grad():
        for name, param in adapted.named_parameters():
            if name in adapted.unit_parameter_names()[unit] and ".lora_B." in name:
                param.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(1))
    fresh = _model(family, "adapter")
    assert not torch.allclose(fresh(**inputs), adapted(**inputs))

    fresh.load_trainable_state(adapted.trainable_state())

    assert torch.equal(fresh(**inputs), adapted(**inputs))


@pytest.mark.parametrize("unit_mode", ["layer", "adapter"])
def test_training_one_unit_changes_only_its_tensors(family: str, unit_mode: str, examples) -> None:
    images, questions, answers = examples
    model = _model(family, unit_mode)
    unit = model.units[1]
    model.set_trainable([name == unit for name in model.units], train_head=False)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}

    train_epochs(model, encode_examples(model, images, questions, answers), epochs=2, batch_size=4,
                 lr=1e-2, generator=torch.Generator().manual_seed(0))

    changed = {name for name, tensor in model.state_dict().items() if not torch.equal(tensor, before[name])}
    assert changed and changed <= set(model.unit_parameter_names()[unit])
