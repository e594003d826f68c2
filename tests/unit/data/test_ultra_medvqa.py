"""Ultra-MedVQA builder on generated npz: clients, 80/20 split, question types, answers = labels; npz validation."""

from __future__ import annotations

import collections
import shutil
from pathlib import Path

import numpy as np
import pytest

from f3ocus.data.medmnist_meta import INFO
from f3ocus.data.question_templates import question_types
from f3ocus.data.schema import DataError, column_values
from f3ocus.data.ultra_medvqa import build_ultra_medvqa, find_npz_files, load_medmnist_npz

from .conftest import SMALL_FLAGS


@pytest.fixture(scope="module")
def built(npz_dir: Path):
    return build_ultra_medvqa(npz_dir, seed=0)


def test_one_client_per_file_and_80_20_split(built) -> None:
    clients = column_values(built, "client")
    splits = column_values(built, "split")
    assert sorted(set(clients)) == sorted(SMALL_FLAGS)
    assert column_values(built, "source") == clients
    for flag in SMALL_FLAGS:
        counts = collections.Counter(split for client, split in zip(clients, splits) if client == flag)
        assert counts["train"] + counts["test"] == 200  # train + val + test pooled
        assert counts["test"] == 40
    for client, modality in zip(clients, column_values(built, "modality")):
        assert modality == INFO[client].modality


def test_question_types_apply_and_answers_match_labels(built, npz_dir: Path) -> None:
    rows = built.select_columns(["client", "question", "answer", "question_type", "label"]).to_list()
    seen = collections.defaultdict(set)
    for row in rows:
        info = INFO[row["client"]]
        seen[row["client"]].add(row["question_type"])
        assert row["question_type"] in question_types(info)
        if row["question_type"] in ("modality", "anatomy"):
            assert row["answer"] == getattr(info, row["question_type"]) and row["label"] == -1
        elif info.task == "multi-label":
            assert row["answer"] == ("yes" if row["label"] == 1 else "no")
            assert row["question"].startswith(("is ", "does "))
        else:
            assert row["answer"] == info.answers[row["label"]]
    assert seen["retinamnist"] == {"modality", "anatomy", "grading"}
    assert seen["pathmnist"] == {"modality", "anatomy", "tissue"}
    assert seen["bloodmnist"] == {"modality", "anatomy", "attribute"}
    assert seen["chestmnist"] == {"modality", "anatomy", "diagnosis"}


def test_label_answers_match_the_npz_labels(npz_dir: Path) -> None:
    # One flag, no subsampling: row i of the dataset is pooled image i of the file.
    ds = build_ultra_medvqa(npz_dir, flags=["organamnist"], seed=5)
    _, labels = load_medmnist_npz(npz_dir / "organamnist.npz", INFO["organamnist"])
    for row, (kind, label) in enumerate(zip(column_values(ds, "question_type"), column_values(ds, "label"))):
        if kind == "attribute":
            assert label == labels[row, 0]
    image = np.asarray(ds[7]["image"])
    with np.load(npz_dir / "organamnist.npz") as archive:
        np.testing.assert_array_equal(image, archive["train_images"][7])


def test_chest_yes_no_is_balanced(tmp_path: Path) -> None:
    from f3ocus.data.medmnist_synth import generate_medmnist_npz
    generate_medmnist_npz(tmp_path, flags=["chestmnist"], n_train=900, n_val=0, n_test=0, seed=2)
    ds = build_ultra_medvqa(tmp_path, seed=2)
    answers = [a for a, k in zip(column_values(ds, "answer"), column_values(ds, "question_type")) if k == "diagnosis"]
    assert 0.4 < answers.count("yes") / len(answers) < 0.6


def test_seeded_cap_and_determinism(npz_dir: Path) -> None:
    first = build_ultra_medvqa(npz_dir, flags=["pathmnist", "bloodmnist"], max_per_client=50, seed=3)
    again = build_ultra_medvqa(npz_dir, flags=["pathmnist", "bloodmnist"], max_per_client=50, seed=3)
    assert len(first) == 100
    assert first.select_columns(["question", "answer", "split"]).to_list() == \
        again.select_columns(["question", "answer", "split"]).to_list()


def test_size_suffixed_files_are_found(npz_dir: Path, tmp_path: Path) -> None:
    shutil.copy(npz_dir / "pathmnist.npz", tmp_path / "pathmnist_64.npz")
    (tmp_path / "notes.npz").write_bytes(b"")
    assert find_npz_files(tmp_path) == {"pathmnist": tmp_path / "pathmnist_64.npz"}
    with pytest.raises(DataError, match="no chestmnist.npz"):
        find_npz_files(tmp_path, ["chestmnist"])


def _write(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def _good_arrays(n_channels: int = 1) -> dict[str, np.ndarray]:
    tail = (8, 8) if n_channels == 1 else (8, 8, 3)
    return {f"{split}_{kind}": (np.zeros((4, *tail), np.uint8) if kind == "images" else np.zeros((4, 1), np.uint8))
            for split in ("train", "val", "test") for kind in ("images", "labels")}


@pytest.mark.parametrize(("change", "message"), [
    (lambda a: a.pop("val_labels"), "missing key(s) ['val_labels']"),
    (lambda a: a.update(train_images=np.zeros((4, 8, 8), np.float32)), "key 'train_images': images must be uint8"),
    (lambda a: a.update(test_images=np.zeros((4, 8, 8), np.uint8)), "key 'test_images': bloodmnist images must be"),
    (lambda a: a.update(val_labels=np.zeros((4,), np.uint8)), "key 'val_labels': bloodmnist labels must be (N, 1)"),
    (lambda a: a.update(train_labels=np.zeros((3, 1), np.uint8)), "key 'train_labels': 3 labels for 4 images"),
    (lambda a: a.update(train_labels=np.full((4, 1), 8, np.uint8)), "key 'train_labels': label values must be in"),
    (lambda a: a.update(test_labels=np.zeros((4, 1), np.float64)), "key 'test_labels': labels must be integers"),
])
def test_npz_validation_names_file_and_key(tmp_path: Path, change, message: str) -> None:
    arrays = _good_arrays(n_channels=3)
    change(arrays)
    path = _write(tmp_path / "bloodmnist.npz", **arrays)
    with pytest.raises(DataError) as error:
        build_ultra_medvqa(tmp_path)
    assert str(path) in str(error.value)
    assert message in str(error.value)


def test_gray_file_for_rgb_dataset_and_bad_file(tmp_path: Path) -> None:
    _write(tmp_path / "pathmnist.npz", **_good_arrays(n_channels=1))
    with pytest.raises(DataError, match=r"pathmnist.npz: key 'train_images'"):
        build_ultra_medvqa(tmp_path)
    (tmp_path / "pathmnist.npz").write_bytes(b"garbage")
    with pytest.raises(DataError, match="not a readable .npz"):
        build_ultra_medvqa(tmp_path)
