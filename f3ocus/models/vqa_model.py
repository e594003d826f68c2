"""`VqaModel`: a VLM backbone + a closed-set answer head, with per-unit trainable state.

It owns what the federated code does to a model: which tensors belong to which selectable unit in
the current mode ("layer": the block's own weights; "adapter": the LoRA A/B tensors injected once
into every linear layer of every unit; "bottleneck", "layernorm", "bias", "prompt": the PEFT baselines of
`f3ocus.models.peft_modes`), switching `requires_grad` for a round's mask, and reading /
writing the flat state of selected units (the only thing clients and server exchange). The backbone
stays a plain transformers model (LoRA is injected in place, no PeftModel wrapper), so family `pool`
functions and `save_pretrained` see the same module tree in every mode.

Multi-label classification (docs/METHOD.md §5 T4-T6): a model built with `findings` has a second head,
`multilabel_head` (one logit per finding, trained with binary cross-entropy). Which head answers is
decided by the inputs: encoded multi-label rows carry the marker `MULTILABEL_INPUT` (a (B,) bool tensor,
all True; `f3ocus.models.training.encode_examples` adds it), and `model(**inputs)` then returns the
multi-label logits (B, n_findings); without it, the answer logits (B, n_answers). So every caller of
`model(**inputs)` (training, importance scorers, LNTK's logit kernel) serves both tasks unchanged; only the
loss differs (`f3ocus.models.losses`). Both heads are in the "head" group; a client trains and uploads
only its own task's head (`task_head_names`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from peft import LoraConfig, inject_adapter_in_model
from PIL import Image
from torch import nn

from f3ocus.models._rng import isolated_rng
from f3ocus.models.catalog import selectable_units
from f3ocus.models.family import FamilySpec
from f3ocus.models.peft_modes import (BOTTLENECK, DUAL_ADAPTER, PERSONAL_MARKER, PROMPT, UNIT_MODES, ModeSettings, UnitMode,
                                      attach_bottleneck_adapters, attach_prompt, check_unit_tensors, peft_unit_tensors)
from f3ocus.models.units import UnitSpec, discover_units

HEAD = "head"
MULTILABEL_HEAD = "multilabel_head"
MULTILABEL_INPUT = "multilabel"  # marker key of encoded multi-label rows: (B,) bool, all True
TASK_VQA, TASK_MULTILABEL = "vqa", "multilabel"
_MULTILABEL_SEED_OFFSET = 1_000_003  # the multi-label head's init stream, so it copies no row of `head`
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
        unit_mode: "layer", "adapter" or a PEFT mode ("bottleneck", "layernorm", "bias", "prompt").
        units: unit names in fixed order (index = `layer_idx` of masks and scores).
        unit_specs: the same units with their module paths in the backbone.
        answers: the closed answer set; logit j scores `answers[j]` (may be empty when `findings` is not).
        findings: the multi-label classes; multi-label logit j scores `findings[j]` (empty: no such head).
        backbone: the transformers model (LoRA injected in place in adapter mode).
        head: the answer head (None without answers).
        multilabel_head: Linear(feature_dim, n_findings) (None without findings).
        bottleneck: bottleneck mode's adapters (ModuleDict, one per unit), else None.
        prompt: prompt mode's `PromptContext` (learned context vectors), else None.
        processor: the family's transformers processor.
    """

    def __init__(self, spec: FamilySpec, backbone: nn.Module, processor: Any, answers: Sequence[str], *,
                 unit_mode: UnitMode = "layer", lora: LoraSettings | None = None,
                 modes: ModeSettings | None = None, seed: int = 0, findings: Sequence[str] = (),
                 selectable: Sequence[str] | None = None) -> None:
        """Wrap `backbone`; in adapter mode inject LoRA into every unit; create a seeded head.

        Args:
            spec: the backbone's family.
            backbone: transformers model built by `spec` (tiny preset or `from_pretrained`).
            processor: the matching processor.
            answers: closed answer set (unique; non-empty unless `findings` is given).
            unit_mode: one of `UNIT_MODES` ("layer", "adapter", or a PEFT mode of `peft_modes`).
            lora: LoRA settings for adapter mode (default `LoraSettings()`).
            modes: bottleneck width / prompt length of the PEFT modes (default `ModeSettings()`).
            seed: seeds the head init, LoRA A, bottleneck W_down and prompt vectors.
            findings: multi-label classes (unique); non-empty adds `multilabel_head`.
            selectable: stacks whose blocks are units (None = every discovered unit); blocks of other stacks
                are frozen, get no adapters and are never offered to a selector (`catalog.selectable_units`).

        Raises:
            ValueError: bad unit_mode, duplicated answers or findings, neither answers nor findings, a mode
                in which no unit owns a tensor.
        """
        super().__init__()
        if unit_mode not in UNIT_MODES:
            raise ValueError(f"unit_mode must be one of {UNIT_MODES}, got {unit_mode!r}")
        if not (answers or findings) or len(set(answers)) != len(answers) or len(set(findings)) != len(findings):
            raise ValueError("answers must be a non-empty sequence of unique strings (or empty with findings); "
                             "findings must be unique")
        self.spec = spec
        self.family = spec.name
        self.unit_mode: UnitMode = unit_mode
        self.answers = tuple(answers)
        self.findings = tuple(findings)
        self.processor = processor
        discovered = {unit.name: unit for unit in discover_units(backbone, spec)}
        self.unit_specs = tuple(discovered[name] for name in selectable_units(list(discovered), selectable))
        self.units = tuple(unit.name for unit in self.unit_specs)
        if unit_mode == "adapter":
            _inject_lora(backbone, self.unit_specs, lora or LoraSettings(), seed)
        self.backbone = backbone
        # DEVIATION: every family answers through a closed-set linear head on pooled features; the
        # paper's generative VLMs (LLaVA-1.5, BLIP-2) decode free text. Same head for all families
        # keeps accuracy comparable across them and the LNTK outputs f = answer logits well defined.
        feature_dim = spec.feature_dim(backbone)
        self.head = _seeded_head(feature_dim, len(self.answers), seed) if self.answers else None
        self.multilabel_head = (_seeded_head(feature_dim, len(self.findings), seed + _MULTILABEL_SEED_OFFSET)
                                if self.findings else None)
        modes = modes or ModeSettings()
        self.bottleneck = (attach_bottleneck_adapters(spec, backbone, processor, self.unit_specs, modes.bottleneck_dim,
                                                      seed, dual=unit_mode == DUAL_ADAPTER)
                           if unit_mode in ("bottleneck", DUAL_ADAPTER) else None)
        self.prompt = attach_prompt(backbone, processor, modes.prompt_length, seed) if unit_mode == "prompt" else None
        self._unit_names = self._collect_unit_parameter_names()
        check_unit_tensors(self.family, unit_mode, self._unit_names, self.units)
        self.set_trainable([True] * len(self.units))

    # ------------------------------------------------------------------ inputs and outputs
    def encode(self, images: Sequence[Image.Image], questions: Sequence[str]) -> dict[str, torch.Tensor]:
        """Processor call for a batch: B images and B questions -> backbone inputs (batch first)."""
        if len(images) != len(questions):
            raise ValueError(f"got {len(images)} images but {len(questions)} questions")
        if self.prompt is not None:  # prompt mode: P placeholder tokens in front of every question
            questions = self.prompt.prefixed(questions)
        return self.spec.encode(self.processor, images, questions)

    def pooled_features(self, **inputs: torch.Tensor) -> torch.Tensor:
        """Pooled multimodal features (B, feature_dim) the heads read (a `MULTILABEL_INPUT` marker is dropped)."""
        return self.spec.pool(self.backbone, {key: value for key, value in inputs.items() if key != MULTILABEL_INPUT})

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        """Answer logits (B, n_answers) for encoded inputs (see `encode`), or multi-label logits (B, n_findings)
        when they carry the `MULTILABEL_INPUT` marker.

        Raises:
            ValueError: the inputs' task has no head in this model, or the marker is not all True (a mixed batch).
        """
        return self._task_head(inputs.get(MULTILABEL_INPUT))(self.pooled_features(**inputs))

    def _task_head(self, marker: torch.Tensor | None) -> nn.Linear:
        if marker is None:
            if self.head is None:
                raise ValueError(f"{self.family}: no answer head (built with findings only); multi-label inputs "
                                 f"carry the {MULTILABEL_INPUT!r} marker")
            return self.head
        if self.multilabel_head is None:
            raise ValueError(f"{self.family}: multi-label inputs, but the model was built without findings")
        if not bool(marker.all()):
            raise ValueError("a batch mixes multi-label and VQA rows; encode and score each task separately")
        return self.multilabel_head

    @property
    def task_kinds(self) -> tuple[str, ...]:
        """The tasks this model has a head for: ("vqa",), ("multilabel",) or both."""
        return tuple(kind for kind, head in ((TASK_VQA, self.head), (TASK_MULTILABEL, self.multilabel_head))
                     if head is not None)

    # ------------------------------------------------------------------ units and trainable state
    def unit_parameter_names(self) -> dict[str, list[str]]:
        """Unit name -> names (as in `named_parameters()`) of its trainable tensors in this mode.

        Layer mode: the block's own weights; adapter mode: the LoRA A/B tensors inside the block; PEFT
        modes: see `f3ocus.models.peft_modes` (a unit may own no tensor, e.g. bias mode on LLaMA blocks).
        The extra key "head" lists the heads' parameters (answer head and multi-label head, whichever
        exist; in prompt mode also the prompt vectors).
        """
        return {unit: list(names) for unit, names in self._unit_names.items()}

    def num_unit_parameters(self) -> dict[str, int]:
        """Unit name (and "head") -> number of trainable scalars in this mode."""
        params = dict(self.named_parameters())
        return {unit: sum(params[name].numel() for name in names) for unit, names in self._unit_names.items()}

    def task_head_names(self, task_kind: str) -> list[str]:
        """The "head" group tensors a client of `task_kind` ("vqa" | "multilabel") trains and uploads: all of
        the group but the other task's head.

        Raises:
            ValueError: an unknown task kind.
        """
        if task_kind not in (TASK_VQA, TASK_MULTILABEL):
            raise ValueError(f"task kind must be {TASK_VQA!r} or {TASK_MULTILABEL!r}, got {task_kind!r}")
        other = (MULTILABEL_HEAD if task_kind == TASK_VQA else HEAD) + "."
        return [name for name in self._unit_names[HEAD] if not name.startswith(other)]

    def set_trainable(self, mask: Sequence[bool], train_head: bool = True, task_kind: str | None = None) -> None:
        """Set `requires_grad` True exactly for the selected units' tensors (+ head); freeze the rest.

        Args:
            mask: (L,) bools aligned with `units`.
            train_head: whether the head is trainable too.
            task_kind: with `train_head`, only this task's head (`task_head_names`); None = every head.

        Raises:
            ValueError: `mask` length differs from the number of units.
        """
        if len(mask) != len(self.units):
            raise ValueError(f"mask has {len(mask)} entries, model has {len(self.units)} units")
        selected = {name for unit, keep in zip(self.units, mask) if keep for name in self._unit_names[unit]}
        if train_head:
            selected.update(self._unit_names[HEAD] if task_kind is None else self.task_head_names(task_kind))
        for name, param in self.named_parameters():
            param.requires_grad_(name in selected)

    def trainable_state(self, units: Iterable[str] | None = None, include_head: bool = True,
                        task_kind: str | None = None) -> dict[str, torch.Tensor]:
        """Flat {parameter name: detached CPU clone} of the given units' tensors (all units if None), + the
        head group (`include_head`; only `task_kind`'s head when given, see `task_head_names`).

        Raises:
            KeyError: an unknown unit name.
        """
        wanted = list(self.units if units is None else units)
        unknown = [unit for unit in wanted if unit not in self.units]
        if unknown:
            raise KeyError(f"unknown unit(s) {unknown}; known: {list(self.units)}")
        names = [name for unit in wanted for name in self._unit_names[unit]]
        if include_head:
            names += self._unit_names[HEAD] if task_kind is None else self.task_head_names(task_kind)
        params = dict(self.named_parameters())
        return {name: params[name].detach().to("cpu", copy=True) for name in names}

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

    # ------------------------------------------------------------------ client state (dual_adapter mode)
    def client_state_names(self) -> list[str]:
        """Names of the tensors a client keeps as its own across rounds: the personal adapters in
        "dual_adapter" mode (FedDAT), none in the other modes. Never a unit's or the head's."""
        if self.unit_mode != DUAL_ADAPTER:
            return []
        return [name for name, _ in self.named_parameters() if name.startswith(f"{BOTTLENECK}.")
                and PERSONAL_MARKER in name]

    def client_state(self) -> dict[str, torch.Tensor]:
        """{name: detached CPU clone} of the client-state tensors (`client_state_names`)."""
        params = dict(self.named_parameters())
        return {name: params[name].detach().to("cpu", copy=True) for name in self.client_state_names()}

    def load_client_state(self, state: dict[str, torch.Tensor]) -> None:
        """Copy a client's state (all of `client_state_names`, nothing else) into the model, in place.

        Raises:
            KeyError: names missing from `state` or not client-state tensors of this model.
            ValueError: a tensor whose shape differs from the model's.
        """
        expected = set(self.client_state_names())
        if set(state) != expected:
            raise KeyError(f"client state must hold exactly the {len(expected)} tensors of {self.unit_mode} mode; "
                           f"missing {sorted(expected - set(state))[:3]}, unknown {sorted(set(state) - expected)[:3]}")
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
            elif self.unit_mode != "layer":
                inside = peft_unit_tensors(self.unit_mode, self.backbone, unit, prefix, names)
            owned[unit.name] = inside
        # The prompt vectors are trained with the head, by every client every round (PromptFL).
        owned[HEAD] = [name for name in names if name.startswith((HEAD + ".", MULTILABEL_HEAD + ".", PROMPT + "."))]
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
