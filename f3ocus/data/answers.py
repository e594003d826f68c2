"""Answer handling for closed-set VQA: normalisation, the answer vocabulary and accuracy.

docs/METHOD.md §5 reports accuracy for the VQA tasks (T1-T3). The platform scores a prediction by exact
match after `normalize_answer`; the answer vocabulary is the set of normalised train answers, and a
predicted answer outside it is simply wrong (no partial credit).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

from datasets import Dataset

from f3ocus.data.schema import column_values

_SPACES = re.compile(r"\s+")
_TRAILING_PUNCTUATION = ".,;:!?"


def normalize_answer(answer: str) -> str:
    """Lower-case, strip, collapse inner whitespace and drop trailing punctuation.

    Args:
        answer: e.g. "  Left   Lung. ".

    Returns:
        e.g. "left lung".
    """
    text = _SPACES.sub(" ", answer.strip().lower())
    return text.rstrip(_TRAILING_PUNCTUATION).rstrip()


def answer_vocabulary(ds: Dataset) -> list[str]:
    """Return the sorted unique normalised answers of the train split (the closed answer set).

    Args:
        ds: rows with `answer` and `split` columns.
    """
    answers = column_values(ds, "answer")
    splits = column_values(ds, "split")
    return sorted({normalize_answer(answer) for answer, split in zip(answers, splits) if split == "train"})


def closed_set_accuracy(preds: Sequence[str], golds: Sequence[str]) -> float:
    """Fraction of exact matches after normalisation.

    Args:
        preds: N predicted answers.
        golds: N reference answers.

    Returns:
        accuracy in [0, 1]; 0.0 for N = 0.

    Raises:
        ValueError: different lengths.
    """
    if len(preds) != len(golds):
        raise ValueError(f"{len(preds)} predictions for {len(golds)} references")
    if not golds:
        return 0.0
    hits = sum(normalize_answer(pred) == normalize_answer(gold) for pred, gold in zip(preds, golds))
    return hits / len(golds)


def majority_answer(answers: Iterable[str]) -> str:
    """Return the most frequent normalised answer; ties go to the lexicographically smallest.

    Raises:
        ValueError: no answers.
    """
    counts = Counter(normalize_answer(answer) for answer in answers)
    if not counts:
        raise ValueError("majority_answer of no answers")
    return min(counts, key=lambda answer: (-counts[answer], answer))
