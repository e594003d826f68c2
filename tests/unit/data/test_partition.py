"""Partitioners: natural is exact, iid is balanced, dirichlet is seeded, skewed, never empty, test mirrors train."""

from __future__ import annotations

import collections

import numpy as np
import pytest
from datasets import Dataset

from f3ocus.data.partition import client_names, partition_dirichlet, partition_iid, partition_natural
from f3ocus.data.schema import DataError, column_values, make_vqa_dataset


def _dataset(n_rows: int = 600, n_labels: int = 6, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    answers = [f"answer{value}" for value in rng.integers(0, n_labels, n_rows)]
    splits = ["test" if value < 0.25 else "train" for value in rng.random(n_rows)]
    modalities = [("ct", "mri", "x-ray")[row % 3] for row in range(n_rows)]
    image = np.zeros((2, 2), np.uint8)
    ds, _ = make_vqa_dataset({"image": [image] * n_rows, "question": ["q?"] * n_rows, "answer": answers,
                              "split": splits, "modality": modalities}, origin="test")
    return ds


def _label_shares(ds: Dataset, split: str) -> dict[str, collections.Counter]:
    shares: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for client, answer, row_split in zip(column_values(ds, "client"), column_values(ds, "answer"),
                                         column_values(ds, "split")):
        if row_split == split:
            shares[client][answer] += 1
    return shares


def test_natural_is_exact_and_input_untouched() -> None:
    ds = _dataset(30)
    out = partition_natural(ds, by="modality")
    assert column_values(out, "client") == column_values(ds, "modality")
    assert set(column_values(ds, "client")) == {""}
    assert out.column_names == ds.column_names
    with pytest.raises(DataError, match="no column 'site'"):
        partition_natural(ds, by="site")


def test_iid_sizes_are_balanced_per_split() -> None:
    out = partition_iid(_dataset(601), num_clients=4, seed=0)
    for split in ("train", "test"):
        sizes = [sum(counter.values()) for counter in _label_shares(out, split).values()]
        assert len(sizes) == 4 and max(sizes) - min(sizes) <= 1
    assert sorted(set(column_values(out, "client"))) == client_names(4)
    assert client_names(4) == ["client_00", "client_01", "client_02", "client_03"]


def test_dirichlet_is_deterministic_under_seed() -> None:
    ds = _dataset()
    first = column_values(partition_dirichlet(ds, 5, 0.3, seed=7), "client")
    assert first == column_values(partition_dirichlet(ds, 5, 0.3, seed=7), "client")
    assert first != column_values(partition_dirichlet(ds, 5, 0.3, seed=8), "client")


def _skew(ds: Dataset) -> float:
    """Mean over clients of the share of the client's most frequent train label."""
    return float(np.mean([max(c.values()) / sum(c.values()) for c in _label_shares(ds, "train").values()]))


def test_smaller_alpha_gives_more_skew() -> None:
    ds = _dataset(1200)
    skew_small = np.mean([_skew(partition_dirichlet(ds, 4, 0.1, seed=s)) for s in range(3)])
    skew_large = np.mean([_skew(partition_dirichlet(ds, 4, 100.0, seed=s)) for s in range(3)])
    assert skew_small > skew_large + 0.2


def test_no_client_is_empty_even_with_tiny_alpha() -> None:
    ds = _dataset(80, n_labels=2)
    for seed in range(5):
        out = partition_dirichlet(ds, 8, 0.01, seed=seed)
        train = _label_shares(out, "train")
        assert sorted(train) == client_names(8)
        assert all(sum(counter.values()) >= 1 for counter in train.values())


def test_dirichlet_test_split_mirrors_train() -> None:
    out = partition_dirichlet(_dataset(2000, n_labels=4), 3, 0.5, seed=1)
    train, test = _label_shares(out, "train"), _label_shares(out, "test")
    for label in [f"answer{k}" for k in range(4)]:
        train_share = np.array([train[c][label] for c in client_names(3)], float)
        test_share = np.array([test[c][label] for c in client_names(3)], float)
        np.testing.assert_allclose(test_share / test_share.sum(), train_share / train_share.sum(), atol=0.03)


def test_dirichlet_rejects_too_few_rows() -> None:
    with pytest.raises(DataError, match="only"):
        partition_dirichlet(_dataset(10), 20, 0.5, seed=0)
