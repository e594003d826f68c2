"""The BLIP family (`BlipForQuestionAnswering`, the paper's ALBEF stand-in): ViT -> BERT-style text encoder.

It owns the tiny preset (BlipVisionConfig + BlipTextConfig, ~1.7 M parameters at 32x32 px, of which
~0.65 M are the unused answer decoder), the input layout (`[CLS] question [SEP]`, no image tokens:
the text encoder cross-attends to every patch embedding in each block), and the pooled feature: the
text encoder's final hidden state at the first (`[CLS]`) token. Units: `vision.i`, `language.i` (text
ENCODER blocks); no connector; the generative `text_decoder` is unused.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image
from torch import nn
from transformers import (BlipConfig, BlipForQuestionAnswering, BlipImageProcessorPil, BlipProcessor,
                          BlipTextConfig, BlipVisionConfig)

from f3ocus.models.family import FamilySpec, StackRule
from f3ocus.models.tokenizer import build_word_tokenizer

PATCH_SIZE = 8
HIDDEN = 128


def build_tiny(words: Sequence[str], image_size: int) -> tuple[nn.Module, Any]:
    """Build the tiny BLIP-VQA preset with random weights.

    Args:
        words: vocabulary of the word-level tokenizer.
        image_size: square input side in pixels (multiple of 8; 32 -> 16 patches + CLS).

    Returns:
        (BlipForQuestionAnswering with eager attention, BlipProcessor).
    """
    tokenizer = build_word_tokenizer(words, template="cls_sep")
    vision = BlipVisionConfig(
        hidden_size=HIDDEN, intermediate_size=2 * HIDDEN, num_hidden_layers=3, num_attention_heads=4,
        image_size=image_size, patch_size=PATCH_SIZE, projection_dim=HIDDEN)
    # is_decoder=True is what gives BlipTextLayer its cross-attention to the image: the encoder and
    # the decoder share this config, and the encoder is run with `is_decoder=False` (bidirectional).
    # bos (`<s>`) plays BLIP's [DEC] answer-start token; the question encoder starts with [CLS].
    text = BlipTextConfig(
        vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=2 * HIDDEN,
        num_hidden_layers=3, num_attention_heads=4, max_position_embeddings=512, projection_dim=HIDDEN,
        is_decoder=True, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.sep_token_id, sep_token_id=tokenizer.sep_token_id)
    config = BlipConfig(
        vision_config=vision.to_dict(), text_config=text.to_dict(), projection_dim=HIDDEN,
        image_text_hidden_size=HIDDEN, attn_implementation="eager")
    model = BlipForQuestionAnswering(config)
    image_processor = BlipImageProcessorPil(size={"height": image_size, "width": image_size})
    processor = BlipProcessor(image_processor=image_processor, tokenizer=tokenizer)
    return model, processor


def encode(processor: Any, images: Sequence[Image.Image], questions: Sequence[str]) -> dict[str, torch.Tensor]:
    """Turn (images, questions) into BLIP inputs.

    Returns:
        `input_ids` (B, T) as `[CLS] question [SEP]` (right-padded), `attention_mask` (B, T),
        `pixel_values` (B, 3, H, W).
    """
    rgb = [image.convert("RGB") for image in images]
    batch = processor(images=rgb, text=list(questions), padding=True, return_tensors="pt")
    return dict(batch)


def pool(backbone: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Multimodal [CLS] feature: the question encoder's last hidden state at the first token.

    Mirrors the encoder half of `BlipForQuestionAnswering.forward` (which itself requires answer
    labels and runs the decoder); the text encoder cross-attends to all image patch embeddings.

    Returns:
        (B, text hidden size).
    """
    image_embeds = backbone.vision_model(pixel_values=inputs["pixel_values"]).last_hidden_state  # (B, P+1, Dv)
    image_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)  # (B, P+1)
    hidden = backbone.text_encoder(
        input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
        encoder_hidden_states=image_embeds, encoder_attention_mask=image_mask).last_hidden_state  # (B, T, D)
    return hidden[:, 0]


def feature_dim(backbone: nn.Module) -> int:
    """Hidden size of the text encoder (the pooled feature width)."""
    return int(backbone.config.text_config.hidden_size)


BLIP_FAMILY = FamilySpec(
    name="blip",
    model_class=BlipForQuestionAnswering,
    build_tiny=build_tiny,
    encode=encode,
    pool=pool,
    feature_dim=feature_dim,
    stacks=(StackRule("vision", r"vision_model(\..*)?\.layers$"),
            StackRule("language", r"text_encoder(\..*)?\.layer$")),
    connector_pattern=None,
    unused_pattern=r"(^|\.)text_decoder$",
)
