"""The ViLT family: one single-stream transformer over word and patch embeddings (no vision tower).

It owns the tiny preset (ViltConfig, ~1.3 M parameters, 6 fusion layers at 32x32 px / patch 8), the
encoding (ViltProcessor: `[CLS] question [SEP]` + pixel values and pixel mask) and the pooled
feature (ViLT's pooler on the first token). Units: `fusion.i`; ViLT's own VQA classifier is unused
(the platform's closed-set head replaces it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
from PIL import Image
from torch import nn
from transformers import ViltConfig, ViltForQuestionAnswering, ViltProcessor
from transformers.models.vilt.image_processing_pil_vilt import ViltImageProcessorPil

from f3ocus.models._rng import isolated_rng
from f3ocus.models.family import FamilySpec, StackRule
from f3ocus.models.tokenizer import build_word_tokenizer

PATCH_SIZE = 8
HIDDEN = 128
MAX_TEXT_TOKENS = 40
# ViLT shuffles the patch tokens with the global RNG on every forward (`visual_embed` draws a
# multinomial even when every patch is kept). Attention is permutation-invariant given the position
# embeddings, so a fixed seed changes nothing but makes forward passes bit-reproducible.
PATCH_ORDER_SEED = 0


def build_tiny(words: Sequence[str], image_size: int, *, hidden: int = HIDDEN,
               layers: int = 6) -> tuple[nn.Module, Any]:
    """Build the tiny ViLT preset with random weights.

    Args:
        words: vocabulary of the word-level tokenizer.
        image_size: square input side in pixels (multiple of 8; 32 -> 16 patches + CLS).
        hidden: transformer width (4 attention heads).
        layers: fusion blocks.

    Returns:
        (ViltForQuestionAnswering with eager attention, ViltProcessor).
    """
    tokenizer = build_word_tokenizer(words, template="cls_sep")
    config = ViltConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
        intermediate_size=4 * hidden, image_size=image_size, patch_size=PATCH_SIZE,
        max_position_embeddings=MAX_TEXT_TOKENS, pad_token_id=tokenizer.pad_token_id,
        num_labels=2, attn_implementation="eager")
    model = ViltForQuestionAnswering(config)
    # size_divisor = patch size keeps a 32x32 image at 32x32 (the default 32 would also, but not 40).
    image_processor = ViltImageProcessorPil(size={"shortest_edge": image_size}, size_divisor=PATCH_SIZE)
    return model, ViltProcessor(image_processor=image_processor, tokenizer=tokenizer)


def encode(processor: Any, images: Sequence[Image.Image], questions: Sequence[str]) -> dict[str, torch.Tensor]:
    """Turn (images, questions) into ViLT inputs.

    Returns:
        `input_ids`, `attention_mask` (and `token_type_ids` when the tokenizer emits them) (B, T),
        `pixel_values` (B, 3, H, W), `pixel_mask` (B, H, W).
    """
    rgb = [image.convert("RGB") for image in images]
    batch = processor(images=rgb, text=list(questions), padding=True, truncation=True,
                      max_length=MAX_TEXT_TOKENS, return_tensors="pt")
    return dict(batch)


def pool(backbone: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """ViLT's pooler output (dense + tanh on the first, `[CLS]`, token).

    Returns:
        (B, hidden size).
    """
    with isolated_rng(PATCH_ORDER_SEED):
        return backbone.base_model(**inputs).pooler_output


def feature_dim(backbone: nn.Module) -> int:
    """Hidden size of the fusion transformer (the pooled feature width)."""
    return int(backbone.config.hidden_size)


VILT = FamilySpec(
    name="vilt",
    model_class=ViltForQuestionAnswering,
    build_tiny=build_tiny,
    encode=encode,
    pool=pool,
    feature_dim=feature_dim,
    stacks=(StackRule("fusion", r"encoder\.layer$"),),
    connector_pattern=None,
    unused_pattern=r"^classifier$",
)

# The deep preset: 12 fusion blocks, as the real ViLT-B/32, at width 64 (trainable on 2 cores).
VILT12 = dataclasses.replace(VILT, name="vilt12", build_tiny=partial(build_tiny, hidden=64, layers=12))
