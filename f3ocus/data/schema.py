"""The one row layout every VQA source is mapped into, and the validation that guards it.

`FEATURES` is the column set shared by all builders (easy-vqa, Ultra-MedVQA, SLAKE, VQA-RAD, PathVQA),
the partitioners and the federated store: image, question, answer, client, modality, source,
question_type, label, split. `make_vqa_dataset` is the single entry point that turns raw column lists
into a `datasets.Dataset` with those features; it checks every row (an image that fully decodes, in an
8-bit mode, of non-zero size; a non-empty question and answer; an answer inside the builder's closed
answer set when it declares one; a valid split and label) and either fails with a `DataError` naming the
origin and row, or drops bad rows and counts them per reason in a `BadRows` report (`data.on_bad_row`).
`column_values` reads one column without decoding images.
"""

from __future__ import annotations

import io
import logging
import os
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from datasets import Dataset, Features, Image, Value
from PIL import Image as PILImage

logger = logging.getLogger(__name__)

FEATURES = Features({
    "image": Image(),
    "question": Value("string"),
    "answer": Value("string"),
    "client": Value("string"),
    "modality": Value("string"),
    "source": Value("string"),
    "question_type": Value("string"),
    "label": Value("int64"),
    "split": Value("string"),
})

REQUIRED_COLUMNS: tuple[str, ...] = ("image", "question", "answer")
DEFAULTS: dict[str, Any] = {
    "client": "", "modality": "", "source": "", "question_type": "", "label": -1, "split": "train",
}
SPLITS: tuple[str, ...] = ("train", "test")


# PIL modes that convert to RGB without losing the picture (16/32-bit and float modes clip to white).
IMAGE_MODES: frozenset[str] = frozenset({"1", "L", "P", "RGB", "RGBA", "LA", "PA", "CMYK", "YCbCr", "LAB"})

# Reasons a row is bad (the keys of `BadRows.by_reason`).
UNREADABLE_IMAGE = "unreadable_image"
EMPTY_QUESTION = "empty_question"
MISSING_ANSWER = "missing_answer"
ANSWER_NOT_IN_SET = "answer_not_in_answer_set"
BAD_SPLIT = "bad_split"
BAD_LABEL = "bad_label"
BAD_COLUMN = "bad_column"
LABEL_OUT_OF_RANGE = "label_out_of_range"
MAX_EXAMPLES = 20  # messages kept in a BadRows report (counts are always complete)


class DataError(ValueError):
    """Bad input data; the message names the file or row and what is wrong with it.

    `f3ocus.cli` prints it as one `data error: ...` line and exits with code 2 (no traceback).
    """


@dataclass
class BadRows:
    """What `data.on_bad_row: skip` dropped: per-reason counts and the first `MAX_EXAMPLES` messages."""

    by_reason: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Rows skipped, all reasons."""
        return sum(self.by_reason.values())

    def add(self, reason: str, message: str) -> None:
        """Count one skipped row."""
        self.by_reason[reason] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(message)

    def merge(self, other: "BadRows") -> None:
        """Add `other`'s counts (and examples, up to `MAX_EXAMPLES`) to this report."""
        self.by_reason.update(other.by_reason)
        self.examples.extend(other.examples[:max(0, MAX_EXAMPLES - len(self.examples))])

    def to_dict(self) -> dict[str, Any]:
        """`{"total": n, "by_reason": {reason: n}, "examples": [...]}` (JSON-able, reasons sorted)."""
        return {"total": self.total, "by_reason": dict(sorted(self.by_reason.items())), "examples": list(self.examples)}

    def summary(self) -> str:
        """e.g. "3 bad row(s) skipped (missing_answer: 2, unreadable_image: 1)"."""
        reasons = ", ".join(f"{reason}: {count}" for reason, count in sorted(self.by_reason.items()))
        return f"{self.total} bad row(s) skipped" + (f" ({reasons})" if reasons else "")


def make_vqa_dataset(rows: Mapping[str, Sequence[Any]], *, origin: str,
                     on_bad_row: Literal["fail", "skip"] = "fail", answer_set: Collection[str] | None = None,
                     report: BadRows | None = None) -> tuple[Dataset, list[str]]:
    """Validate raw VQA columns and build a `Dataset` with `FEATURES`.

    Args:
        rows: column name -> sequence of N values. Required: image, question, answer. Images may be PIL
            images, uint8 arrays (H, W) or (H, W, 3), file paths, raw encoded bytes, or
            `{"bytes": ..., "path": ...}` dicts. Optional columns missing here get `DEFAULTS`.
        origin: what the rows came from (a file, a hub id); used in every message.
        on_bad_row: "fail" raises on the first bad row; "skip" drops bad rows.
        answer_set: the builder's closed answer set (normalised answers); a row whose normalised answer is
            outside it is bad. None = any non-empty answer.
        report: skipped rows are also counted here, per reason (see `BadRows`).

    Returns:
        (dataset with M <= N rows in FEATURES layout, one message per skipped row).

    Raises:
        DataError: unknown or missing columns, columns of unequal length, or (with "fail") a bad row.
    """
    if on_bad_row not in ("fail", "skip"):
        raise ValueError(f"on_bad_row must be 'fail' or 'skip', got {on_bad_row!r}")
    columns = _complete_columns(rows, origin)
    if answer_set is not None:
        from f3ocus.data.answers import normalize_answer  # late: answers imports this module

        answer_set = frozenset(normalize_answer(answer) for answer in answer_set)
    images: list[Any] = []
    keep: list[int] = []
    skipped: list[str] = []
    readable: dict[str, str | None] = {}  # path -> problem, so a path shared by many rows is decoded once
    for index in range(len(columns["question"])):
        image, problem = _check_row(columns, index, readable, answer_set)
        if problem is None:
            images.append(image)
            keep.append(index)
            continue
        reason, text = problem
        message = f"{origin}: row {index}: {text}"
        if on_bad_row == "fail":
            raise DataError(message)
        skipped.append(message)
        if report is not None:
            report.add(reason, message)
    if skipped:
        logger.warning("%s: skipped %d bad row(s) of %d", origin, len(skipped), len(columns["question"]))
    data = {name: images if name == "image" else [columns[name][i] for i in keep] for name in FEATURES}
    data["label"] = [int(value) for value in data["label"]]
    return Dataset.from_dict(data, features=FEATURES), skipped


def column_values(ds: Dataset, name: str) -> list[Any]:
    """Return one column as a Python list without decoding any image.

    Args:
        ds: any dataset (indices mappings from `select` are honoured).
        name: a column of `ds`.

    Returns:
        list of len(ds) values.
    """
    return ds.select_columns([name]).with_format("arrow")[:][name].to_pylist()


def _complete_columns(rows: Mapping[str, Sequence[Any]], origin: str) -> dict[str, Sequence[Any]]:
    missing = [name for name in REQUIRED_COLUMNS if name not in rows]
    if missing:
        raise DataError(f"{origin}: missing required column(s) {missing}")
    unknown = sorted(set(rows) - set(FEATURES))
    if unknown:
        raise DataError(f"{origin}: unknown column(s) {unknown}; expected a subset of {list(FEATURES)}")
    n_rows = len(rows["question"])
    lengths = {name: len(values) for name, values in rows.items()}
    if any(length != n_rows for length in lengths.values()):
        raise DataError(f"{origin}: columns have unequal lengths {lengths}")
    columns: dict[str, Sequence[Any]] = dict(rows)
    for name, default in DEFAULTS.items():
        columns.setdefault(name, [default] * n_rows)
    return columns


Problem = tuple[str, str]  # (reason, message)


def _check_row(columns: Mapping[str, Sequence[Any]], index: int, readable: dict[str, str | None],
               answer_set: frozenset[str] | None) -> tuple[Any, Problem | None]:
    """Return (image in a form `datasets.Image` encodes, (reason, problem) or None) for row `index`."""
    question = columns["question"][index]
    if not isinstance(question, str) or not question.strip():
        return None, (EMPTY_QUESTION, f"empty or non-text question {question!r}")
    answer = columns["answer"][index]
    if not isinstance(answer, str) or not answer.strip():
        return None, (MISSING_ANSWER, f"missing or empty answer {answer!r}")
    if answer_set is not None:
        from f3ocus.data.answers import normalize_answer

        if normalize_answer(answer) not in answer_set:
            return None, (ANSWER_NOT_IN_SET, f"answer {answer!r} is not in the closed answer set "
                                             f"({len(answer_set)} answers, e.g. {sorted(answer_set)[:5]})")
    split = columns["split"][index]
    if split not in SPLITS:
        return None, (BAD_SPLIT, f"split must be one of {SPLITS}, got {split!r}")
    label = columns["label"][index]
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)):
        return None, (BAD_LABEL, f"label must be an integer (-1 if none), got {label!r}")
    for name in ("client", "modality", "source", "question_type"):
        if not isinstance(columns[name][index], str):
            return None, (BAD_COLUMN, f"column {name!r} must be text, got {columns[name][index]!r}")
    image, problem = _check_image(columns["image"][index], readable)
    return image, None if problem is None else (UNREADABLE_IMAGE, problem)


def _check_image(image: Any, readable: dict[str, str | None]) -> tuple[Any, str | None]:
    if isinstance(image, PILImage.Image):
        return image, _check_decoded(image, "image")
    if isinstance(image, np.ndarray):
        return _check_array(image)
    if isinstance(image, (str, os.PathLike)):
        path = os.fspath(image)
        if path not in readable:
            readable[path] = _probe(path, f"image file {path!r}")
        return {"path": path, "bytes": None}, readable[path]
    if isinstance(image, (bytes, bytearray)):
        return {"path": None, "bytes": bytes(image)}, _probe(io.BytesIO(image), "image bytes")
    if isinstance(image, Mapping) and (image.get("bytes") or image.get("path")):
        if image.get("bytes"):
            return {"path": image.get("path"), "bytes": image["bytes"]}, _probe(io.BytesIO(image["bytes"]),
                                                                                 "image bytes")
        return _check_image(image["path"], readable)
    return None, f"unreadable image of type {type(image).__name__}"


def _check_array(array: np.ndarray) -> tuple[Any, str | None]:
    if array.dtype != np.uint8:
        return None, f"image array must be uint8, got {array.dtype}"
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)) or min(array.shape[:2]) == 0:
        return None, f"image array must be (H, W) or (H, W, 3), got shape {array.shape}"
    return PILImage.fromarray(array), None


def _check_decoded(image: PILImage.Image, what: str) -> str | None:
    """Mode and size checks shared by PIL images and decoded files; a problem string or None."""
    width, height = image.size
    if width == 0 or height == 0:
        return f"unreadable {what}: empty {width}x{height} image"
    if image.mode not in IMAGE_MODES:
        return (f"{what} has unsupported mode {image.mode!r} (16/32-bit or float pixels do not convert to RGB); "
                f"save it as 8-bit L or RGB (accepted modes: {', '.join(sorted(IMAGE_MODES))})")
    return None


def _probe(source: str | io.BytesIO, what: str) -> str | None:
    """Decode the image fully (a truncated or corrupt body fails here, not in a worker mid-round).

    Returns a problem string or None.
    """
    try:
        with PILImage.open(source) as handle:
            handle.load()
            return _check_decoded(handle, what)
    except (OSError, ValueError, SyntaxError, EOFError, PILImage.DecompressionBombError) as error:
        return f"unreadable {what}: {type(error).__name__}: {error}"
