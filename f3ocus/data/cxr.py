"""Chest X-ray multi-label classification (T4 Open-I, T5 MIMIC-CXR, T6's classification clients) from a local folder.

It owns reading a CSV + image folder and mapping each image's findings onto the 15 classes of
`f3ocus.data.multilabel` (rows follow that module's contract: question_type "multilabel", the fixed
question, answer = the findings joined with "|", label = index of the first finding). The layout read:

- a label CSV at the top of the folder: `train.csv` plus `test.csv` / `valid.csv` / `val.csv` (one per
  split), or one CSV (e.g. NIH's `Data_Entry_2017.csv`) whose rows are split by a `split` column
  (train / test / val / valid / validate), else by NIH's `test_list.txt` (image names of the test split),
  else by a seeded re-split with `test_fraction`;
- an image column, the first of `Image Index` (NIH ChestX-ray14), `Path` (CheXpert), `path`, `image`,
  `image_path`, `filename`, `file` (case-insensitive): a path that is absolute, relative to the folder, to
  `folder/images`, or to the folder's parent (CheXpert paths start with the dataset folder), or else a file
  name found anywhere below the folder (NIH's `images_001/images/...`);
- labels, either a `Finding Labels` column "Cardiomegaly|Effusion" (NIH ChestX-ray14 / Open-I style;
  "No Finding" for none), or one column per finding (CheXpert / MIMIC-CXR-JPG `chexpert.csv` style) with
  1 / 1.0 = present, 0 / 0.0 / blank = absent and -1 / -1.0 = uncertain.

Names map case-insensitively, `_` = space, onto `CXR_FINDINGS` ("Pleural_Thickening" -> "pleural
thickening", "Effusion" and "Pleural Effusion" -> "effusion", "Infiltrate" -> "infiltration"). A MIMIC-CXR
user joins `mimic-cxr-2.0.0-chexpert.csv` with the image paths (and `-split.csv` as a `split` column) into
one CSV first. Bad rows (data.on_bad_row): an unknown finding name in `Finding Labels`, a label value other
than 1/0/-1/blank, an empty `Finding Labels`, a row whose only positives lie outside the 15 classes
(per-finding columns: no positive finding and a `No Finding` column that is not 1, e.g. only "Lung
Opacity" or "Support Devices"), and a missing or unreadable image.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from datasets import Dataset

from f3ocus.data.multilabel import CXR_FINDINGS, MULTILABEL, MULTILABEL_QUESTION, NO_FINDING, decode_findings, \
    encode_findings
from f3ocus.data.schema import ANSWER_NOT_IN_SET, BAD_LABEL, MISSING_ANSWER, BadRows, DataError, make_vqa_dataset

SOURCE = "cxr"
MODALITY = "x-ray"
IMAGE_COLUMNS: tuple[str, ...] = ("image index", "path", "image_path", "image", "filename", "file")
LABELS_COLUMN = "finding labels"
SPLIT_FILES: dict[str, tuple[str, ...]] = {"train": ("train",), "test": ("test", "valid", "val", "validation")}
SPLIT_VALUES: dict[str, str] = {"train": "train", "test": "test", "val": "test", "valid": "test",
                                "validate": "test", "validation": "test"}
ALIASES: dict[str, str] = {"pleural effusion": "effusion", "infiltrate": "infiltration", "normal": NO_FINDING}
# DEVIATION (choice): CheXpert "uncertain" (-1) counts as absent ("U-Zeros", Irvin et al. 2019): a class is
# positive only where the report states it, and blank (not mentioned) is absent too.
UNCERTAIN_IS_PRESENT = False
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg")


def finding_name(text: str) -> str | None:
    """Map a dataset's finding name onto `CXR_FINDINGS` ("Pleural_Thickening" -> "pleural thickening"), else None."""
    name = " ".join(str(text).replace("_", " ").lower().split())
    name = ALIASES.get(name, name)
    return name if name in CXR_FINDINGS else None


def load_cxr_multilabel(folder: str | Path, split: Literal["train", "test"], *, source: str = SOURCE,
                        on_bad_row: Literal["fail", "skip"] = "fail", limit: int | None = None, seed: int = 0,
                        test_fraction: float = 0.2, report: BadRows | None = None) -> Dataset:
    """Load one split of a chest X-ray label CSV + image folder as multi-label rows.

    Args:
        folder: the dataset folder (see the module docstring for what it holds).
        split: "train" or "test" (validation rows count as test).
        source: the `source` value of the rows, e.g. "openi".
        on_bad_row: "fail" raises on the first bad row naming the CSV and row; "skip" drops it (counted in
            `report`).
        limit: keep a seeded random subset of this many rows of the split (before images are checked).
        seed: seeds the subset and (for one CSV without split information) the re-split.
        test_fraction: share of rows in "test" when the split has to be drawn.
        report: skipped rows are counted here, per reason.

    Returns:
        Dataset with `FEATURES`: question_type "multilabel", question `MULTILABEL_QUESTION`, answer the
        joined findings, label the index of the first finding in `CXR_FINDINGS`, modality "x-ray".

    Raises:
        DataError: no usable CSV, no image or label column, or (with "fail") a bad row.
    """
    root = Path(folder)
    csv_path, table = _split_table(root, split, test_fraction, seed)
    if limit is not None and len(table) > limit:
        keep = np.sort(np.random.default_rng(seed).choice(len(table), size=limit, replace=False))
        table = table.iloc[keep]
    image_column = _column(table, IMAGE_COLUMNS, csv_path, "image")
    findings_of = _label_reader(table, csv_path)
    resolve = _ImageResolver(root)
    columns: dict[str, list[Any]] = {"image": [], "answer": [], "label": []}
    for row_index, row in table.iterrows():
        answer, problem = findings_of(row)
        if problem is not None:
            reason, text = problem
            message = f"{csv_path}: row {row_index}: {text}"
            if on_bad_row == "fail":
                raise DataError(message)
            if report is not None:
                report.add(reason, message)
            continue
        columns["image"].append(resolve(str(row[image_column])))
        columns["answer"].append(answer)
        columns["label"].append(CXR_FINDINGS.index(decode_findings(answer)[0]))
    n_rows = len(columns["answer"])
    columns.update(question=[MULTILABEL_QUESTION] * n_rows, question_type=[MULTILABEL] * n_rows,
                   modality=[MODALITY] * n_rows, source=[source] * n_rows, split=[split] * n_rows)
    dataset, _ = make_vqa_dataset(columns, origin=str(csv_path), on_bad_row=on_bad_row, report=report)
    return dataset


def _split_table(root: Path, split: str, test_fraction: float, seed: int) -> tuple[Path, pd.DataFrame]:
    """(CSV path, its rows of `split`), rows indexed by their 0-based position in the CSV."""
    if not root.is_dir():
        raise DataError(f"{root}: not a chest X-ray dataset folder")
    csvs = {path.stem.lower(): path for path in sorted(root.glob("*.csv"))}
    if "train" in csvs:
        name = next((stem for stem in SPLIT_FILES[split] if stem in csvs), None)
        if name is None:
            raise DataError(f"{root}: has train.csv but no {' / '.join(SPLIT_FILES['test'])}.csv for the test split")
        return csvs[name], _read_csv(csvs[name])
    labelled = [path for path in csvs.values() if _has_labels(path)]
    if len(labelled) != 1:
        found = ", ".join(path.name for path in labelled) or "none"
        raise DataError(f"{root}: expected train.csv + test.csv or one label CSV (a 'Finding Labels' column or one "
                        f"column per finding); found {found}")
    table = _read_csv(labelled[0])
    return labelled[0], table[_split_of(root, table, test_fraction, seed, labelled[0]) == split]


def _split_of(root: Path, table: pd.DataFrame, test_fraction: float, seed: int, csv_path: Path) -> np.ndarray:
    """(N,) "train"/"test" per row of a single CSV: its split column, NIH test_list.txt, or a seeded draw."""
    lower = {name.lower(): name for name in table.columns}
    if "split" in lower:
        values = table[lower["split"]].str.strip().str.lower()
        unknown = sorted(set(values) - set(SPLIT_VALUES))
        if unknown:
            raise DataError(f"{csv_path}: column 'split' has unknown value(s) {unknown[:3]}; "
                            f"expected {sorted(SPLIT_VALUES)}")
        return values.map(SPLIT_VALUES).to_numpy(dtype=object)
    test_list = next((path for path in root.glob("*.txt") if path.name.lower() == "test_list.txt"), None)
    if test_list is not None:
        names = {line.strip() for line in test_list.read_text().splitlines() if line.strip()}
        images = table[_column(table, IMAGE_COLUMNS, csv_path, "image")].map(lambda value: Path(str(value)).name)
        return np.where(images.isin(names), "test", "train").astype(object)
    split = np.full(len(table), "train", dtype=object)
    n_test = int(round(len(table) * test_fraction))
    split[np.random.default_rng(seed).permutation(len(table))[:n_test]] = "test"
    return split


def _read_csv(path: Path) -> pd.DataFrame:
    """All cells as text ("" for blank); rows longer than the header are an error, not a silent shift."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig", index_col=False)
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.ParserWarning) as error:
        raise DataError(f"{path}: not a readable CSV: {error}") from error
    table.index = pd.RangeIndex(len(table))
    return table


def _has_labels(path: Path) -> bool:
    header = _read_csv_header(path)
    return LABELS_COLUMN in {name.lower() for name in header} or any(finding_name(name) for name in header)


def _read_csv_header(path: Path) -> list[str]:
    try:
        return list(pd.read_csv(path, nrows=0, encoding="utf-8-sig").columns)
    except (OSError, ValueError, pd.errors.ParserError):
        return []


def _column(table: pd.DataFrame, names: Sequence[str], csv_path: Path, what: str) -> str:
    lower = {name.lower(): name for name in table.columns}
    for name in names:
        if name in lower:
            return lower[name]
    raise DataError(f"{csv_path}: no {what} column; expected one of {list(names)} (case-insensitive), "
                    f"got {list(table.columns)}")


Problem = tuple[str, str]


def _label_reader(table: pd.DataFrame, csv_path: Path):
    """A function row -> (answer, None) or ("", (reason, problem)) for this CSV's label layout."""
    lower = {name.lower(): name for name in table.columns}
    if LABELS_COLUMN in lower:
        column = lower[LABELS_COLUMN]
        return lambda row: _from_finding_labels(row[column])
    finding_columns = {name: finding_name(name) for name in table.columns if finding_name(name)}
    if not finding_columns:
        raise DataError(f"{csv_path}: no label columns: expected 'Finding Labels' or columns named after the "
                        f"findings ({', '.join(CXR_FINDINGS)})")
    return lambda row: _from_columns(row, finding_columns)


def _from_finding_labels(text: str) -> tuple[str, Problem | None]:
    parts = [part.strip() for part in str(text).split("|") if part.strip()]
    if not parts:
        return "", (MISSING_ANSWER, "empty 'Finding Labels'")
    names = [finding_name(part) for part in parts]
    unknown = [part for part, name in zip(parts, names) if name is None]
    if unknown:
        return "", (ANSWER_NOT_IN_SET, f"unknown finding(s) {unknown} (the 15 classes: {', '.join(CXR_FINDINGS)})")
    return encode_findings(names), None


def _from_columns(row: pd.Series, finding_columns: dict[str, str]) -> tuple[str, Problem | None]:
    present, no_finding = [], None
    for column, name in finding_columns.items():
        value = _label_value(row[column])
        if value is None:
            return "", (BAD_LABEL, f"column {column!r}: label {row[column]!r} is not 1, 0, -1 or blank")
        if name == NO_FINDING:
            no_finding = value
        elif value == 1 or (value == -1 and UNCERTAIN_IS_PRESENT):
            present.append(name)
    if not present and no_finding is not None and no_finding != 1:
        return "", (ANSWER_NOT_IN_SET, "no positive finding among the 15 classes and 'No Finding' is not 1 (its "
                                       "findings lie outside the 15 classes, or are only uncertain)")
    return encode_findings(present), None


def _label_value(value: Any) -> int | None:
    """1 / 0 / -1 from "1", "1.0", "0", "", "-1.0" ...; None for anything else."""
    text = str(value).strip().lower()
    if text in ("", "nan", "none"):
        return 0
    try:
        number = float(text)
    except ValueError:
        return None
    return int(number) if number in (1.0, 0.0, -1.0) else None


class _ImageResolver:
    """Image column value -> a file path (a path that does not exist when nothing matches: reported as unreadable)."""

    def __init__(self, root: Path):
        self._root = root
        self._by_name: dict[str, Path] | None = None

    def __call__(self, value: str) -> str:
        path = Path(value)
        if path.is_absolute():
            return str(path)
        for base in (self._root, self._root / "images", self._root.parent):
            if (base / path).is_file():
                return str(base / path)
        if self._by_name is None:
            self._by_name = {found.name: found for found in sorted(self._root.rglob("*"))
                             if found.suffix.lower() in IMAGE_SUFFIXES}
        return str(self._by_name.get(path.name, self._root / path))
