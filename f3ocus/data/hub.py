"""Loaders for the public medical VQA sets SLAKE, VQA-RAD and PathVQA, mapped into the shared row layout.

It owns how each source's columns map onto `FEATURES`, and the closed-question filter (where each source
lives, its hub id, is declared in the task registry, `f3ocus.tasks`). A short name or hub id goes through
`datasets.load_dataset` (unreachable on the project's machines, so that branch is one call); a local
directory is either a `save_to_disk` dataset (Dataset or DatasetDict) or a folder with one file per split
whose image fields are paths relative to the folder: `<split>.jsonl` (one JSON object per line) or
`<split>.json` (a JSON array of objects, as the SLAKE 1.0 release ships `train.json`, `validate.json` and
`test.json` next to `imgs/`). VQA-RAD and PathVQA rows carry image, question, answer; SLAKE rows carry
img_name (a path relative to the image folder), question, answer, modality, answer_type (OPEN/CLOSED),
content_type, q_lang (en/zh: only English is kept) and location.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import datasets
from datasets import Dataset, DatasetDict

from f3ocus.data.schema import BadRows, DataError, make_vqa_dataset
from f3ocus.tasks import HUB_IDS  # short name -> hub id, declared with each task in the registry

MODALITY: dict[str, str] = {"vqa_rad": "radiology", "pathvqa": "pathology"}
SPLIT_ALIASES: dict[str, tuple[str, ...]] = {"validation": ("validation", "val", "valid", "validate"),
                                             "test": ("test",), "train": ("train",)}
YES_NO: frozenset[str] = frozenset({"yes", "no"})


def load_hub_vqa(name_or_path: str, split: str, *, answer_type: Literal["all", "closed"] = "all",
                 on_bad_row: Literal["fail", "skip"] = "fail", source: str | None = None,
                 image_root: str | Path | None = None, report: BadRows | None = None) -> Dataset:
    """Load one split of SLAKE, VQA-RAD or PathVQA in the shared row layout.

    Args:
        name_or_path: "slake" / "vqa_rad" / "pathvqa", a hub id, or a local directory.
        split: "train", "validation" or "test"; the `split` column is "train" for train, else "test".
        answer_type: "closed" keeps closed questions only (SLAKE answer_type CLOSED; others yes/no answers).
        on_bad_row: passed to `make_vqa_dataset`.
        source: "slake", "vqa_rad" or "pathvqa"; None = from the name, hub id or (SLAKE) columns.
        image_root: folder that SLAKE `img_name` paths are relative to; default the local directory
            (its `imgs/` subfolder if present).
        report: skipped rows are counted here, per reason.

    Returns:
        Dataset with `FEATURES`; client "", source = the source short name.

    Raises:
        DataError: unknown source, missing split file, unknown layout, or bad rows (with "fail").
    """
    if answer_type not in ("all", "closed"):
        raise ValueError(f"answer_type must be 'all' or 'closed', got {answer_type!r}")
    local = Path(name_or_path)
    if local.is_dir():
        records, origin = _read_local(local, split)
        base = Path(image_root) if image_root is not None else local
    else:
        hub_id = HUB_IDS.get(name_or_path, name_or_path)
        records, origin = _table_records(datasets.load_dataset(hub_id, split=split)), hub_id
        base = Path(image_root) if image_root is not None else None
    kind = source or _infer_source(name_or_path, records)
    columns = _map_records(records, kind, split, answer_type, base)
    dataset, _ = make_vqa_dataset(columns, origin=origin, on_bad_row=on_bad_row, report=report)
    return dataset


def _infer_source(name_or_path: str, records: Mapping[str, list[Any]]) -> str:
    if "img_name" in records:
        return "slake"
    text = name_or_path.lower().replace("-", "_")
    for short, hub_id in HUB_IDS.items():
        if short in text or hub_id.lower().replace("-", "_") in text:
            return short
    if "path" in text:
        return "pathvqa"
    if "rad" in text:
        return "vqa_rad"
    raise DataError(f"{name_or_path}: cannot tell whether this is slake, vqa_rad or pathvqa; pass source=")


def _read_local(folder: Path, split: str) -> tuple[dict[str, list[Any]], str]:
    """Return (column -> values, origin) from a save_to_disk folder, `<split>.jsonl` or `<split>.json`."""
    if (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file():
        loaded = datasets.load_from_disk(str(folder))
        if isinstance(loaded, DatasetDict):
            name = next((alias for alias in SPLIT_ALIASES.get(split, (split,)) if alias in loaded), None)
            if name is None:
                raise DataError(f"{folder}: no split {split!r}; has {sorted(loaded)}")
            return _table_records(loaded[name]), f"{folder} [{name}]"
        return _table_records(loaded), str(folder)
    for alias in SPLIT_ALIASES.get(split, (split,)):
        for reader, suffix in ((_read_jsonl, ".jsonl"), (_read_json_array, ".json")):
            path = folder / f"{alias}{suffix}"
            if path.is_file():
                return _columns(reader(path), path), str(path)
    raise DataError(f"{folder}: neither a save_to_disk dataset nor a {split}.jsonl or {split}.json file")


def _read_jsonl(path: Path) -> list[Any]:
    rows: list[Any] = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise DataError(f"{path}: line {line_number}: invalid JSON: {error}") from error
    return rows


def _read_json_array(path: Path) -> list[Any]:
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: invalid JSON: {error}") from error
    if not isinstance(rows, list):
        raise DataError(f"{path}: expected a JSON array of question objects, got a JSON {type(rows).__name__}")
    return rows


def _columns(rows: list[Any], path: Path) -> dict[str, list[Any]]:
    """Records -> column -> values (a key missing from a row reads None there)."""
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise DataError(f"{path}: row {number}: expected a JSON object, got {type(row).__name__}")
    names = sorted({key for row in rows for key in row})
    return {name: [row.get(name) for row in rows] for name in names}


def _table_records(table: Dataset) -> dict[str, list[Any]]:
    """Columns of a Dataset, with images left encoded ({"bytes", "path"} dicts) rather than decoded."""
    if "image" in table.column_names and isinstance(table.features["image"], datasets.Image):
        table = table.cast_column("image", datasets.Image(decode=False))
    return table.to_dict()


def _map_records(records: Mapping[str, list[Any]], kind: str, split: str, answer_type: str,
                 base: Path | None) -> dict[str, list[Any]]:
    """Map one source's columns to schema columns, dropping non-English and (optionally) open rows."""
    if kind not in HUB_IDS:
        raise DataError(f"unknown source {kind!r}; expected one of {sorted(HUB_IDS)}")
    n_rows = len(records.get("question", []))
    column = {name: records.get(name, [None] * n_rows) for name in
              ("image", "img_name", "question", "answer", "modality", "answer_type", "content_type", "q_lang")}
    out: dict[str, list[Any]] = {name: [] for name in ("image", "question", "answer", "modality", "question_type")}
    for row in range(n_rows):
        answer = "" if column["answer"][row] is None else str(column["answer"][row]).strip()
        if kind == "slake":
            if (column["q_lang"][row] or "en") != "en":
                continue
            closed = str(column["answer_type"][row] or "").upper() == "CLOSED"
            image = _resolve(column["img_name"][row], base, slake=True)
            modality = str(column["modality"][row] or "").lower()
            kind_of_question = str(column["content_type"][row] or column["answer_type"][row] or "").lower()
        else:
            closed = answer.lower() in YES_NO
            image = _resolve(column["image"][row], base, slake=False)
            modality, kind_of_question = MODALITY[kind], "closed" if closed else "open"
        if answer_type == "closed" and not closed:
            continue
        for name, value in (("image", image), ("question", column["question"][row]), ("answer", answer),
                            ("modality", modality), ("question_type", kind_of_question)):
            out[name].append(value)
    n_kept = len(out["question"])
    # DEVIATION: the schema has only train/test; a validation split is labelled "test".
    out.update(source=[kind] * n_kept, split=["train" if split == "train" else "test"] * n_kept)
    return out


def _resolve(image: Any, base: Path | None, *, slake: bool) -> Any:
    """Turn a relative image path into one under `base` (SLAKE: `base/imgs` when that folder exists)."""
    if isinstance(image, Mapping) and not image.get("bytes") and image.get("path"):
        image = image["path"]
    if not isinstance(image, str) or base is None or Path(image).is_absolute():
        return image
    if slake and (base / "imgs").is_dir():
        return str(base / "imgs" / image)
    return str(base / image)
