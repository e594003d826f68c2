"""`VqaModel`: a VLM backbone + a closed-set answer head, with per-unit trainable state.

It owns what the federated code does to a model: which tensors belong to which selectable unit in
the current mode ("layer": the block's own weights; "adapter": the LoRA A/B tensors injected once
into every linear layer of every unit), switching `requires_grad` for a round's mask, and reading /
writing the flat state of selected units (the only thing clients and server exchange). The backbone
stays a plain transformers model (LoRA is injected in place, no PeftModel wrapper), so family `pool`
functions and `save_pretrained` see the same module tree in both modes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from peft import LoraConfig, inject_adapter_in_model
from PIL import Image
from torch import nn

from f3ocus.models._rng import isolated_rng
from f3ocus.models.family import FamilySpec
from f3ocus.models.units import UnitSpec, discover_units

UnitMode = Literal["layer", "adapter"]
HEAD = "head"
BACKBONE = "backbone"
LORA_MARKER = ".lora_"


@dataclass(frozen=True)
class LoraSettings:
    """LoRA hyper-parameters of adapter mode (`peft.LoraConfig` r / lora_alpha / lora_dropout)."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.0


class VqaModel(nn.Module):
    """Backbone + `head` (Linear(feature_dim, n_answers)) + processor.

    Attributes:
        family: family name, e.g. "llava".
        unit_mode: "layer" or "adapter".
        units: unit names in fixed order (index = `layer_idx` of masks and scores).
        unit_specs: the same units with their module paths in the backbone.
        answers: the closed answer set; logit j scores `answers[j]`.
        backbone: the transformers model (LoRA injected in place in adapter mode).
        head: the answer head.
        processor: the family's transformers processor.
    """

    def __init__(self, spec: FamilySpec, backbone: nn.Module, processor: Any, answers: Sequence[str], *,
                 unit_mode: UnitMode = "layer", lora: LoraSettings | None = None, seed: int = 0) -> None:
        """Wrap `backbone`; in adapter mode inject LoRA into every unit; create a seeded head.

        Args:
            spec: the backbone's family.
            backbone: transformers model built by `spec` (tiny preset or `from_pretrained`).
            processor: the matching processor.
            answers: closed answer set (unique, non-empty).
            unit_mode: "layer" or "adapter".
            lora: LoRA settings for adapter mode (default `LoraSettings()`).
            seed: seeds the head init and LoRA A init.

        Raises:
            ValueError: bad unit_mode, empty or duplicated answers.
        """
        super().__init__()
        if unit_mode not in ("layer", "adapter"):
            raise ValueError(f"unit_mode must be 'layer' or 'adapter', got {unit_mode!r}")
        if not answers or len(set(answers)) != len(answers):
            raise ValueError("answers must be a non-empty sequence of unique strings")
        self.spec = spec
        self.family = spec.name
        self.unit_mode: UnitMode = unit_mode
        self.answers = tuple(answers)
        self.processor = processor
        self.unit_specs = tuple(discover_units(backbone, spec))
        self.units = tuple(unit.name for unit in self.unit_specs)
        if unit_mode == "adapter":
            _inject_lora(backbone, self.unit_specs, lora or LoraSettings(), seed)
        self.backbone = backbone
        # DEVIATION: every family answers through a closed-set linear head on pooled features; the
        # paper's generative VLMs (LLaVA-1.5, BLIP-2) decode free text. Same head for all families
        # keeps accuracy comparable across them and the LNTK outputs f = answer logits well defined.
        self.head = _seeded_head(spec.feature_dim(backbone), len(self.answers), seed)
        self._unit_names = self._collect_unit_parameter_names()
        self.set_trainable([True] * len(self.units))

    # ------------------------------------------------------------------ inputs and outputs
    def encode(self, images: Sequence[Image.Image], questions: Sequence[str]) -> dict[str, torch.Tensor]:
        """Processor call for a batch: B images and B questions -> backbone inputs (batch first)."""
        if len(images) != len(questions):
            raise ValueError(f"got {len(images)} images but {len(questions)} questions")
        return self.spec.encode(self.processor, images, questions)

    def pooled_features(self, **inputs: torch.Tensor) -> torch.Tensor:
        """Pooled multimodal features (B, feature_dim) that the head reads."""
        return self.spec.pool(self.backbone, inputs)

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        """Answer logits (B, n_answers) for encoded inputs (see `encode`)."""
        return self.head(self.pooled_features(**inputs))

    # ------------------------------------------------------------------ units and trainable state
    def unit_parameter_names(self) -> dict[str, list[str]]:
        """Unit name -> names (as in `named_parameters()`) of its trainable tensors in this mode.

        Layer mode: the block's own weights; adapter mode: the LoRA A/B tensors inside the block.
        The extra key "head" lists the head's parameters.
        """
        return {unit: list(names) for unit, names in self._unit_names.items()}

    def num_unit_parameters(self) -> dict[str, int]:
        """Unit name (and "head") -> number of trainable scalars in this mode."""
        params = dict(self.named_parameters())
        return {unit: sum(params[name].numel() for name in names) for unit, names in self._unit_names.items()}

    def set_trainable(self, mask: Sequence[bool], train_head: bool = True) -> None:
        """Set `requires_grad` True exactly for the selected units' tensors (+ head); freeze the rest.

        Args:
            mask: (L,) bools aligned with `units`.
            train_head: whether the head is trainable too.

        Raises:
            ValueError: `mask` length differs from the number of units.
        """
        if len(mask) != len(self.units):
            raise ValueError(f"mask has {len(mask)} entries, model has {len(self.units)} units")
        selected = {name for unit, keep in zip(self.units, mask) if keep for name in self._unit_names[unit]}
        if train_head:
            selected.update(self._unit_names[HEAD])
        for name, param in self.named_parameters():
            param.requires_grad_(name in selected)

    def trainable_state(self, units: Iterable[str] | None = None, include_head: bool = True) -> dict[str, torch.Tensor]:
        """Flat {parameter name: detached CPU clone} of the given units' tensors (all units if None).

        Raises:
            KeyError: an unknown unit name.
        """
        wanted = list(self.units if units is None else units)
        unknown = [unit for unit in wanted if unit not in self.units]
        if unknown:
            raise KeyError(f"unknown unit(s) {unknown}; known: {list(self.units)}")
        if include_head:
            wanted.append(HEAD)
        params = dict(self.named_parameters())
        return {name: params[name].detach().to("cpu", copy=True)
                for unit in wanted for name in self._unit_names[unit]}

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        """Copy a (partial) `trainable_state` into this model's tensors, in place.

        Raises:
            KeyError: names that are no unit's or the head's tensor in this mode (all listed).
            ValueError: a tensor whose shape differs from the model's.
        """
        allowed = {name for names in self._unit_names.values() for name in names}
        unknown = sorted(set(state) - allowed)
        if unknown:
            raise KeyError(f"unknown tensor name(s) for {self.family} ({self.unit_mode} mode): {unknown}")
        params = dict(self.named_parameters())
        with torch.no_grad():
            for name, value in state.items():
                if params[name].shape != value.shape:
                    raise ValueError(f"{name}: shape {tuple(value.shape)} != model {tuple(params[name].shape)}")
                params[name].copy_(value.to(params[name].device, params[name].dtype))

    def _collect_unit_parameter_names(self) -> dict[str, list[str]]:
        """Unit -> parameter names owned in this mode; "head" -> head parameter names."""
        names = [name for name, _ in self.named_parameters()]
        owned: dict[str, list[str]] = {}
        for unit in self.unit_specs:
            prefix = f"{BACKBONE}.{unit.module_path}."
            inside = [name for name in names if name.startswith(prefix)]
            if self.unit_mode == "adapter":
                inside = [name for name in inside if LORA_MARKER in name]
            owned[unit.name] = inside
        owned[HEAD] = [name for name in names if name.startswith(HEAD + ".")]
        return owned


def _seeded_head(feature_dim: int, n_answers: int, seed: int) -> nn.Linear:
    """Linear(feature_dim, n_answers), weight ~ N(0, 0.02) from a seeded generator, bias 0."""
    head = nn.Linear(feature_dim, n_answers)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        nn.init.normal_(head.weight, mean=0.0, std=0.02, generator=generator)
        head.bias.zero_()
    return head


def lora_target_regex(backbone: nn.Module, units: Sequence[UnitSpec]) -> str:
    """A `target_modules` regex (peft full-matches it) naming every nn.Linear inside every unit.

    Built from the discovered unit paths rather than `layers_to_transform`, which would hit both
    stacks of a two-tower model.
    """
    roots = tuple(unit.module_path + "." for unit in units)
    paths = {unit.module_path for unit in units}  # a unit may itself be one Linear (BLIP-2's connector)
    linears = [path for path, module in backbone.named_modules()
               if isinstance(module, nn.Linear) and (path in paths or path.startswith(roots))]
    if not linears:
        raise ValueError("no nn.Linear inside any unit: adapter mode has nothing to adapt")
    return "^(?:" + "|".join(re.escape(path) for path in linears) + ")$"


def _inject_lora(backbone: nn.Module, units: Sequence[UnitSpec], lora: LoraSettings, seed: int) -> None:
    """Inject LoRA in place into all units' linears; B = 0 so the model is unchanged at init."""
    config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                        target_modules=lora_target_regex(backbone, units), bias="none")
    with isolated_rng(seed):  # peft draws LoRA A from the global RNG
        inject_adapter_in_model(config, backbone)
