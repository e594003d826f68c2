"""FederatedStore with multi-label clients: task kinds, the VQA answer set, findings, the majority baseline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from f3ocus.data.multilabel import CXR_FINDINGS, MULTILABEL, MULTILABEL_QUESTION
from f3ocus.data.schema import DataError, make_vqa_dataset
from f3ocus.data.store import FederatedStore

# client -> [(split, answer)]; multi-label clients start with "cxr".
MIXED = {
    "cxr_a": [("train", "no finding"), ("train", "no finding"), ("train", "edema"), ("train", "cardiomegaly|edema"),
              ("test", "no finding"), ("test", "edema|mass")],
    "cxr_b": [("train", "effusion"), ("train", "effusion|mass"), ("train", "effusion"), ("test", "effusion")],
    "vqa_a": [("train", "yes"), ("train", "no"), ("train", "yes"), ("test", "yes"), ("test", "maybe")],
    "vqa_b": [("train", "red"), ("train", "blue"), ("test", "red"), ("test", "blue")],
}


def rows_of(clients: dict[str, list[tuple[str, str]]], size: int = 8, seed: int = 0):
    """A dataset in the VQA schema: VQA rows and multi-label rows (`question_type` "multilabel")."""
    rng = np.random.default_rng(seed)
    columns: dict[str, list] = {name: [] for name in ("image", "question", "answer", "client", "question_type",
                                                       "label", "split")}
    for client, entries in clients.items():
        multi = client.startswith("cxr")
        for split, answer in entries:
            columns["image"].append(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
            columns["question"].append(MULTILABEL_QUESTION if multi else "what is it?")
            columns["answer"].append(answer)
            columns["client"].append(client)
            columns["question_type"].append(MULTILABEL if multi else "other")
            columns["label"].append(CXR_FINDINGS.index(answer.split("|")[0]) if multi else -1)
            columns["split"].append(split)
    ds, _ = make_vqa_dataset(columns, origin="test")
    return ds


def test_a_mixed_store_knows_each_clients_kind_and_keeps_findings_out_of_the_answer_set(tmp_path: Path) -> None:
    # Prepare / Execute
    store = FederatedStore.save(rows_of(MIXED), tmp_path / "store")
    loaded = FederatedStore.load(tmp_path / "store")
    # Assert
    assert loaded.clients == ["cxr_a", "cxr_b", "vqa_a", "vqa_b"]
    assert {c: loaded.task_kind(c) for c in loaded.clients} == {"cxr_a": "multilabel", "cxr_b": "multilabel",
                                                                "vqa_a": "vqa", "vqa_b": "vqa"}
    assert loaded.answers == ["blue", "no", "red", "yes"]  # VQA train answers only
    assert loaded.findings == list(CXR_FINDINGS)  # all 15, whatever the rows hold
    assert loaded.unseen_test_answers == 1  # "maybe"; multi-label test rows are not answers
    assert loaded.majority_answer("cxr_a") == "no finding"  # the most frequent train label set
    assert loaded.fingerprint == store.fingerprint


def test_majority_baseline_of_a_multilabel_client_predicts_its_most_frequent_label_set(tmp_path: Path) -> None:
    store = FederatedStore.save(rows_of(MIXED), tmp_path / "store")
    # cxr_a predicts {no finding} for its 2 test rows: row 0 TP 1; row 1 FP 1, FN 2 (edema, mass).
    scores = store.majority_scores("cxr_a")
    assert scores["f1"] == pytest.approx(2 / (2 + 1 + 2))
    assert scores["accuracy"] == pytest.approx(0.5)  # subset accuracy
    assert store.majority_scores("cxr_b") == {"accuracy": 1.0, "f1": 1.0}
    assert store.majority_scores("vqa_a") == {"accuracy": 0.5}  # "yes" on ("yes", "maybe")


def test_a_vqa_only_store_has_no_findings(tmp_path: Path) -> None:
    store = FederatedStore.save(rows_of({k: v for k, v in MIXED.items() if k.startswith("vqa")}), tmp_path / "s")
    assert store.findings == [] and {store.task_kind(c) for c in store.clients} == {"vqa"}
    assert store.answers == ["blue", "no", "red", "yes"]


def test_a_client_holding_both_kinds_is_a_data_error(tmp_path: Path) -> None:
    ds = rows_of(MIXED)
    clients = ["vqa_a" if client == "cxr_b" else client for client in ds["client"]]
    with pytest.raises(DataError, match=r"client 'vqa_a' holds 4 multi-label row\(s\) and 5 VQA row\(s\)"):
        FederatedStore.save(ds.remove_columns("client").add_column("client", clients), tmp_path / "store")


def test_an_unknown_finding_is_a_data_error_naming_the_row(tmp_path: Path) -> None:
    ds = rows_of({"cxr_a": [("train", "edema"), ("train", "edema|tumour")]})
    with pytest.raises(DataError, match=r"row 1 \(client 'cxr_a'\).*unknown finding 'tumour'"):
        FederatedStore.save(ds, tmp_path / "store")


def test_a_store_of_the_previous_format_is_refused(tmp_path: Path) -> None:
    FederatedStore.save(rows_of(MIXED), tmp_path / "store")
    meta = json.loads((tmp_path / "store" / "meta.json").read_text())
    meta["format_version"] = 1
    (tmp_path / "store" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="format_version 1, expected 2"):
        FederatedStore.load(tmp_path / "store")
