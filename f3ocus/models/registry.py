"""The family registry and the one entry point that builds a `VqaModel` from a config's model section.

It owns `FAMILIES` (name -> `FamilySpec`), the meaning of a checkpoint string ("scratch" = tiny preset
with seeded random weights; "foundation" = the cached tiny preset pretrained on easy-vqa, built on
first use; "foundation-med" = the same with medical-style VQA in the pretraining mix; anything else = a hub id or local directory for `from_pretrained`; the names and unit tables
that need no transformers live in `catalog`), and `units_from_config`, the meta-device unit listing.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoProcessor

from f3ocus.models._rng import isolated_rng
from f3ocus.models.catalog import (BUILTIN_CHECKPOINTS, DEFAULT_IMAGE_SIZE, FOUNDATION, FOUNDATION_CORPUS, PRESET_PREFIX,
                                   SCRATCH, family_name, list_units)
from f3ocus.models.families.llava import LLAVA, LLAVA24
from f3ocus.models.families.vilt import VILT, VILT12
from f3ocus.models.family import FamilySpec
from f3ocus.models.tokenizer import default_words
from f3ocus.models.units import discover_units
from f3ocus.models.peft_modes import ModeSettings
from f3ocus.models.vqa_model import LoraSettings, UnitMode, VqaModel

_OPTIONAL_FAMILY_MODULES: tuple[str, ...] = ("f3ocus.models.families.blip", "f3ocus.models.families.blip2")


def _optional_families() -> dict[str, FamilySpec]:
    """FamilySpecs exported by family modules that may not exist yet (BLIP, BLIP-2).

    A missing module is skipped; any other import error propagates (a broken family is a bug).
    """
    found: dict[str, FamilySpec] = {}
    for module_name in _OPTIONAL_FAMILY_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
            continue
        for value in vars(module).values():
            if isinstance(value, FamilySpec):
                found[value.name] = value
    return found


FAMILIES: dict[str, FamilySpec] = {LLAVA.name: LLAVA, VILT.name: VILT, **_optional_families(),
                                   LLAVA24.name: LLAVA24, VILT12.name: VILT12}


def list_presets() -> list[str]:
    """Names of the tiny presets, e.g. ["tiny-llava", "tiny-vilt", ...]."""
    return [PRESET_PREFIX + name for name in FAMILIES]


def get_family(family: str) -> FamilySpec:
    """The spec of `family` ("llava" or its preset name "tiny-llava").

    Raises:
        ValueError: unknown family (the message names it and lists the known ones).
    """
    return FAMILIES[family_name(family)]


def build_vqa_model(family: str, checkpoint: str = FOUNDATION, *, answers: Sequence[str],
                    unit_mode: UnitMode = "layer", lora_r: int = 8, lora_alpha: int = 16,
                    lora_dropout: float = 0.0, bottleneck_dim: int = 16, prompt_length: int = 4,
                    image_size: int = DEFAULT_IMAGE_SIZE, seed: int = 0,
                    cache_dir: str | Path | None = None, findings: Sequence[str] = (),
                    selectable: Sequence[str] | None = None) -> VqaModel:
    """Build a `VqaModel` (eval mode; all units + head trainable) with a fresh seeded head.

    Args:
        family: "llava", "vilt", ... or a preset name "tiny-<family>".
        checkpoint: "scratch", "foundation", a hub id or a local directory.
        answers: closed answer set of the head (may be empty when `findings` is given).
        unit_mode: "layer" (units = whole blocks), "adapter" (units = LoRA inside each block), or a PEFT
            mode (`f3ocus.models.peft_modes`): "bottleneck", "layernorm", "bias", "prompt", "dual_adapter".
        lora_r: LoRA rank (adapter mode).
        lora_alpha: LoRA alpha (adapter mode).
        lora_dropout: LoRA dropout (adapter mode).
        bottleneck_dim: bottleneck width r (bottleneck and dual_adapter modes).
        prompt_length: number of learned prompt vectors P (prompt mode).
        image_size: input side in pixels for the tiny presets (ignored for real checkpoints).
        seed: seeds scratch weights, LoRA A, bottleneck adapters, prompt vectors and the head.
        cache_dir: root of the foundation cache (see `f3ocus.models.foundation.foundation_dir`).
        findings: multi-label classes; non-empty adds the multi-label head (`VqaModel.multilabel_head`).
        selectable: the stacks whose blocks are units ("vision", "connector", "language", ...); None = all.
            The other blocks are frozen and are no units (`catalog.selectable_units`).

    Returns:
        The model; `model.units` lists its selectable units.

    Raises:
        ValueError: unknown family.
    """
    spec = get_family(family)
    backbone, processor = load_backbone(spec, checkpoint, image_size=image_size, seed=seed,
                                        cache_dir=cache_dir)
    lora = LoraSettings(r=lora_r, alpha=lora_alpha, dropout=lora_dropout)
    modes = ModeSettings(bottleneck_dim=bottleneck_dim, prompt_length=prompt_length)
    model = VqaModel(spec, backbone, processor, answers, unit_mode=unit_mode, lora=lora, modes=modes, seed=seed,
                     findings=findings, selectable=selectable)
    return model.eval()


def load_backbone(spec: FamilySpec, checkpoint: str, *, image_size: int = DEFAULT_IMAGE_SIZE,
                  seed: int = 0, cache_dir: str | Path | None = None) -> tuple[nn.Module, Any]:
    """(backbone, processor) for a checkpoint string (see `build_vqa_model`)."""
    if checkpoint == SCRATCH:
        with isolated_rng(seed):  # transformers initialises weights from the global RNG
            return spec.build_tiny(default_words(), image_size)
    if checkpoint in FOUNDATION_CORPUS:
        from f3ocus.models.foundation import ensure_foundation  # foundation builds scratch models

        checkpoint = str(ensure_foundation(spec.name, cache_dir, image_size=image_size,
                                           corpus=FOUNDATION_CORPUS[checkpoint]))
    backbone = spec.model_class.from_pretrained(checkpoint, attn_implementation="eager")
    return backbone, AutoProcessor.from_pretrained(checkpoint)


def units_from_config(family: str, checkpoint: str = SCRATCH) -> list[str]:
    """Unit names of a model built on the meta device (no weights): the tiny preset's for "scratch" and
    "foundation", else the architecture in the checkpoint's config. `catalog.list_units` (also exported
    here) is the cheap entry point: it answers built-in checkpoints from a table this function checks.

    Raises:
        ValueError: unknown family; OSError: an unreadable checkpoint config.
    """
    spec = get_family(family)
    with torch.device("meta"):
        if checkpoint in BUILTIN_CHECKPOINTS:
            backbone, _ = spec.build_tiny(default_words(), DEFAULT_IMAGE_SIZE)
        else:
            config = AutoConfig.from_pretrained(checkpoint)
            backbone = spec.model_class(config)
    return [unit.name for unit in discover_units(backbone, spec)]


__all__ = ["FAMILIES", "DEFAULT_IMAGE_SIZE", "FOUNDATION", "PRESET_PREFIX", "SCRATCH", "build_vqa_model",
           "get_family", "list_presets", "list_units", "load_backbone", "units_from_config"]
