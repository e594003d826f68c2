"""Ultra-MedVQA (docs/METHOD.md §5, task T3): VQA triplets built from MedMNIST-v2 2D `.npz` labels.

It owns reading and validating MedMNIST `.npz` files (real ones at 28/64/128/224 px, or the synthetic
ones of `f3ocus.data.medmnist_synth`) and turning each image into one question with its answer. One
client per file (client = source = flag); a file's train, val and test images are pooled and re-split
80/20 (seeded) into the `split` column, as the paper re-splits. Question types come from
`f3ocus.data.question_templates` (modality, anatomy, and the dataset's label question: diagnosis,
grading, tissue or attribute). Multi-label files (chestmnist) ask "is there <finding>?", balanced
between yes and no. `label` is the class index behind a label answer, 1/0 for yes/no, -1 otherwise.
"""

from __future__ import annotations

import re
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from datasets import Dataset, concatenate_datasets

from f3ocus.data.medmnist_meta import FLAGS, MedMnistInfo, medmnist_info
from f3ocus.data.question_templates import YES_NO, all_answers, question_types, templates_for
from f3ocus.data.schema import LABEL_OUT_OF_RANGE, BadRows, DataError, make_vqa_dataset

NPZ_SPLITS: tuple[str, ...] = ("train", "val", "test")
NPZ_KEYS: tuple[str, ...] = tuple(f"{split}_{kind}" for split in NPZ_SPLITS for kind in ("images", "labels"))
_FILE_NAME = re.compile(r"^(?P<flag>[a-z]+mnist)(?:_(?P<size>\d+))?\.npz$")


LABEL_QUESTION_RATE = 0.6  # share of images asked their label question (diagnosis / grading / tissue / ...)


def find_npz_files(npz_dir: str | Path, flags: Sequence[str] | None = None) -> dict[str, Path]:
    """Map each MedMNIST flag to its `.npz` file in `npz_dir` (`<flag>.npz` or `<flag>_<size>.npz`).

    Args:
        npz_dir: folder holding the files.
        flags: flags to find; None = every known flag that has a file.

    Returns:
        flag -> path, in `FLAGS` order (or `flags` order).

    Raises:
        DataError: missing folder, a requested flag without a file, two files for one flag, or no file.
    """
    folder = Path(npz_dir)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a directory of MedMNIST .npz files")
    found: dict[str, Path] = {}
    for path in sorted(folder.glob("*.npz")):
        match = _FILE_NAME.match(path.name)
        if match is None or match["flag"] not in FLAGS:
            continue
        if match["flag"] in found:
            raise DataError(f"{folder}: two files for {match['flag']}: {found[match['flag']].name}, {path.name}")
        found[match["flag"]] = path
    wanted = list(flags) if flags is not None else [flag for flag in FLAGS if flag in found]
    for flag in wanted:
        if flag not in FLAGS:
            raise DataError(f"{folder}: unknown MedMNIST flag {flag!r}; known: {', '.join(FLAGS)}")
        if flag not in found:
            raise DataError(f"{folder}: no {flag}.npz or {flag}_<size>.npz")
    if not wanted:
        raise DataError(f"{folder}: no MedMNIST .npz file found (expected e.g. pathmnist.npz)")
    return {flag: found[flag] for flag in wanted}


def load_medmnist_npz(path: str | Path, info: MedMnistInfo, *, on_bad_row: Literal["fail", "skip"] = "fail",
                      report: BadRows | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Load and validate one MedMNIST `.npz`, pooling its train, val and test splits.

    Args:
        path: the file.
        info: its table entry (channels, task, number of classes).
        on_bad_row: what a label value out of range does: "fail" raises, "skip" drops that image (counted in
            `report` as `label_out_of_range`). Structural problems (keys, dtypes, shapes, counts) always raise.
        report: skipped images are counted here.

    Returns:
        (images uint8 (N, H, W) or (N, H, W, 3), labels int64 (N, 1) or (N, C)).

    Raises:
        DataError: unreadable file, missing key, wrong dtype or shape, image/label count mismatch or (with
            "fail") a label out of range; the message names the file and the key.
    """
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DataError(f"{path}: not a readable .npz file: {error}") from error
    if not isinstance(archive, np.lib.npyio.NpzFile):  # np.load also reads a bare .npy / pickle here
        raise DataError(f"{path}: not a .npz archive (np.load gave a {type(archive).__name__})")
    with archive:
        missing = [key for key in NPZ_KEYS if key not in archive.files]
        if missing:
            raise DataError(f"{path}: missing key(s) {missing}; MedMNIST files hold {list(NPZ_KEYS)}")
        images = [_checked_images(path, archive, split, info) for split in NPZ_SPLITS]
        labels = [_checked_labels(path, archive, split, info, len(batch)) for split, batch in zip(NPZ_SPLITS, images)]
    sizes = {split: batch.shape[1:] for split, batch in zip(NPZ_SPLITS, images)}
    if len(set(sizes.values())) != 1:
        raise DataError(f"{path}: image shapes differ between splits: {sizes}")
    pooled_images, pooled_labels = np.concatenate(images), np.concatenate(labels)  # (N, ...), (N, W)
    high = 1 if info.task == "multi-label" else info.num_classes - 1
    bad = np.flatnonzero(((pooled_labels < 0) | (pooled_labels > high)).any(axis=1))
    if bad.size == 0:
        return pooled_images, pooled_labels
    offsets = np.cumsum([0] + [len(batch) for batch in labels])
    for row in bad:
        split_index = int(np.searchsorted(offsets, row, side="right") - 1)
        key, local = f"{NPZ_SPLITS[split_index]}_labels", int(row - offsets[split_index])
        message = (f"{path}: key {key!r}: row {local}: label value(s) {pooled_labels[row].tolist()} outside "
                   f"[0, {high}] ({info.flag} has {info.num_classes} classes)")
        if on_bad_row == "fail":
            values = labels[split_index]
            raise DataError(f"{path}: key {key!r}: label values must be in [0, {high}], got "
                            f"[{values.min()}, {values.max()}] (first bad row {local})")
        if report is not None:
            report.add(LABEL_OUT_OF_RANGE, message)
    good = np.setdiff1d(np.arange(len(pooled_labels)), bad)
    return pooled_images[good], pooled_labels[good]


def _read_key(path: Path | str, archive: Any, key: str) -> np.ndarray:
    """One array of the archive; a corrupt member or a pickled object array is a DataError naming the key."""
    try:
        return archive[key]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise DataError(f"{path}: key {key!r}: unreadable array: {type(error).__name__}: {error}") from error


def _checked_images(path: Path | str, archive: Any, split: str, info: MedMnistInfo) -> np.ndarray:
    key = f"{split}_images"
    images = _read_key(path, archive, key)
    if images.dtype != np.uint8:
        raise DataError(f"{path}: key {key!r}: images must be uint8, got {images.dtype}")
    expected = "(N, H, W)" if info.n_channels == 1 else "(N, H, W, 3)"
    good = images.ndim == 3 if info.n_channels == 1 else (images.ndim == 4 and images.shape[3] == 3)
    if not good or (images.ndim >= 3 and min(images.shape[1:3]) == 0):
        raise DataError(f"{path}: key {key!r}: {info.flag} images must be {expected}, got shape {images.shape}")
    return images


def _checked_labels(path: Path | str, archive: Any, split: str, info: MedMnistInfo, n_images: int) -> np.ndarray:
    key = f"{split}_labels"
    labels = _read_key(path, archive, key)
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: key {key!r}: labels must be integers, got {labels.dtype}")
    width = info.num_classes if info.task == "multi-label" else 1
    if labels.ndim != 2 or labels.shape[1] != width:
        raise DataError(f"{path}: key {key!r}: {info.flag} labels must be (N, {width}), got shape {labels.shape}")
    if labels.shape[0] != n_images:
        raise DataError(f"{path}: key {key!r}: {labels.shape[0]} labels for {n_images} images in {split}_images")
    return labels.astype(np.int64)  # value range: checked per row by the caller (on_bad_row)


def build_ultra_medvqa(npz_dir: str | Path, flags: Sequence[str] | None = None, max_per_client: int | None = None,
                       test_fraction: float = 0.2, seed: int = 0,
                       on_bad_row: Literal["fail", "skip"] = "fail", report: BadRows | None = None) -> Dataset:
    """Build Ultra-MedVQA from a folder of MedMNIST `.npz` files: one client per file, one question per image.

    Args:
        npz_dir: folder with `<flag>.npz` / `<flag>_<size>.npz` files.
        flags: which datasets; None = every known flag present.
        max_per_client: keep a seeded random subset of this many images per file; None = all.
        test_fraction: share of each client's pooled images put in split "test".
        seed: seeds the subset, the split and the question draws (per flag, so flags do not interact).
        on_bad_row: passed to `load_medmnist_npz` (label values) and `make_vqa_dataset` (rows).
        report: skipped rows are counted here, per reason.

    Returns:
        Dataset with `FEATURES`; client = source = flag.

    Raises:
        DataError: see `find_npz_files` and `load_medmnist_npz`; a file left with no usable row (always an
            error, whatever `on_bad_row` says: a client silently missing would change the federation).
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    parts = []
    for flag, path in find_npz_files(npz_dir, flags).items():
        info = medmnist_info(flag)
        file_report = BadRows()
        images, labels = load_medmnist_npz(path, info, on_bad_row=on_bad_row, report=file_report)
        rng = np.random.default_rng([seed, zlib.crc32(flag.encode())])
        keep = np.arange(len(images))
        if max_per_client is not None and max_per_client < len(images):
            keep = np.sort(rng.choice(len(images), size=max_per_client, replace=False))
        columns = _client_columns(info, labels[keep], test_fraction, rng)
        columns["image"] = list(images[keep])
        dataset, _ = make_vqa_dataset(columns, origin=str(path), on_bad_row=on_bad_row, answer_set=all_answers(info),
                                      report=file_report)
        if len(dataset) == 0:
            raise DataError(f"{path}: client {flag!r} has no usable rows ({file_report.summary()}); an empty client "
                            f"is an error whatever data.on_bad_row says: fix the file or leave {flag} out of "
                            f"data.modalities")
        if report is not None:
            report.merge(file_report)
        parts.append(dataset)
    return concatenate_datasets(parts) if len(parts) > 1 else parts[0]


def _client_columns(info: MedMnistInfo, labels: np.ndarray, test_fraction: float,
                    rng: np.random.Generator) -> dict[str, list[Any]]:
    """All columns but the image for one client's N images (labels (N, 1) or (N, C))."""
    n_images = len(labels)
    questions, answers, kinds, label_ids = _questions(info, labels, rng)
    n_test = int(round(n_images * test_fraction))
    if n_images >= 2:
        n_test = min(max(n_test, 1), n_images - 1)
    split = np.full(n_images, "train", dtype=object)
    split[rng.permutation(n_images)[:n_test]] = "test"
    return {
        "question": questions, "answer": answers, "question_type": kinds, "label": label_ids,
        "client": [info.flag] * n_images, "source": [info.flag] * n_images,
        "modality": [info.modality] * n_images, "split": split.tolist(),
    }


def _questions(info: MedMnistInfo, labels: np.ndarray,
               rng: np.random.Generator) -> tuple[list[str], list[str], list[str], list[int]]:
    """Draw one (question, answer, question_type, label) per image; labels (N, 1) or (N, C)."""
    kinds = question_types(info)  # (modality, anatomy, label question)
    # DEVIATION: the paper does not publish its question mix. The label question is the only one whose
    # answer needs more than recognising the modality, so it gets LABEL_QUESTION_RATE of the images and
    # modality / anatomy share the rest equally.
    rest = (1.0 - LABEL_QUESTION_RATE) / 2
    kind_ids = rng.choice(len(kinds), size=len(labels), p=[rest, rest, LABEL_QUESTION_RATE])
    phrasing = rng.integers(0, 3, len(labels))
    findings, present = _chest_findings(labels, kind_ids == kinds.index("diagnosis"), rng) \
        if info.task == "multi-label" else (None, None)
    questions, answers, label_ids = [], [], []
    for row, kind_id in enumerate(kind_ids):
        kind = kinds[kind_id]
        templates = templates_for(info, kind)
        template = templates[phrasing[row] % len(templates)]
        if kind == "modality" or kind == "anatomy":
            answer, label = getattr(info, kind), -1
        elif findings is not None:
            template = template.format(finding=info.answers[findings[row]])
            label = int(present[row])
            answer = YES_NO[label]
        else:
            label = int(labels[row, 0])
            answer = info.answers[label]
        questions.append(template)
        answers.append(answer)
        label_ids.append(label)
    return questions, answers, [kinds[k] for k in kind_ids], label_ids


def _chest_findings(labels: np.ndarray, asked: np.ndarray,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Pick the finding each multi-label question asks about, so that about half the answers are "yes".

    Args:
        labels: (N, C) 0/1.
        asked: (N,) bool, rows that get a finding question.
        rng: source of randomness.

    Returns:
        (finding index (N,), finding present (N,) bool); only rows in `asked` are meaningful.
    """
    has_any = labels.any(axis=1)
    n_asked, n_possible = int(asked.sum()), int((asked & has_any).sum())
    # Most images have no finding, so ask "yes" questions of images with findings more often to balance.
    p_yes = min(1.0, 0.5 * n_asked / n_possible) if n_possible else 0.0
    want_yes = (rng.random(len(labels)) < p_yes) & has_any
    want_yes |= labels.all(axis=1)  # nothing absent to ask about
    scores = rng.random(labels.shape) + np.where(labels == want_yes[:, None], 1.0, 0.0)
    findings = scores.argmax(axis=1)  # a random finding among those matching want_yes
    return findings, labels[np.arange(len(labels)), findings].astype(bool)
