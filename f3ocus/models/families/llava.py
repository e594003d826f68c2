"""The LLaVA-1.5 family: CLIP vision tower -> MLP projector -> LLaMA decoder.

It owns the tiny preset (CLIPVisionConfig + LlamaConfig, ~1.3 M parameters at 32x32 px), the prompt
("USER: <image>\\n{question} ASSISTANT:"; the processor expands `<image>` to one token per patch),
and the pooled feature: the language model's final hidden state at the last non-pad token, i.e. the
position where the answer would be generated. Units: `vision.i`, `connector`, `language.i`; the LM
head and the vision tower's `post_layernorm` (LLaVA reads pre-norm hidden states) are unused.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
from PIL import Image
from torch import nn
from transformers import (CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration,
                          LlavaProcessor)
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from f3ocus.models.family import FamilySpec, StackRule
from f3ocus.models.tokenizer import IMAGE, build_word_tokenizer

PROMPT = "USER: " + IMAGE + "\n{question} ASSISTANT:"
PROMPT_WORDS: tuple[str, ...] = ("user", "assistant")
PATCH_SIZE = 8
HIDDEN = 128


def build_tiny(words: Sequence[str], image_size: int, *, hidden: int = HIDDEN, vision_layers: int = 4,
               language_layers: int = 4) -> tuple[nn.Module, Any]:
    """Build the tiny LLaVA-1.5 preset with random weights.

    Args:
        words: vocabulary of the word-level tokenizer.
        image_size: square input side in pixels (multiple of 8; 32 -> 16 image tokens).
        hidden: width of both towers (4 attention heads).
        vision_layers: CLIP encoder blocks.
        language_layers: LLaMA decoder blocks.

    Returns:
        (LlavaForConditionalGeneration with eager attention, LlavaProcessor).
    """
    tokenizer = build_word_tokenizer([*words, *PROMPT_WORDS], template="bos")
    vision = CLIPVisionConfig(
        hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=vision_layers, num_attention_heads=4,
        image_size=image_size, patch_size=PATCH_SIZE, projection_dim=hidden)
    text = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=3 * hidden,
        num_hidden_layers=language_layers, num_attention_heads=4, num_key_value_heads=4,
        max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    # DEVIATION: LLaVA-1.5 reads the penultimate CLIP layer (vision_feature_layer=-2); the tiny
    # preset reads the last one so that every vision block feeds the answer and is a live unit.
    config = LlavaConfig(
        vision_config=vision, text_config=text, image_token_id=tokenizer.image_token_id,
        vision_feature_select_strategy="default", vision_feature_layer=-1,
        projector_hidden_act="gelu", attn_implementation="eager")
    model = LlavaForConditionalGeneration(config)
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})
    # "default" strategy drops CLS: (image_size / patch)^2 + 1 - 1 image tokens, as the tower emits.
    processor = LlavaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=PATCH_SIZE,
        vision_feature_select_strategy="default", num_additional_image_tokens=1)
    return model, processor


def encode(processor: Any, images: Sequence[Image.Image], questions: Sequence[str]) -> dict[str, torch.Tensor]:
    """Turn (images, questions) into LLaVA inputs.

    Returns:
        `input_ids` (B, T) with exactly one `<image>` token per vision feature, `attention_mask`
        (B, T), `pixel_values` (B, 3, H, W) (plus whatever else a real checkpoint's processor adds).
    """
    prompts = [PROMPT.format(question=question) for question in questions]
    rgb = [image.convert("RGB") for image in images]
    batch = processor(images=rgb, text=prompts, padding=True, return_tensors="pt")
    return dict(batch)


def pool(backbone: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Final LM hidden state at the last non-pad token of each row.

    Returns:
        (B, text hidden size); works for left and right padding.
    """
    outputs = backbone.base_model(**inputs, use_cache=False)  # LlavaModel: no LM-head logits
    hidden = outputs.last_hidden_state  # (B, T, D)
    mask = inputs["attention_mask"]  # (B, T)
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)  # (B, T)
    last = (positions * mask.to(positions.dtype)).argmax(dim=1)  # (B,)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


def feature_dim(backbone: nn.Module) -> int:
    """Hidden size of the language model (the pooled feature width)."""
    return int(backbone.config.text_config.hidden_size)


LLAVA = FamilySpec(
    name="llava",
    model_class=LlavaForConditionalGeneration,
    build_tiny=build_tiny,
    encode=encode,
    pool=pool,
    feature_dim=feature_dim,
    stacks=(StackRule("vision", r"vision_tower(\..*)?\.layers$"),
            StackRule("language", r"language_model(\..*)?\.layers$")),
    connector_pattern=r"multi_modal_projector$",
    unused_pattern=r"(^|\.)lm_head$|vision_tower\..*post_layernorm$",
)

# The deep preset: as many language blocks as the paper's models have selectable LLM blocks (LLaVA-1.5-7B has
# 32; 24 here), narrow enough (width 64) to train on 2 cores. Its small vision tower is meant to stay frozen
# (`model.selectable: [language]`), as the paper selects among LLM blocks.
LLAVA24 = dataclasses.replace(LLAVA, name="llava24",
                              build_tiny=partial(build_tiny, hidden=64, vision_layers=2, language_layers=24))
