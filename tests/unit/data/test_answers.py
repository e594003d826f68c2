"""Answer normalisation, vocabulary, closed-set accuracy and majority answer, against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from f3ocus.data.answers import answer_vocabulary, closed_set_accuracy, majority_answer, normalize_answer
from f3ocus.data.schema import make_vqa_dataset


def test_normalize_answer() -> None:
    assert normalize_answer("  Left   Lung. ") == "left lung"
    assert normalize_answer("Yes?!") == "yes"
    assert normalize_answer("x-ray") == "x-ray"
    assert normalize_answer("3.5") == "3.5"


def test_closed_set_accuracy_hand_computed() -> None:
    preds = ["Yes", "no ", "circle", "banana"]
    golds = ["yes", "yes", "Circle.", "red"]
    assert closed_set_accuracy(preds, golds) == pytest.approx(2 / 4)
    assert closed_set_accuracy([], []) == 0.0
    with pytest.raises(ValueError):
        closed_set_accuracy(["a"], [])


def test_majority_answer_breaks_ties_lexicographically() -> None:
    assert majority_answer(["no", "Yes", "yes", "no", "maybe"]) == "no"
    assert majority_answer(["b", "a", "c", "c", "a"]) == "a"
    with pytest.raises(ValueError):
        majority_answer([])


def test_answer_vocabulary_uses_train_split_only() -> None:
    image = np.zeros((2, 2), np.uint8)
    ds, _ = make_vqa_dataset({"image": [image] * 4, "question": ["q"] * 4, "answer": ["Yes", "no.", "yes", "red"],
                              "split": ["train", "train", "train", "test"]}, origin="t")
    assert answer_vocabulary(ds) == ["no", "yes"]
