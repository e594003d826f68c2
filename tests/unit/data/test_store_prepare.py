"""FederatedStore round trip and prepare_federated_data (tasks, caps, caching)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from f3ocus.config.schema import DataConfig, PartitionConfig
from f3ocus.data.prepare import prepare_federated_data
from f3ocus.data.schema import DataError, column_values, make_vqa_dataset
from f3ocus.data.store import FederatedStore


def _rows(clients: list[str], splits: list[str], answers: list[str]):
    n_rows = len(clients)
    ds, _ = make_vqa_dataset({"image": [np.full((3, 3), i, np.uint8) for i in range(n_rows)],
                              "question": [f"q{i}?" for i in range(n_rows)], "answer": answers,
                              "client": clients, "split": splits}, origin="t")
    return ds


def test_store_round_trip(tmp_path: Path) -> None:
    # Prepare
    ds = _rows(["b", "a", "b", "a", "b", "a"], ["train", "train", "test", "train", "train", "test"],
               ["Yes", "no", "yes", "no", "no", "maybe"])
    # Execute
    saved = FederatedStore.save(ds, tmp_path / "store")
    loaded = FederatedStore.load(tmp_path / "store")
    # Assert
    assert loaded.clients == ["a", "b"]
    assert loaded.answers == ["no", "yes"]
    assert loaded.num_examples("a", "train") == 2 and loaded.num_examples("b", "test") == 1
    assert column_values(loaded.shard("b", "train"), "question") == ["q0?", "q4?"]
    assert np.asarray(loaded.shard("a", "test")[0]["image"])[0, 0] == 5
    assert loaded.majority_answer("a") == "no"
    assert loaded.majority_answer("b") == "no"  # tie "no"/"yes" -> lexicographic
    assert loaded.fingerprint == saved.fingerprint
    with pytest.raises(KeyError, match="unknown client"):
        loaded.shard("zz", "train")


def test_client_without_train_rows_is_named(tmp_path: Path) -> None:
    ds = _rows(["a", "lonely"], ["train", "test"], ["x", "y"])
    with pytest.raises(DataError, match="client 'lonely' has no train rows"):
        FederatedStore.save(ds, tmp_path)


def test_prepare_synthetic_ultra_medvqa_cached(tmp_path: Path) -> None:
    cfg = DataConfig(task="ultra_medvqa", modalities=("pathmnist", "octmnist", "bloodmnist", "organamnist"),
                     samples_per_client=400, partition=PartitionConfig(scheme="natural", by="source"))
    store = prepare_federated_data(cfg, tmp_path, seed=0)  # (no timing here: speed belongs in bench/)
    assert store.clients == sorted(cfg.modalities)
    for client in store.clients:
        assert store.num_examples(client, "train") == 320 and store.num_examples(client, "test") == 80
    assert (tmp_path / "npz" / "pathmnist.npz").is_file()
    stamp = (tmp_path / "meta.json").stat().st_mtime_ns
    again = prepare_federated_data(cfg, tmp_path, seed=0)
    assert (tmp_path / "meta.json").stat().st_mtime_ns == stamp  # loaded, not rebuilt
    assert again.fingerprint == store.fingerprint
    other = prepare_federated_data(cfg, tmp_path, seed=1)
    assert other.fingerprint != store.fingerprint


def test_prepare_modality_clients_and_cap(tmp_path: Path, npz_dir: Path) -> None:
    cfg = DataConfig(task="ultra_medvqa", path=str(npz_dir), samples_per_client=50, test_fraction=0.2)
    store = prepare_federated_data(cfg, tmp_path, seed=0)
    assert store.clients == ["ct", "fundus", "microscopy", "pathology", "x-ray"]
    for client in store.clients:
        assert store.num_examples(client, "train") == 40 and store.num_examples(client, "test") == 10


def test_prepare_easy_vqa_dirichlet(tmp_path: Path) -> None:
    cfg = DataConfig(task="easy_vqa", samples_per_client=100,
                     partition=PartitionConfig(scheme="dirichlet", num_clients=3, alpha=1.0))
    store = prepare_federated_data(cfg, tmp_path, seed=0)
    assert store.clients == ["client_00", "client_01", "client_02"]
    assert all(1 <= store.num_examples(c, "train") + store.num_examples(c, "test") <= 100 for c in store.clients)
    assert "yes" in store.answers


def test_prepare_unknown_task(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown task 'mimic'"):
        prepare_federated_data(DataConfig(task="mimic"), tmp_path, seed=0)


def test_validation_rows_are_carved_from_train_and_leave_test_rows_alone(tmp_path: Path, npz_dir: Path) -> None:
    plain = prepare_federated_data(DataConfig(task="ultra_medvqa", path=str(npz_dir), samples_per_client=50),
                                   tmp_path / "plain", seed=0)
    cfg = DataConfig(task="ultra_medvqa", path=str(npz_dir), samples_per_client=50, validation_fraction=0.2,
                     evaluate_on="validation")
    store = prepare_federated_data(cfg, tmp_path / "val", seed=0)

    for client in store.clients:
        # 40 train rows -> 8 validation (round(40 * 0.2)) + 32 train; the 10 test rows are the plain store's.
        assert (store.num_examples(client, "train"), store.num_examples(client, "val")) == (32, 8)
        assert column_values(store.shard(client, "test"), "question") == \
            column_values(plain.shard(client, "test"), "question")
        train, val = (set(store._shard_meta(client, split)["indices"]) for split in ("train", "val"))
        assert not train & val
    assert "accuracy" in store.majority_scores(store.clients[0], "val")
    assert cfg.eval_split == "val" and DataConfig().eval_split == "test"


def test_evaluate_on_validation_needs_a_validation_fraction() -> None:
    with pytest.raises(ValueError, match="evaluate_on"):
        DataConfig(evaluate_on="validation")
