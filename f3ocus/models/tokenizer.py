"""The word-level tokenizer of the tiny presets: one id per known word, lowercase, punctuation split.

It owns the vocabulary layout (special tokens first, then punctuation, then sorted words) and the
post-processing template per family ("bos": `<s> text` like LLaMA, "cls_sep": `[CLS] text [SEP]` like
BERT/ViLT). The result is a plain `PreTrainedTokenizerFast`, so `save_pretrained` /
`AutoProcessor.from_pretrained` round-trip it like any hub tokenizer.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Literal

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from f3ocus.data.vocabulary import builtin_words

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
IMAGE, BOS, EOS = "<image>", "<s>", "</s>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, UNK, CLS, SEP, MASK, IMAGE, BOS, EOS)
PUNCTUATION: tuple[str, ...] = tuple("?.,;:!'\"()-/%+")
Template = Literal["bos", "cls_sep"]
_WORD = re.compile(r"\w+")


@functools.lru_cache(maxsize=1)
def _builtin_words() -> tuple[str, ...]:
    return tuple(builtin_words())


def default_words() -> list[str]:
    """The built-in word list of the platform's tasks (`f3ocus.data.vocabulary.builtin_words()`)."""
    return list(_builtin_words())


def build_word_tokenizer(words: Iterable[str], template: Template = "bos") -> PreTrainedTokenizerFast:
    """Build a word-level tokenizer covering `words`.

    Args:
        words: vocabulary; lowercased, split on non-word characters and de-duplicated, so
            phrases are fine. Unknown words map to `[UNK]` at encode time.
        template: "bos" prepends `<s>` (LLaMA style); "cls_sep" wraps in `[CLS] ... [SEP]` (BERT style).

    Returns:
        A `PreTrainedTokenizerFast` with pad/unk/cls/sep/mask/bos/eos set, `<image>` registered as
        the `image_token` special token, right padding. Ids: specials 0..7, punctuation, sorted words.
    """
    pieces = sorted({piece for word in words for piece in _WORD.findall(str(word).lower())})
    vocab_list = [*SPECIAL_TOKENS, *PUNCTUATION, *(p for p in pieces if p not in SPECIAL_TOKENS)]
    vocab = {token: index for index, token in enumerate(vocab_list)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation("isolated")])
    backend.post_processor = _template(template, vocab)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token=PAD, unk_token=UNK, cls_token=CLS, sep_token=SEP,
        mask_token=MASK, bos_token=BOS, eos_token=EOS, extra_special_tokens={"image_token": IMAGE},
        padding_side="right")


def _template(template: Template, vocab: dict[str, int]) -> processors.TemplateProcessing:
    """Post-processor adding the family's special tokens around a single text (or a pair)."""
    if template == "bos":
        return processors.TemplateProcessing(
            single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])])
    if template == "cls_sep":
        return processors.TemplateProcessing(
            single=f"{CLS} $A {SEP}", pair=f"{CLS} $A {SEP} $B:1 {SEP}:1",
            special_tokens=[(CLS, vocab[CLS]), (SEP, vocab[SEP])])
    raise ValueError(f"unknown tokenizer template {template!r}; expected 'bos' or 'cls_sep'")
