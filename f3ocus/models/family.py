"""The contract every VLM family implements, so the rest of the platform never sees a family's quirks.

A family (LLaVA-1.5, BLIP-2, BLIP, ViLT) is one `FamilySpec` registered in `f3ocus.models.registry`.
The spec says how to build the `tiny` preset from transformers configs (random weights), how to turn
(images, questions) into model inputs, how to read one pooled multimodal feature vector per sample
(the closed-set answer head sits on it), and which module lists hold the selectable blocks. Unit
discovery itself (`f3ocus.models.units`) walks `named_modules()` with the spec's regexes: no family
hard-codes a module path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from PIL import Image
from torch import nn

# (images, questions) -> tensors the backbone's forward takes; every tensor has batch size first.
EncodeFn = Callable[[Any, Sequence[Image.Image], Sequence[str]], dict[str, torch.Tensor]]
# (backbone, encoded inputs) -> pooled features (B, feature_dim)
PoolFn = Callable[[nn.Module, dict[str, torch.Tensor]], torch.Tensor]


@dataclass(frozen=True)
class StackRule:
    """Maps a discovered block list to a uniform unit prefix.

    Attributes:
        prefix: uniform unit name prefix, e.g. "vision", "qformer", "language", "fusion".
        pattern: regex searched in the dotted path of an `nn.ModuleList` found by `named_modules()`;
            the first rule that matches names the list. Lists matching no rule are not units.
    """

    prefix: str
    pattern: str


@dataclass(frozen=True)
class FamilySpec:
    """Everything family-specific, nothing else.

    Attributes:
        name: registry key, e.g. "llava"; the tiny preset is selectable as "tiny-<name>".
        model_class: the transformers class (e.g. `LlavaForConditionalGeneration`), used by
            `from_pretrained` for real checkpoints and by the tiny preset.
        build_tiny: `(words, image_size) -> (model, processor)`: the tiny preset built from configs
            with random weights (1-6 M parameters) and a processor whose tokenizer covers `words`.
        encode: `(processor, images, questions) -> inputs`; handles the family's image-token rules.
        pool: `(backbone, inputs) -> (B, D)` pooled multimodal features for the answer head.
        feature_dim: `(backbone) -> D`.
        stacks: ordered rules naming the block lists; unit order = order of first appearance in
            `named_modules()` (input side first).
        connector_pattern: regex for the vision->language connector module(s) (one unit named
            "connector"), or None when the family has none.
        unused_pattern: regex for submodules the closed-set VQA head never uses (e.g. a generative
            decoder); they are frozen and never offered as units.
    """

    name: str
    model_class: type
    build_tiny: Callable[[Sequence[str], int], tuple[nn.Module, Any]]
    encode: EncodeFn
    pool: PoolFn
    feature_dim: Callable[[nn.Module], int]
    stacks: tuple[StackRule, ...]
    connector_pattern: str | None = None
    unused_pattern: str | None = None
