"""easy-vqa under image-domain shifts (T1 offline): one client per shift, seeded and deterministic."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from PIL import Image

from f3ocus.data.domains import DOMAINS, FIVE_DOMAINS, build_easy_vqa_domains, shift_image
from f3ocus.data.easy_vqa import easy_vqa_answers
from f3ocus.data.schema import DataError, column_values


def test_each_domain_is_a_balanced_client_of_distinct_questions() -> None:
    # Execute
    rows = build_easy_vqa_domains(per_domain=20, test_fraction=0.25, seed=0)
    # Assert
    counts = Counter(zip(column_values(rows, "modality"), column_values(rows, "split")))
    assert counts == {(name, split): 15 if split == "train" else 5 for name in FIVE_DOMAINS
                      for split in ("train", "test")}
    assert column_values(rows, "client") == column_values(rows, "modality")
    assert set(column_values(rows, "answer")) <= set(easy_vqa_answers())
    assert set(column_values(rows, "source")) == {"easy-vqa"}


def test_build_is_deterministic_and_seeded() -> None:
    first = build_easy_vqa_domains(["grain", "invert"], per_domain=10, seed=1)
    again = build_easy_vqa_domains(["grain", "invert"], per_domain=10, seed=1)
    other = build_easy_vqa_domains(["grain", "invert"], per_domain=10, seed=2)
    pixels = [np.asarray(row["image"]).tobytes() for row in first]
    assert pixels == [np.asarray(row["image"]).tobytes() for row in again]
    assert column_values(first, "question") != column_values(other, "question")
    assert set(column_values(first, "modality")) == {"grain", "invert"}


def test_shifts_change_the_image_as_named() -> None:
    # Prepare: a grey scene with one red square
    pixels = np.full((64, 64, 3), 200, np.uint8)
    pixels[20:40, 20:40] = (220, 30, 30)
    image = Image.fromarray(pixels)
    rng = np.random.default_rng(0)
    # Execute
    shifted = {name: shift_image(image, name, rng).astype(np.float32) for name in DOMAINS}
    # Assert
    assert np.array_equal(shifted["invert"], 255 - pixels.astype(np.float32))
    assert shifted["low_contrast"].std() < 0.5 * pixels.std()
    assert np.abs(np.diff(shifted["blur"], axis=1)).max() < np.abs(np.diff(pixels.astype(float), axis=1)).max()
    assert shifted["grain"].std() > pixels.std()
    assert shifted["tint"][..., 2].mean() < 0.5 * pixels[..., 2].mean()  # blue damped: sepia cast
    assert shifted["dark"][0, 0, 0] == round(255 * (200 / 255) ** 2.2)  # gamma 2.2: grey 200 -> 149
    assert len(np.unique(shifted["pixelate"][:4, :4].reshape(-1, 3), axis=0)) == 1  # one 4x4 block, one colour
    extremes = np.all((shifted["salt_pepper"] == 0) | (shifted["salt_pepper"] == 255), axis=-1)
    assert 0.02 < (extremes & ~np.all((pixels == 0) | (pixels == 255), axis=-1)).mean() < 0.12


def test_unknown_domain_is_named() -> None:
    with pytest.raises(DataError, match="unknown domain"):
        build_easy_vqa_domains(["sepia"], per_domain=10)
