"""`task: multi_source` (one client per source), its schema checks, and the new tasks through prepare_federated_data."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from f3ocus.config import load_config
from f3ocus.config.schema import ConfigError, DataConfig, ExperimentConfig, PartitionConfig, SourceConfig
from f3ocus.config.validate import expected_num_clients, validate
from f3ocus.data.prepare import prepare_federated_data
from f3ocus.data.schema import DataError, column_values
from f3ocus.data.sources import source_seed
from tests.unit.data.layouts import write_vqa_rad, write_vqamed

BY_SOURCE = PartitionConfig(scheme="natural", by="source")


def test_sources_become_clients_named_after_them(tmp_path: Path) -> None:
    # Prepare: a local VQA-RAD, a VQA-Med year, generated Ultra-MedVQA and chest X-ray sources
    cfg = DataConfig(task="multi_source", samples_per_client=20, partition=BY_SOURCE, sources=(
        SourceConfig(task="vqa_rad", path=str(write_vqa_rad(tmp_path / "rad"))),
        SourceConfig(task="vqamed", name="vqamed2019", path=str(write_vqamed(tmp_path / "vqamed", 2019))),
        SourceConfig(task="ultra_medvqa", name="vqa_pathology", modalities=("pathmnist",)),
        SourceConfig(task="cxr_multilabel", name="cls_a"),
        SourceConfig(task="cxr_multilabel", name="cls_b"),
    ))
    # Execute
    store = prepare_federated_data(cfg, tmp_path / "store", seed=0)
    # Assert
    assert store.clients == ["cls_a", "cls_b", "vqa_pathology", "vqa_rad", "vqamed2019"]
    rows = store.dataset
    assert column_values(rows, "client") == column_values(rows, "source")
    assert store.num_examples("vqa_rad", "train") == 6 and store.num_examples("vqamed2019", "test") == 2
    assert store.num_examples("cls_a", "train") == 16 and store.num_examples("cls_a", "test") == 4
    assert (tmp_path / "store" / "sources" / "cls_a" / "cxr" / "train.csv").is_file()
    answers_a = column_values(store.shard("cls_a", "train"), "answer")
    assert answers_a != column_values(store.shard("cls_b", "train"), "answer")  # per-source seeds differ
    assert set(column_values(store.shard("cls_b", "test"), "question_type")) == {"multilabel"}


def test_a_source_with_no_usable_row_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "All_QA_Pairs_train.txt").write_text("gone|what plane?|axial\n")
    (tmp_path / "empty" / "All_QA_Pairs_val.txt").write_text("gone|what plane?|axial\n")
    cfg = DataConfig(task="multi_source", on_bad_row="skip", partition=BY_SOURCE,
                     sources=(SourceConfig(task="vqamed", path=str(tmp_path / "empty")),))
    with pytest.raises(DataError, match="has no usable row"):
        prepare_federated_data(cfg, tmp_path / "store", seed=0)


def test_single_new_tasks_through_prepare(tmp_path: Path) -> None:
    domains = prepare_federated_data(DataConfig(task="easy_vqa_domains", modalities=("blur", "tint"),
                                                samples_per_client=20, partition=PartitionConfig(by="modality")),
                                     tmp_path / "domains", seed=0)
    assert domains.clients == ["blur", "tint"] and domains.num_examples("tint", "test") == 4
    cxr = prepare_federated_data(DataConfig(task="cxr_multilabel", samples_per_client=30, partition=PartitionConfig(
        scheme="dirichlet", num_clients=3, alpha=0.5, label_column="label")), tmp_path / "cxr", seed=0)
    assert cxr.clients == ["client_00", "client_01", "client_02"]
    assert all(cxr.num_examples(client, "train") + cxr.num_examples(client, "test") <= 30 for client in cxr.clients)
    with pytest.raises(DataError, match="task vqamed reads a local VQA-Med folder"):
        prepare_federated_data(DataConfig(task="vqamed"), tmp_path / "vqamed", seed=0)


@pytest.mark.parametrize("data, field, message", [
    ({"task": "multi_source"}, "data.sources", "needs at least one source"),
    ({"task": "easy_vqa", "sources": [{"task": "slake"}]}, "data.sources", "only task multi_source"),
    ({"task": "multi_source", "sources": [{"task": "multi_source"}]}, "data.sources[0].task", "cannot itself"),
    ({"task": "multi_source", "sources": [{"task": "slake"}, {"task": "slake"}]}, "data.sources", "share the client"),
    ({"task": "multi_source", "modalities": ["ct"], "sources": [{"task": "slake"}]}, "data.modalities", "per source"),
    ({"task": "multi_source", "sources": [{"task": "slake", "pth": "x"}]}, "data.sources[0].pth", "unknown key"),
])
def test_schema_rejects_bad_sources(tmp_path: Path, data: dict, field: str, message: str) -> None:
    import yaml

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"data": data}))
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(path)
    assert caught.value.field == field


@pytest.mark.parametrize("source, field", [
    (SourceConfig(task="mimic"), "data.sources[0].task"),
    (SourceConfig(task="vqamed"), "data.sources[0].path"),
    (SourceConfig(task="cxr_multilabel", path="/no/such/folder"), "data.sources[0].path"),
    (SourceConfig(task="ultra_medvqa", modalities=("ctmnist",)), "data.sources[0].modalities[0]"),
    (SourceConfig(task="easy_vqa_domains", modalities=("sepia",)), "data.sources[0].modalities[0]"),
])
def test_validate_names_the_bad_source(source: SourceConfig, field: str) -> None:
    cfg = ExperimentConfig(data=DataConfig(task="multi_source", sources=(source,), partition=BY_SOURCE))
    with pytest.raises(ConfigError) as caught:
        validate(cfg)
    assert caught.value.field == field


def test_expected_num_clients_of_the_new_tasks() -> None:
    def clients(**data) -> int | None:
        return expected_num_clients(ExperimentConfig(data=DataConfig(**data)))

    assert clients(task="multi_source", sources=(SourceConfig("slake"), SourceConfig("vqa_rad")),
                   partition=BY_SOURCE) == 2
    assert clients(task="easy_vqa_domains", partition=PartitionConfig(by="modality")) == 5
    assert clients(task="ultra_medvqa", modalities=("chestmnist", "pneumoniamnist", "pathmnist"),
                   partition=PartitionConfig(by="modality")) == 2  # two x-ray files, one client
    assert clients(task="cxr_multilabel", partition=PartitionConfig(scheme="dirichlet", num_clients=4)) == 4


def test_source_seed_depends_on_seed_and_name() -> None:
    assert source_seed(0, "a") != source_seed(0, "b") and source_seed(0, "a") != source_seed(1, "a")
    assert source_seed(3, "a") == source_seed(3, "a")
    assert dataclasses.replace(SourceConfig("slake"), name="x").client == "x"
    assert SourceConfig("slake").client == "slake"
