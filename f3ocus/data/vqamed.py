"""Loader for ImageCLEF VQA-Med (2019, 2020, 2021; T1's three VQA-Med clients) from an unpacked release folder.

It owns the releases' text layout and its mapping into the shared row layout. `path` is one year's folder
(the official zips unpacked anywhere below it, or a folder you assembled). QA files are found by name,
case-insensitively, anywhere below it (a `QAPairsByCategory/` folder is skipped: it repeats the
all-pairs file); the file name says the split:

- pair files, one `image_id|question|answer` per line (2019 `All_QA_Pairs_train.txt` / `_val.txt`, 2020
  `VQAnswering_2020_Train_QA_pairs.txt` / `_Val_QA_Pairs.txt`, 2021
  `VQA-Med-2021-VQAnswering-Task1-New-ValidationSet.txt`) or `image_id|category|question|answer` (2019
  `VQAMed2019_Test_Questions_w_Ref_Answers.txt`): names with `qa_pairs`, `validationset` or `ref_answers`;
- a question file `image_id|question` with its reference-answer file `image_id|answer[|other accepted
  answers]` in the same folder (2020 `VQAMed2020-Task1-VQAnswering-Test-Questions.txt` +
  `...-Test-ReferenceAnswers.txt`, 2021 `Task1-VQA-2021-TestSet-Questions.txt` + `...-ReferenceAnswers.txt`;
  the first answer is kept); a question file without answers (2019 `VQAMed2019_Test_Questions.txt`) is
  ignored;
- or, for an assembled folder, `train.txt`, `val.txt`, `test.txt` in either pair format.

A name with `train` is the train split; `val` or `test` is the held-out split (the schema has train/test
only, as in `f3ocus.data.hub`). Images are `<image_id>.jpg` (or .jpeg/.png) anywhere below the folder
(when an id has several files, the one under a folder named for the split wins). Rows: modality
"radiology", question_type = the 2019 category when the file gives it, else read off the question
(modality / plane / organ / abnormality / other), label -1.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import numpy as np
from datasets import Dataset, concatenate_datasets

from f3ocus.data.schema import BAD_COLUMN, BadRows, DataError, make_vqa_dataset

SOURCE = "vqamed"
MODALITY = "radiology"
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png")
SKIPPED_FOLDERS: frozenset[str] = frozenset({"qapairsbycategory"})
_PAIR_MARKERS: tuple[str, ...] = ("qa_pairs", "qa-pairs", "validationset", "ref_answers")
_SPLIT_WORDS: dict[str, tuple[str, ...]] = {"train": ("train",), "test": ("val", "test")}
_CATEGORY_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("abnormality", ("abnormal", "alarming", "normal", "wrong")),
    ("plane", ("plane",)),
    ("organ", ("organ",)),
    ("modality", ("modality", "contrast", "weighted", "flair", "imaging", "mri", "ct ", "scan", "taken", "kind of",
                  "type of")),
)


def load_vqamed(folder: str | Path, split: Literal["train", "test"], *, source: str = SOURCE,
                on_bad_row: Literal["fail", "skip"] = "fail", limit: int | None = None, seed: int = 0,
                report: BadRows | None = None) -> Dataset:
    """Load one split of a VQA-Med year folder in the shared row layout.

    Args:
        folder: the year's folder (see the module docstring for the files it reads).
        split: "train", or "test" (the release's validation and test files together).
        source: the `source` value of the rows, e.g. "vqamed2019".
        on_bad_row: a line without question or answer, an unknown image id or an unreadable image is a bad
            row: "fail" raises naming the file and line, "skip" drops it (counted in `report`).
        limit: keep a seeded random subset of this many rows (before images are checked); None = all.
        seed: seeds the subset.
        report: skipped rows are counted here, per reason.

    Returns:
        Dataset with `FEATURES`; client "", source = `source`, modality "radiology".

    Raises:
        DataError: not a folder, no QA file for the split, or (with "fail") a bad row.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{root}: not a VQA-Med folder")
    files = find_qa_files(root, split)
    if not files:
        raise DataError(f"{root}: no VQA-Med {split} file (e.g. All_QA_Pairs_{'train' if split == 'train' else 'val'}"
                        f".txt, VQAnswering_2020_{'Train' if split == 'train' else 'Val'}_QA_pairs.txt or "
                        f"{split}.txt with image_id|question|answer lines)")
    images = _image_index(root)
    parts = []
    for questions, answers in files:
        records = _read_records(questions, answers, on_bad_row, report)
        if limit is not None and len(records) > limit:
            keep = np.sort(np.random.default_rng(seed).choice(len(records), size=limit, replace=False))
            records = [records[index] for index in keep]
        columns = _columns(records, images, root, split, source)
        dataset, _ = make_vqa_dataset(columns, origin=str(questions), on_bad_row=on_bad_row, report=report)
        parts.append(dataset)
    return concatenate_datasets(parts) if len(parts) > 1 else parts[0]


def find_qa_files(root: Path, split: str) -> list[tuple[Path, Path | None]]:
    """The (question-or-pair file, reference-answer file or None) pairs of `split` below `root`, sorted."""
    found: list[tuple[Path, Path | None]] = []
    texts = sorted(path for path in root.rglob("*.txt")
                   if not SKIPPED_FOLDERS & {part.lower() for part in path.relative_to(root).parts[:-1]})
    for path in texts:
        name = path.name.lower()
        if not any(word in name for word in _SPLIT_WORDS[split]):
            continue
        if path.stem.lower() in ("train", "val", "test") or any(marker in name for marker in _PAIR_MARKERS):
            found.append((path, None))
        elif name.endswith("questions.txt"):
            answers = _answer_file(path)
            if answers is not None:
                found.append((path, answers))
    return found


def question_category(question: str) -> str:
    """The 2019 category a question asks about: abnormality, plane, organ, modality, or "other"."""
    text = f" {question.lower()} "
    for category, words in _CATEGORY_WORDS:
        if any(word in text for word in words):
            return category
    return "other"


def _answer_file(questions: Path) -> Path | None:
    """`...Questions.txt` -> the `...ReferenceAnswers.txt` beside it (2020/2021 test sets), if any."""
    stem = questions.name[: -len("questions.txt")]
    for candidate in questions.parent.glob("*.txt"):
        lower = candidate.name.lower()
        if lower.startswith(stem.lower()) and "referenceanswers" in lower.replace("-", "").replace("_", ""):
            return candidate
    return None


Record = tuple[str, str, str, str]  # (image id, category or "", question, answer)


def _read_records(questions: Path, answers: Path | None, on_bad_row: str, report: BadRows | None) -> list[Record]:
    """Parse a pair file (3 or 4 fields a line) or join a question file with its reference answers."""
    reference = {fields[0]: fields[1] for _, fields in _lines(answers) if len(fields) >= 2} if answers else None
    records: list[Record] = []
    for number, fields in _lines(questions):
        if reference is not None and len(fields) == 2:
            records.append((fields[0], "", fields[1], reference.get(fields[0], "")))
        elif reference is None and len(fields) in (3, 4):
            category = fields[1] if len(fields) == 4 else ""
            records.append((fields[0], category, fields[-2], fields[-1]))
        else:
            expected = "image_id|question" if reference is not None else "image_id|[category|]question|answer"
            message = f"{questions}: line {number}: expected {expected}, got {len(fields)} field(s)"
            if on_bad_row == "fail":
                raise DataError(message)
            if report is not None:
                report.add(BAD_COLUMN, message)
    return records


def _lines(path: Path) -> Iterable[tuple[int, list[str]]]:
    """(1-based line number, stripped `|` fields) of every non-blank line; tabs and runs of spaces collapse."""
    with path.open(encoding="utf-8-sig", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield number, [re.sub(r"\s+", " ", field).strip() for field in line.rstrip("\r\n").split("|")]


def _columns(records: list[Record], images: dict[str, list[Path]], root: Path, split: str,
             source: str) -> dict[str, list[Any]]:
    n_rows = len(records)
    return {
        "image": [_pick_image(images.get(image_id.lower(), []), split, root, f"{image_id}.jpg")
                  for image_id, *_ in records],
        "question": [question for _, _, question, _ in records],
        "answer": [answer for _, _, _, answer in records],
        "question_type": [(category or question_category(question)).lower()
                          for _, category, question, _ in records],
        "modality": [MODALITY] * n_rows, "source": [source] * n_rows, "split": [split] * n_rows,
    }


def _image_index(root: Path) -> dict[str, list[Path]]:
    """Lower-case image id (file stem) -> image files with that stem below `root`."""
    index: dict[str, list[Path]] = {}
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            index.setdefault(path.stem.lower(), []).append(path)
    return index


def _pick_image(paths: list[Path], split: str, root: Path, missing: str) -> str:
    """The file for one id: the one under a folder named for the split when there are several; a missing id
    gives a path that does not exist, which `make_vqa_dataset` reports as an unreadable image."""
    if not paths:
        return str(root / missing)
    words = _SPLIT_WORDS[split]
    for path in paths:
        if any(word in part.lower() for part in path.relative_to(root).parts[:-1] for word in words):
            return str(path)
    return str(paths[0])
