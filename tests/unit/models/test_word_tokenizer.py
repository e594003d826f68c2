"""Word-level tokenizer: vocabulary layout, templates, save/load round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from f3ocus.models.tokenizer import IMAGE, SPECIAL_TOKENS, build_word_tokenizer, default_words


def test_specials_first_words_lowercased_and_unknown_mapped() -> None:
    tokenizer = build_word_tokenizer(["Red", "shape", "red circle"], template="bos")

    ids = tokenizer("What RED shape?")["input_ids"]

    assert tokenizer.convert_ids_to_tokens(list(range(len(SPECIAL_TOKENS)))) == list(SPECIAL_TOKENS)
    assert tokenizer.convert_ids_to_tokens(ids) == ["<s>", "[UNK]", "red", "shape", "?"]
    assert tokenizer.image_token == IMAGE
    assert tokenizer.convert_ids_to_tokens(tokenizer(f"{IMAGE}{IMAGE} red")["input_ids"]) == \
        ["<s>", IMAGE, IMAGE, "red"]


def test_cls_sep_template_and_padding() -> None:
    tokenizer = build_word_tokenizer(["red", "shape"], template="cls_sep")

    batch = tokenizer(["red", "red shape"], padding=True)

    assert tokenizer.convert_ids_to_tokens(batch["input_ids"][1]) == ["[CLS]", "red", "shape", "[SEP]"]
    assert batch["input_ids"][0][-1] == tokenizer.pad_token_id
    assert batch["attention_mask"][0] == [1, 1, 1, 0]


def test_unknown_template_raises() -> None:
    with pytest.raises(ValueError, match="template"):
        build_word_tokenizer(["a"], template="nope")  # type: ignore[arg-type]


def test_save_load_round_trip(tmp_path: Path) -> None:
    tokenizer = build_word_tokenizer(default_words(), template="bos")
    tokenizer.save_pretrained(tmp_path)

    loaded = AutoTokenizer.from_pretrained(tmp_path)

    text = f"{IMAGE} what color is the shape?"
    assert loaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert loaded.image_token == IMAGE
    assert "[UNK]" not in tokenizer.convert_ids_to_tokens(tokenizer("what color is the shape?")["input_ids"])
