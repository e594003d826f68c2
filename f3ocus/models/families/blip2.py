"""The BLIP-2 family: ViT vision encoder -> Q-Former (learned queries) -> linear projection -> OPT decoder.

It owns the tiny preset (Blip2VisionConfig + Blip2QFormerConfig + OPTConfig, ~1.3 M parameters at
32x32 px, 8 query tokens), the input layout (the processor prepends one `<image>` token per query
before `<s> question`; the model scatters the projected queries into those slots), and the pooled
feature: the language model's final hidden state at the last non-pad token. Units: `vision.i`,
`qformer.i`, `connector` (the language projection), `language.i`; the LM head is unused.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image
from tokenizers import Tokenizer
from torch import nn
from transformers import (Blip2Config, Blip2ForConditionalGeneration, Blip2Processor, Blip2QFormerConfig,
                          Blip2VisionConfig, BlipImageProcessorPil, OPTConfig, PreTrainedTokenizerFast)

from f3ocus.models.family import FamilySpec, StackRule
from f3ocus.models.tokenizer import IMAGE, build_word_tokenizer

PATCH_SIZE = 8
HIDDEN = 128
NUM_QUERY_TOKENS = 8


def build_tiny(words: Sequence[str], image_size: int) -> tuple[nn.Module, Any]:
    """Build the tiny BLIP-2 preset with random weights.

    Args:
        words: vocabulary of the word-level tokenizer.
        image_size: square input side in pixels (multiple of 8; 32 -> 16 patches + CLS for the
            Q-Former's cross-attention).

    Returns:
        (Blip2ForConditionalGeneration with eager attention, Blip2Processor).
    """
    tokenizer = _without_named_image_token(build_word_tokenizer(words, template="bos"))
    image_token_id = tokenizer.convert_tokens_to_ids(IMAGE)
    vision = Blip2VisionConfig(
        hidden_size=HIDDEN, intermediate_size=2 * HIDDEN, num_hidden_layers=3, num_attention_heads=4,
        image_size=image_size, patch_size=PATCH_SIZE)
    # cross_attention_frequency=1: every Q-Former block reads the image (the default 2 would leave
    # half the blocks as query-only self-attention).
    qformer = Blip2QFormerConfig(
        vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=2 * HIDDEN,
        num_hidden_layers=2, num_attention_heads=4, cross_attention_frequency=1,
        encoder_hidden_size=HIDDEN, pad_token_id=tokenizer.pad_token_id,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    text = OPTConfig(
        vocab_size=len(tokenizer), hidden_size=HIDDEN, word_embed_proj_dim=HIDDEN, ffn_dim=2 * HIDDEN,
        num_hidden_layers=3, num_attention_heads=4, max_position_embeddings=512, dropout=0.0,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id)
    # `attn_implementation` is not serialised: `from_pretrained` must pass it again (else sdpa).
    config = Blip2Config(
        vision_config=vision, qformer_config=qformer, text_config=text,
        num_query_tokens=NUM_QUERY_TOKENS, image_token_index=image_token_id, attn_implementation="eager")
    model = Blip2ForConditionalGeneration(config)
    # transformers initialises `query_tokens` to zeros (checkpoints overwrite them); all-zero queries
    # make the first Q-Former block degenerate (zero gradient for its attention weights), so draw
    # them like LAVIS does: N(0, initializer_range).
    with torch.no_grad():
        model.query_tokens.normal_(mean=0.0, std=qformer.initializer_range)
    image_processor = BlipImageProcessorPil(size={"height": image_size, "width": image_size})
    processor = Blip2Processor(
        image_processor=image_processor, tokenizer=tokenizer, num_query_tokens=NUM_QUERY_TOKENS)
    return model, processor


def _without_named_image_token(tokenizer: PreTrainedTokenizerFast) -> PreTrainedTokenizerFast:
    """Re-wrap `tokenizer` with `<image>` as an unnamed extra special token (same vocabulary and ids).

    transformers 5.23's `Blip2Processor.__init__` reads `tokenizer.image_token.content`, but a
    tokenizer with a named `image_token` returns it as `str`, so building (and re-loading with
    `AutoProcessor`) fails with "'str' object has no attribute 'content'". Without the name the
    processor registers its own `AddedToken("<image>")`, which resolves to the existing id.
    """
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(tokenizer.backend_tokenizer.to_str()), pad_token=tokenizer.pad_token,
        unk_token=tokenizer.unk_token, cls_token=tokenizer.cls_token, sep_token=tokenizer.sep_token,
        mask_token=tokenizer.mask_token, bos_token=tokenizer.bos_token, eos_token=tokenizer.eos_token,
        extra_special_tokens=[IMAGE], padding_side=tokenizer.padding_side)


def encode(processor: Any, images: Sequence[Image.Image], questions: Sequence[str]) -> dict[str, torch.Tensor]:
    """Turn (images, questions) into BLIP-2 inputs.

    Returns:
        `input_ids` (B, Q + T) starting with `num_query_tokens` `<image>` tokens, `attention_mask`
        (B, Q + T) (right-padded), `pixel_values` (B, 3, H, W).
    """
    rgb = [image.convert("RGB") for image in images]
    batch = processor(images=rgb, text=list(questions), padding=True, return_tensors="pt")
    return dict(batch)


def pool(backbone: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Final LM hidden state at the last non-pad token of each row.

    Mirrors `Blip2ForConditionalGeneration.forward` up to the decoder's last hidden state, so the
    LM head (vocabulary logits) is never computed.

    Returns:
        (B, text hidden size); works for left and right padding.
    """
    input_ids, mask = inputs["input_ids"], inputs["attention_mask"]  # (B, T), (B, T)
    image = backbone.get_image_features(inputs["pixel_values"], return_dict=True)
    image_features = image.pooler_output  # (B, Q, D): projected Q-Former outputs
    embeds = backbone.get_input_embeddings()(input_ids)  # (B, T, D)
    slots = backbone.get_placeholder_mask(input_ids, inputs_embeds=embeds)  # (B, T, 1)
    embeds = embeds.masked_scatter(slots, image_features.to(embeds.dtype))
    decoder = backbone.language_model.base_model
    hidden = decoder(inputs_embeds=embeds, attention_mask=mask, use_cache=False).last_hidden_state  # (B, T, D)
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)  # (B, T)
    last = (positions * mask.to(positions.dtype)).argmax(dim=1)  # (B,)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


def feature_dim(backbone: nn.Module) -> int:
    """Hidden size of the language model (the pooled feature width)."""
    return int(backbone.config.text_config.hidden_size)


# The learned `query_tokens` are a bare `nn.Parameter` on the root module, not a module, so no
# module regex can put them in the connector unit; they stay frozen with the rest of the base.
BLIP2_FAMILY = FamilySpec(
    name="blip2",
    model_class=Blip2ForConditionalGeneration,
    build_tiny=build_tiny,
    encode=encode,
    pool=pool,
    feature_dim=feature_dim,
    stacks=(StackRule("vision", r"vision_model(\..*)?\.layers$"),
            StackRule("qformer", r"qformer(\..*)?\.layer$"),
            StackRule("language", r"language_model(\..*)?\.layers$")),
    connector_pattern=r"language_projection$",
    unused_pattern=r"(^|\.)lm_head$",
)
