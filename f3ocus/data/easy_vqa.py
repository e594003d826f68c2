"""Loader for the `easy-vqa` PyPI package: real 64x64 shape/colour VQA data that ships in the wheel.

It owns the mapping of easy-vqa's (question, answer, image id) triples into the shared row layout
(`f3ocus.data.schema.FEATURES`): source "easy-vqa", modality "synthetic", an empty client (set later by
a partitioner), `question_type` read off the question (shape / color / yes_no) and `label` = index of
the answer in `easy_vqa_answers()`. Images are stored as file paths into the installed package and
decoded lazily, so a few thousand rows load in well under a second.
"""

from __future__ import annotations

from typing import Literal

import easy_vqa as _easy_vqa_package
import numpy as np
from datasets import Dataset

from f3ocus.data.schema import BadRows, DataError, make_vqa_dataset

SOURCE = "easy-vqa"
MODALITY = "synthetic"
YES_NO_PREFIXES: tuple[str, ...] = ("is ", "does ")


def easy_vqa_answers() -> list[str]:
    """Return the 13 easy-vqa answers, sorted (the order behind `label`)."""
    return sorted(answer.strip().lower() for answer in _easy_vqa_package.get_answers())


def easy_vqa_questions(split: Literal["train", "test"]) -> tuple[list[str], list[str], list[int]]:
    """Return easy-vqa's raw (questions, answers, image ids) for one split, each of length N."""
    if split == "train":
        return _easy_vqa_package.get_train_questions()
    if split == "test":
        return _easy_vqa_package.get_test_questions()
    raise DataError(f"easy-vqa: split must be 'train' or 'test', got {split!r}")


def question_type(question: str) -> str:
    """Classify an easy-vqa question: "yes_no", "color" or "shape".

    Args:
        question: e.g. "what color is the shape?", "is there a red shape?", "what is the blue shape?".

    Returns:
        "yes_no" for is/does questions, "color" when the question asks for a colour, else "shape".
    """
    text = question.strip().lower()
    if text.startswith(YES_NO_PREFIXES):
        return "yes_no"
    if "color" in text or "colour" in text:
        return "color"
    return "shape"


def load_easy_vqa(split: str = "train", limit: int | None = None, seed: int = 0, *,
                  on_bad_row: Literal["fail", "skip"] = "fail", report: BadRows | None = None) -> Dataset:
    """Load one easy-vqa split in the shared row layout.

    Args:
        split: "train" (38,575 questions on 4,000 images) or "test" (9,673 on 1,000).
        limit: keep a seeded random subset of this many questions (original order kept); None = all.
        seed: seed of the subset draw.
        on_bad_row: "fail" raises on a bad row (unreadable image file, an answer outside easy-vqa's 13),
            "skip" drops it (counted in `report`).
        report: skipped rows are counted here, per reason.

    Returns:
        Dataset with `FEATURES`; `split` column = `split`.

    Raises:
        DataError: unknown split, negative limit, a question whose image id has no file, or (with "fail") a
            bad row.
    """
    questions, answers, image_ids = easy_vqa_questions(split)  # type: ignore[arg-type]
    paths = (_easy_vqa_package.get_train_image_paths() if split == "train"
             else _easy_vqa_package.get_test_image_paths())
    rows = np.arange(len(questions))
    if limit is not None:
        if limit < 0:
            raise DataError(f"easy-vqa: limit must be >= 0, got {limit}")
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(len(questions), size=min(limit, len(questions)), replace=False))
    missing = sorted({image_ids[i] for i in rows if image_ids[i] not in paths})
    if missing:
        raise DataError(f"easy-vqa {split}: no image file for image id(s) {missing[:5]}")
    labels = {answer: index for index, answer in enumerate(easy_vqa_answers())}
    columns = {
        "image": [paths[image_ids[i]] for i in rows],
        "question": [questions[i] for i in rows],
        "answer": [answers[i].strip().lower() for i in rows],
        "question_type": [question_type(questions[i]) for i in rows],
        "label": [labels.get(answers[i].strip().lower(), -1) for i in rows],
        "modality": [MODALITY] * len(rows),
        "source": [SOURCE] * len(rows),
        "split": [split] * len(rows),
    }
    dataset, _ = make_vqa_dataset(columns, origin=f"easy-vqa {split}", on_bad_row=on_bad_row,
                                  answer_set=easy_vqa_answers(), report=report)
    return dataset
