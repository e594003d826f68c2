"""The closed word list of every question and answer the built-in data builders can produce.

A word-level tokenizer for the tiny VLMs is built from `builtin_words()`, so the list must be complete
(all easy-vqa questions and answers, every Ultra-MedVQA template phrasing with its slots filled, every
modality, anatomy and answer name of the MedMNIST table) and deterministic (sorted, no set order
leaks). `split_words` is the one splitting rule: the tokenizer must use it too, or words will not match.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from f3ocus.data.backgrounds import background_words
from f3ocus.data.easy_vqa import easy_vqa_answers, easy_vqa_questions
from f3ocus.data.medmnist_meta import INFO
from f3ocus.data.question_templates import all_answers, all_questions

_WORD = re.compile(r"[a-z0-9]+")


def split_words(text: str) -> list[str]:
    """Lower-case `text` and split it into words on whitespace and punctuation.

    Args:
        text: e.g. "Is there cancer-associated stroma?".

    Returns:
        words in order, e.g. ["is", "there", "cancer", "associated", "stroma"]; punctuation (including
        hyphens and apostrophes) separates words and is dropped.
    """
    return _WORD.findall(text.lower())


def words_of(texts: Iterable[str]) -> list[str]:
    """Return the sorted unique words of `texts` (see `split_words`)."""
    return sorted({word for text in texts for word in split_words(text)})


def builtin_words() -> list[str]:
    """Return the sorted unique lower-case words of every built-in question and answer.

    Returns:
        easy-vqa (train + test questions, all answers), the background questions of the foundation
        pretraining (`f3ocus.data.backgrounds`) and Ultra-MedVQA (all templates and answers of the
        twelve MedMNIST-v2 2D datasets) words, sorted.
    """
    texts: list[str] = [*easy_vqa_answers(), *background_words()]
    for split in ("train", "test"):
        questions, answers, _ = easy_vqa_questions(split)  # type: ignore[arg-type]
        texts.extend(sorted(set(questions)))
        texts.extend(sorted(set(answers)))
    for info in INFO.values():
        texts.extend(all_questions(info))
        texts.extend(all_answers(info))
    return words_of(texts)
