"""`build_vqa_model` checkpoints: scratch seeding, and the `from_pretrained` path on a saved tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from f3ocus.models.registry import build_vqa_model

from .conftest import ANSWERS


def test_scratch_is_seeded_and_head_fits_answers(family: str, examples) -> None:
    images, questions, _ = examples
    first = build_vqa_model(family, "scratch", answers=ANSWERS, seed=3)
    second = build_vqa_model(family, "scratch", answers=ANSWERS, seed=3)
    other = build_vqa_model(family, "scratch", answers=ANSWERS, seed=4)
    inputs = first.encode(images, questions)

    assert torch.equal(first(**inputs), second(**inputs))
    assert not torch.allclose(first(**inputs), other(**inputs))
    assert first.head.out_features == len(ANSWERS) and first.answers == ANSWERS
    assert not first.training


@pytest.mark.parametrize("unit_mode", ["layer", "adapter"])
def test_from_pretrained_directory_gives_identical_pooled_features(family: str, unit_mode: str, examples,
                                                                   tmp_path: Path) -> None:
    images, questions, _ = examples
    tiny = build_vqa_model(family, "scratch", answers=ANSWERS, seed=0)
    tiny.backbone.save_pretrained(tmp_path)
    tiny.processor.save_pretrained(tmp_path)

    loaded = build_vqa_model(family, str(tmp_path), answers=ANSWERS, unit_mode=unit_mode, seed=0)
    inputs = loaded.encode(images, questions)

    assert {key: value.tolist() for key, value in inputs.items()} == \
        {key: value.tolist() for key, value in tiny.encode(images, questions).items()}
    assert loaded.units == tiny.units
    assert loaded.backbone.config._attn_implementation == "eager"
    torch.testing.assert_close(loaded.pooled_features(**inputs), tiny.pooled_features(**inputs), rtol=0, atol=0)


def test_bad_arguments_raise_clearly() -> None:
    with pytest.raises(ValueError, match="unit_mode"):
        build_vqa_model("vilt", "scratch", answers=ANSWERS, unit_mode="prefix")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unique"):
        build_vqa_model("vilt", "scratch", answers=["yes", "yes"])
