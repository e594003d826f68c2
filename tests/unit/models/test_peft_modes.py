"""PEFT unit modes (bottleneck, layernorm, bias, prompt) on the tiny scratch presets of every family."""

from __future__ import annotations

import copy
from typing import get_args

import pytest
import torch
from torch import nn

from f3ocus.config.schema import UNIT_MODES as SCHEMA_UNIT_MODES
from f3ocus.config import load_config
from f3ocus.config.schema import ConfigError, ModelConfig
from f3ocus.config.validate import validate
from f3ocus.importance.grad_norm import GradNormScorer
from f3ocus.models.family import FamilySpec, StackRule
from f3ocus.models.peft_modes import UNIT_MODES, UnitMode, _placeholder, check_unit_tensors, unit_output_dims
from f3ocus.models.registry import build_vqa_model
from f3ocus.models.units import discover_units
from f3ocus.models.vqa_model import HEAD, VqaModel

from .conftest import ANSWERS

ALL_FAMILIES = ("llava", "blip2", "blip", "vilt")
PEFT_MODES = ("bottleneck", "layernorm", "bias", "prompt")
HIDDEN = 128  # every tiny preset's hidden width


def _model(family: str, unit_mode: str, seed: int = 0, **kwargs) -> VqaModel:
    return build_vqa_model(family, "scratch", answers=ANSWERS, unit_mode=unit_mode, seed=seed, **kwargs)


def _trainable(model: nn.Module) -> set[str]:
    return {name for name, param in model.named_parameters() if param.requires_grad}


def _perturb(model: VqaModel, seed: int = 1) -> None:
    """Move every trainable tensor off its init (so zero-initialised up-projections become live)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name in sorted(_trainable(model)):
            param = dict(model.named_parameters())[name]
            param.add_(torch.randn(param.shape, generator=generator) * 0.05)


# ------------------------------------------------------------------------------------------ config
def test_schema_and_model_agree_on_the_unit_modes() -> None:
    assert SCHEMA_UNIT_MODES == UNIT_MODES == get_args(UnitMode)
    assert set(PEFT_MODES) <= set(UNIT_MODES)
    assert ModelConfig(unit_mode="prompt", prompt_length=2, bottleneck_dim=4).prompt_length == 2
    with pytest.raises(ConfigError, match="unit_mode"):
        ModelConfig(unit_mode="lora")
    with pytest.raises(ConfigError, match="prompt_length"):
        ModelConfig(prompt_length=0)
    with pytest.raises(ConfigError, match="bottleneck_dim"):
        ModelConfig(bottleneck_dim=0)


def test_prompt_mode_needs_the_head_trained() -> None:
    overrides = ["model.unit_mode=prompt", "federation.train_head=false"]

    with pytest.raises(ConfigError, match="federation.train_head"):
        validate(load_config("configs/smoke/cpu_tiny.yaml", overrides))
    assert validate(load_config("configs/smoke/cpu_tiny.yaml", overrides[:1]))  # the unit names


# ------------------------------------------------------------------------------------------ all modes
@pytest.mark.parametrize("family", ALL_FAMILIES)
@pytest.mark.parametrize("unit_mode", ["bottleneck", "layernorm", "bias"])
def test_mode_leaves_the_model_unchanged_at_init(family: str, unit_mode: str, examples) -> None:
    images, questions, _ = examples
    reference = _model(family, "layer")
    model = _model(family, unit_mode)

    inputs = reference.encode(images, questions)
    with torch.no_grad():
        assert torch.equal(model(**inputs), reference(**inputs))


@pytest.mark.parametrize("family", ALL_FAMILIES)
@pytest.mark.parametrize("unit_mode", PEFT_MODES)
def test_exactly_the_modes_tensors_are_trainable(family: str, unit_mode: str) -> None:
    model = _model(family, unit_mode)
    owned = model.unit_parameter_names()
    head = set(owned[HEAD])
    modules = dict(model.named_modules())

    model.set_trainable([True] * len(model.units))

    in_units = {name for unit in model.units for name in owned[unit]}
    assert _trainable(model) == in_units | head
    if unit_mode == "bottleneck":
        assert all(name.startswith("bottleneck.") for name in in_units)
        assert {len(owned[unit]) for unit in model.units} == {4}  # down/up weight and bias
    elif unit_mode == "bias":
        assert in_units and all(name.endswith(".bias") for name in in_units)
    elif unit_mode == "layernorm":
        assert in_units and all("Norm" in type(modules[name.rsplit(".", 1)[0]]).__name__ for name in in_units)
    else:
        assert not in_units and head == {"head.weight", "head.bias", "prompt.vectors"}
    model.set_trainable([False] * len(model.units))
    assert _trainable(model) == head  # the prompt vectors train with the head
    model.set_trainable([False] * len(model.units), train_head=False)
    assert _trainable(model) == set()


@pytest.mark.parametrize("family", ALL_FAMILIES)
@pytest.mark.parametrize("unit_mode", PEFT_MODES)
def test_gradients_reach_every_unit_and_the_head(family: str, unit_mode: str, examples) -> None:
    images, questions, answers = examples
    model = _model(family, unit_mode)
    _perturb(model)
    labels = torch.tensor([ANSWERS.index(answer) for answer in answers])
    owned = model.unit_parameter_names()

    loss = nn.functional.cross_entropy(model(**model.encode(images, questions)), labels)
    loss.backward()

    params = dict(model.named_parameters())
    assert all(params[name].grad is not None for name in _trainable(model))
    for unit in [*model.units, HEAD]:
        if owned[unit]:
            assert sum(float(params[name].grad.abs().sum()) for name in owned[unit]) > 0, unit


@pytest.mark.parametrize("unit_mode", PEFT_MODES)
def test_trainable_state_round_trips_between_models(family: str, unit_mode: str, examples) -> None:
    images, questions, _ = examples
    source, target = _model(family, unit_mode), _model(family, unit_mode)
    _perturb(source)
    inputs = source.encode(images, questions)

    state = source.trainable_state()
    target.load_trainable_state(state)

    assert set(state) == {name for names in source.unit_parameter_names().values() for name in names}
    with torch.no_grad():
        assert torch.equal(target(**inputs), source(**inputs))


@pytest.mark.parametrize("unit_mode", ["bottleneck", "prompt"])
def test_state_dict_and_deepcopy_carry_the_added_modules(family: str, unit_mode: str, examples) -> None:
    images, questions, _ = examples
    source, target = _model(family, unit_mode), _model(family, unit_mode, seed=3)
    _perturb(source)
    inputs = source.encode(images, questions)
    with torch.no_grad():
        expected = source(**inputs)

    target.load_state_dict(source.state_dict())
    twin = copy.deepcopy(source)
    _perturb(twin, seed=7)  # the copy's hooks must use the copy's modules, not the source's

    assert any(key.startswith(f"{unit_mode}.") for key in source.state_dict())
    with torch.no_grad():
        assert torch.equal(target(**inputs), expected)
        assert torch.equal(source(**inputs), expected)
        assert not torch.allclose(twin(**inputs), expected)


# ------------------------------------------------------------------------------------------ bottleneck
def test_bottleneck_parameter_count_by_hand() -> None:
    model = _model("llava", "bottleneck", bottleneck_dim=4)
    sizes = model.num_unit_parameters()
    d, r = HIDDEN, 4

    assert {sizes[unit] for unit in model.units} == {2 * d * r + r + d}  # 1,156 per unit
    assert dict(model.bottleneck["connector"].named_parameters())["down.weight"].shape == (r, d)
    assert sizes[HEAD] == HIDDEN * len(ANSWERS) + len(ANSWERS)


class _ToyBackbone(nn.Module):
    """8-wide stack -> connector 8 -> 12 -> 12-wide stack (tuple outputs); `spare` is never called."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.ModuleList([nn.Linear(8, 8), nn.Linear(8, 8)])
        self.connector = nn.Sequential(nn.Linear(8, 10), nn.ReLU(), nn.Linear(10, 12))
        self.decoder = nn.ModuleList([_TupleBlock(12)])
        self.spare = nn.ModuleList([nn.Sequential(nn.Linear(12, 5), nn.Tanh())])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.encoder:
            x = layer(x)
        x = self.connector(x)
        for layer in self.decoder:
            x = layer(x)[0]
        return x


class _TupleBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.dense = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.dense(x), None


_TOY = FamilySpec(
    name="toy", model_class=_ToyBackbone, build_tiny=lambda words, size: (_ToyBackbone(), None),
    encode=lambda processor, images, questions: {"x": torch.ones(len(questions), 3, 8)},
    pool=lambda backbone, inputs: backbone(inputs["x"])[:, 0], feature_dim=lambda backbone: 12,
    stacks=(StackRule("enc", r"^encoder$"), StackRule("dec", r"^decoder$"), StackRule("spare", r"^spare$")),
    connector_pattern=r"^connector$")


def test_unit_output_dims_follow_the_dry_run_and_fall_back_to_the_last_linear() -> None:
    backbone = _ToyBackbone()
    units = discover_units(backbone, _TOY)

    dims = unit_output_dims(_TOY, backbone, None, units)

    # dry run: a connector maps 8 -> 12, a tuple output is read at element 0; `spare.0` is never
    # called, so its width comes from its last nn.Linear
    assert dims == {"enc.0": 8, "enc.1": 8, "connector": 12, "dec.0": 12, "spare.0": 5}
    assert not any(module._forward_hooks for module in backbone.modules())  # the recorders are gone


@pytest.mark.parametrize("family", ["llava", "vilt"])
def test_every_bottleneck_adapter_changes_the_logits(family: str, examples) -> None:
    # LLaVA reads the last vision block through transformers' hidden-state capture hooks: the adapter
    # hook must run before them (prepend), else vision.3's adapter would be dead.
    images, questions, _ = examples
    model = _model(family, "bottleneck")
    inputs = model.encode(images, questions)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        before = model(**inputs)
        changed = []
        for adapter in model.bottleneck.values():
            adapter.up.bias.copy_(torch.randn(adapter.up.bias.shape, generator=generator))
            changed.append(not torch.allclose(model(**inputs), before))
            adapter.up.bias.zero_()

    assert changed == [True] * len(model.units)


# ------------------------------------------------------------------------------------------ bias / layernorm
def test_bias_mode_on_llama_blocks_owns_no_tensor_and_everything_copes(examples) -> None:
    images, questions, answers = examples
    model = _model("llava", "bias")
    owned = model.unit_parameter_names()
    empty = [unit for unit in model.units if not owned[unit]]
    labels = torch.tensor([ANSWERS.index(answer) for answer in answers])
    inputs = model.encode(images, questions)

    state = model.trainable_state(empty, include_head=False)
    model.load_trainable_state(state)
    model.set_trainable([unit in empty for unit in model.units], train_head=False)
    scores = GradNormScorer().score(model, inputs, labels)

    assert empty == ["language.0", "language.1", "language.2", "language.3"]  # LLaMA: no bias at all
    assert owned["connector"] == ["backbone.model.multi_modal_projector.linear_1.bias",
                                  "backbone.model.multi_modal_projector.linear_2.bias"]
    assert state == {} and _trainable(model) == set()
    assert all(model.num_unit_parameters()[unit] == 0 for unit in empty)
    assert scores.sum() == pytest.approx(1.0)
    assert all(scores[model.units.index(unit)] == 0 for unit in empty)


def test_layernorm_mode_owns_the_rmsnorm_weights_of_llama_blocks() -> None:
    model = _model("llava", "layernorm")
    owned = model.unit_parameter_names()

    assert owned["language.0"] == ["backbone.model.language_model.layers.0.input_layernorm.weight",
                                   "backbone.model.language_model.layers.0.post_attention_layernorm.weight"]
    assert owned["connector"] == []  # the projector has no norm
    assert model.num_unit_parameters()["vision.0"] == 4 * HIDDEN  # two LayerNorms, weight + bias


def test_a_mode_in_which_no_unit_owns_a_tensor_is_rejected() -> None:
    owned = {"language.0": [], "language.1": [], HEAD: ["head.weight"]}

    with pytest.raises(ValueError, match="'bias'.*'tinyllama'.*layernorm"):
        check_unit_tensors("tinyllama", "bias", owned, ["language.0", "language.1"])
    check_unit_tensors("tinyllama", "prompt", owned, ["language.0", "language.1"])  # by design


# ------------------------------------------------------------------------------------------ prompt
@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_prompt_vectors_replace_the_placeholder_embeddings(family: str, examples) -> None:
    images, questions, _ = examples
    model = _model(family, "prompt", prompt_length=3)
    prompt = model.prompt
    embedding = model.backbone.get_input_embeddings()
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    # clone: BLIP's text embeddings add the position embeddings in place into this output
    embedding.register_forward_hook(lambda module, args, output: seen.append((args[0], output.clone())))

    inputs = model.encode(images, questions)
    with torch.no_grad():
        before = model(**inputs)
        prompt.vectors.add_(torch.randn(prompt.vectors.shape, generator=torch.Generator().manual_seed(0)))
        after = model(**inputs)

    input_ids, output = seen[-1]
    slots = input_ids == prompt.placeholder_id  # (B, T)
    assert prompt.placeholder == model.processor.tokenizer.mask_token
    assert slots.sum(dim=1).tolist() == [3] * len(images)
    rows, cols = slots.nonzero(as_tuple=True)
    assert torch.equal(output[rows, cols], prompt.vectors.detach().repeat(len(images), 1))
    with torch.no_grad():
        assert torch.equal(output[~slots], embedding.weight[input_ids[~slots]])
    assert not torch.allclose(before, after)


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_prompt_vectors_receive_gradients(family: str, examples) -> None:
    images, questions, _ = examples
    model = _model(family, "prompt")
    model.set_trainable([False] * len(model.units))

    model(**model.encode(images, questions)).sum().backward()

    assert model.prompt.vectors.grad is not None
    assert bool((model.prompt.vectors.grad.abs().sum(dim=1) > 0).all())  # every one of the P vectors
    assert "prompt.vectors" in model.trainable_state([])


def test_prompt_mode_rejects_inputs_without_placeholders(examples) -> None:
    images, questions, _ = examples
    plain = _model("vilt", "layer").encode(images, questions)
    model = _model("vilt", "prompt")

    with pytest.raises(ValueError, match="placeholders"):
        model(**plain)
    assert GradNormScorer().score(model, model.encode(images, questions),
                                  torch.zeros(len(images), dtype=torch.long)).tolist() == [1 / 6] * 6


class _OptLikeTokenizer:
    """No mask token; unk shares its id with bos/eos ("</s>" = 2), like OPT's GPT-2 BPE tokenizer."""

    mask_token = None
    unk_token = "</s>"
    bos_token_id = eos_token_id = 2
    pad_token_id = 1

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        return {"input_ids": [2] if text == "</s>" else [7, 8]}


def test_placeholder_is_the_mask_token_else_an_unk_of_its_own() -> None:
    tokenizer = _model("llava", "layer").processor.tokenizer

    assert _placeholder(tokenizer) == ("[MASK]", tokenizer.mask_token_id)
    with pytest.raises(ValueError, match="placeholder"):
        _placeholder(_OptLikeTokenizer())
