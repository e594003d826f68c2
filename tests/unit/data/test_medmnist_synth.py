"""Synthetic MedMNIST files: exact MedMNIST format, deterministic, and labels learnable from pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from f3ocus.data.medmnist_meta import FLAGS, INFO
from f3ocus.data.medmnist_synth import generate_medmnist_npz

KEYS = {"train_images", "train_labels", "val_images", "val_labels", "test_images", "test_labels"}


def test_every_flag_matches_the_medmnist_format(tmp_path: Path) -> None:
    paths = generate_medmnist_npz(tmp_path, flags=FLAGS, size=32, n_train=12, n_val=3, n_test=5, seed=0)
    assert [path.name for path in paths] == [f"{flag}.npz" for flag in FLAGS]
    for path in paths:
        info = INFO[path.stem]
        with np.load(path) as archive:
            assert set(archive.files) == KEYS
            for split, count in (("train", 12), ("val", 3), ("test", 5)):
                images, labels = archive[f"{split}_images"], archive[f"{split}_labels"]
                assert images.dtype == np.uint8 and labels.dtype == np.uint8
                tail = (32, 32) if info.n_channels == 1 else (32, 32, 3)
                assert images.shape == (count, *tail), path.name
                width = info.num_classes if info.task == "multi-label" else 1
                assert labels.shape == (count, width)
                assert labels.max() <= (1 if info.task == "multi-label" else info.num_classes - 1)


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    first = generate_medmnist_npz(tmp_path / "a", flags=["dermamnist"], n_train=20, n_val=2, n_test=4, seed=3)[0]
    again = generate_medmnist_npz(tmp_path / "b", flags=["dermamnist"], n_train=20, n_val=2, n_test=4, seed=3)[0]
    other = generate_medmnist_npz(tmp_path / "c", flags=["dermamnist"], n_train=20, n_val=2, n_test=4, seed=4)[0]
    with np.load(first) as a, np.load(again) as b, np.load(other) as c:
        for key in KEYS:
            np.testing.assert_array_equal(a[key], b[key])
        assert not np.array_equal(a["train_images"], c["train_images"])


def test_modalities_look_different(tmp_path: Path) -> None:
    paths = generate_medmnist_npz(tmp_path, flags=["pathmnist", "octmnist", "bloodmnist", "organamnist"],
                                  n_train=50, n_val=1, n_test=1, seed=0)
    means = []
    for path in paths:
        with np.load(path) as archive:
            images = archive["train_images"].astype(np.float64)
        means.append(images.reshape(len(images), -1).mean() if images.ndim == 3 else images.mean(axis=(0, 1, 2)).mean())
    assert min(abs(a - b) for i, a in enumerate(means) for b in means[i + 1:]) > 5.0


def _nearest_class_mean_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                                 test_y: np.ndarray, num_classes: int) -> float:
    means = np.stack([train_x[train_y == label].mean(axis=0) for label in range(num_classes)])  # (C, D)
    distances = ((test_x[:, None, :] - means[None]) ** 2).sum(axis=-1)  # (N, C)
    return float((distances.argmin(axis=1) == test_y).mean())


@pytest.mark.parametrize("flag", ["pathmnist", "dermamnist", "retinamnist", "tissuemnist", "organsmnist"])
def test_single_label_is_learnable_from_pixels(tmp_path: Path, flag: str) -> None:
    path = generate_medmnist_npz(tmp_path, flags=[flag], size=28, n_train=600, n_val=0, n_test=300, seed=1)[0]
    with np.load(path) as archive:
        train_x = archive["train_images"].reshape(600, -1) / 255.0
        test_x = archive["test_images"].reshape(300, -1) / 255.0
        train_y, test_y = archive["train_labels"][:, 0], archive["test_labels"][:, 0]
    num_classes = INFO[flag].num_classes
    accuracy = _nearest_class_mean_accuracy(train_x, train_y, test_x, test_y, num_classes)
    assert accuracy > 1.0 / num_classes + 0.4
    assert accuracy < 1.0  # noisy, not trivial


def test_multi_label_findings_are_learnable_from_pixels(tmp_path: Path) -> None:
    path = generate_medmnist_npz(tmp_path, flags=["chestmnist"], n_train=600, n_val=0, n_test=300, seed=1)[0]
    with np.load(path) as archive:
        train_x = archive["train_images"].reshape(600, -1) / 255.0
        test_x = archive["test_images"].reshape(300, -1) / 255.0
        train_y, test_y = archive["train_labels"], archive["test_labels"]
    balanced = []
    for finding in range(train_y.shape[1]):
        accuracy = _nearest_class_mean_accuracy(train_x, train_y[:, finding], test_x, test_y[:, finding], 2)
        positives = test_y[:, finding] == 1
        predicted = ((test_x[:, None, :] - np.stack([train_x[train_y[:, finding] == k].mean(0) for k in (0, 1)])[None])
                     ** 2).sum(-1).argmin(1)
        balanced.append(0.5 * ((predicted[positives] == 1).mean() + (predicted[~positives] == 0).mean()))
        assert accuracy > 0.5
    assert np.mean(balanced) > 0.8  # balanced accuracy: chance is 0.5
