"""Shared fixtures for the data tests: small synthetic MedMNIST files, generated once per session."""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest

from f3ocus.data.medmnist_synth import generate_medmnist_npz

datasets.disable_progress_bars()

SMALL_FLAGS = ("pathmnist", "chestmnist", "retinamnist", "bloodmnist", "organamnist")


@pytest.fixture(scope="session")
def npz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five synthetic MedMNIST files (28 px, 120/20/60 images): one per task type and attribute kind."""
    folder = tmp_path_factory.mktemp("npz")
    generate_medmnist_npz(folder, flags=SMALL_FLAGS, size=28, n_train=120, n_val=20, n_test=60, seed=0)
    return folder
