"""Chest X-ray multi-label loader (NIH ChestX-ray14, CheXpert / MIMIC-CXR CSV layouts) and the synthetic generator."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from f3ocus.data.cxr import finding_name, load_cxr_multilabel
from f3ocus.data.cxr_synth import FINDINGS, NIH_NAMES, draw_findings, generate_cxr_dataset
from f3ocus.data.multilabel import CXR_FINDINGS, MULTILABEL, MULTILABEL_QUESTION, decode_findings
from f3ocus.data.schema import BadRows, DataError, column_values


def _png(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (16, 16), dtype=np.uint8)).save(path)


def _csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


@pytest.fixture
def nih_dir(tmp_path: Path) -> Path:
    """NIH ChestX-ray14 layout: Data_Entry_2017.csv, test_list.txt, images_001/images/*.png, a bbox CSV."""
    root = tmp_path / "nih"
    labels = ["Cardiomegaly|Effusion", "No Finding", "Pleural_Thickening", "Infiltration|Mass", "Hernia"]
    for index in range(len(labels)):
        _png(root / "images_001" / "images" / f"0000{index}_000.png", index)
    _csv(root / "Data_Entry_2017.csv", ["Image Index", "Finding Labels", "Follow-up #", "Patient Age"],
         [[f"0000{index}_000.png", label, "0", "50"] for index, label in enumerate(labels)])
    _csv(root / "BBox_List_2017.csv", ["Image Index", "Finding Label", "Bbox [x", "y", "w", "h]"],
         [["00000_000.png", "Cardiomegaly", "1", "2", "3", "4"]])
    (root / "test_list.txt").write_text("00003_000.png\n00004_000.png\n")
    (root / "train_val_list.txt").write_text("00000_000.png\n00001_000.png\n00002_000.png\n")
    return root


def test_nih_layout_rows_follow_the_multilabel_contract(nih_dir: Path) -> None:
    # Execute
    train = load_cxr_multilabel(nih_dir, "train", source="nih")
    test = load_cxr_multilabel(nih_dir, "test", source="nih")
    # Assert
    assert column_values(train, "answer") == ["cardiomegaly|effusion", "no finding", "pleural thickening"]
    assert column_values(train, "label") == [1, 14, 12]
    assert column_values(test, "answer") == ["infiltration|mass", "hernia"]
    assert set(column_values(train, "question_type")) == {MULTILABEL}
    assert set(column_values(train, "question")) == {MULTILABEL_QUESTION}
    assert set(column_values(test, "split")) == {"test"} and set(column_values(train, "source")) == {"nih"}
    assert set(column_values(train, "modality")) == {"x-ray"}
    assert np.asarray(train[0]["image"]).shape == (16, 16)


@pytest.fixture
def chexpert_dir(tmp_path: Path) -> Path:
    """CheXpert layout: train.csv / valid.csv, Path relative to the folder's parent, one column per finding."""
    root = tmp_path / "CheXpert-v1.0-small"
    header = ["Path", "Sex", "No Finding", "Cardiomegaly", "Lung Opacity", "Pleural Effusion", "Atelectasis",
              "Support Devices"]
    rows = [["1", "", "", "", "", ""],          # no finding
            ["", "1.0", "-1.0", "1.0", "", ""],  # cardiomegaly + effusion, uncertain opacity
            ["", "", "1.0", "", "", ""],         # only Lung Opacity (outside the 15): bad row
            ["", "0.0", "", "-1.0", "", ""],     # only an uncertain effusion (absent): bad row
            ["", "", "", "1", "", "1"]]          # effusion (+ support devices, outside the 15)
    table = []
    for index, values in enumerate(rows):
        relative = f"CheXpert-v1.0-small/train/patient{index}/study1/view1_frontal.jpg"
        _png(tmp_path / relative, index)
        table.append([relative, "Female", *values])
    _csv(root / "train.csv", header, table)
    _png(root / "valid" / "p9.png", 9)
    _csv(root / "valid.csv", header, [["valid/p9.png", "Male", "", "", "", "", "1", ""]])  # atelectasis
    return root


def test_chexpert_columns_uncertain_is_absent_and_outside_classes_is_a_bad_row(chexpert_dir: Path) -> None:
    # Execute
    with pytest.raises(DataError, match=r"train.csv: row 2: no positive finding among the 15 classes"):
        load_cxr_multilabel(chexpert_dir, "train")
    report = BadRows()
    train = load_cxr_multilabel(chexpert_dir, "train", on_bad_row="skip", report=report)
    test = load_cxr_multilabel(chexpert_dir, "test")
    # Assert
    assert column_values(train, "answer") == ["no finding", "cardiomegaly|effusion", "effusion"]
    assert report.by_reason == {"answer_not_in_answer_set": 2}
    assert column_values(test, "answer") == ["atelectasis"]


def test_unknown_finding_name_and_bad_label_value(tmp_path: Path) -> None:
    # Prepare
    for index in range(3):
        _png(tmp_path / "images" / f"{index}.png", index)
    _csv(tmp_path / "train.csv", ["Image Index", "Finding Labels"],
         [["0.png", "Effusion|Tumour"], ["1.png", "Edema"], ["2.png", ""]])
    _csv(tmp_path / "test.csv", ["image", "Edema", "Nodule"], [["0.png", "1", "yes"], ["1.png", "0", "1"]])
    # Execute / Assert
    with pytest.raises(DataError, match=r"row 0: unknown finding\(s\) \['Tumour'\]"):
        load_cxr_multilabel(tmp_path, "train")
    report = BadRows()
    kept = load_cxr_multilabel(tmp_path, "train", on_bad_row="skip", report=report)
    assert column_values(kept, "answer") == ["edema"]
    assert report.by_reason == {"answer_not_in_answer_set": 1, "missing_answer": 1}
    with pytest.raises(DataError, match=r"column 'Nodule': label 'yes' is not 1, 0, -1 or blank"):
        load_cxr_multilabel(tmp_path, "test")


def test_missing_image_is_an_unreadable_row(tmp_path: Path) -> None:
    _png(tmp_path / "a.png", 0)
    _csv(tmp_path / "labels.csv", ["filename", "Finding Labels", "split"],
         [["a.png", "Nodule", "train"], ["gone.png", "Mass", "train"], ["a.png", "Mass", "validate"]])
    with pytest.raises(DataError, match="unreadable image file"):
        load_cxr_multilabel(tmp_path, "train")
    report = BadRows()
    assert len(load_cxr_multilabel(tmp_path, "train", on_bad_row="skip", report=report)) == 1
    assert report.by_reason == {"unreadable_image": 1}
    assert column_values(load_cxr_multilabel(tmp_path, "test"), "answer") == ["mass"]


def test_single_csv_without_split_information_is_resplit(tmp_path: Path) -> None:
    for index in range(10):
        _png(tmp_path / f"{index}.png", index)
    _csv(tmp_path / "labels.csv", ["path", "Finding Labels"], [[f"{index}.png", "Edema"] for index in range(10)])
    train = load_cxr_multilabel(tmp_path, "train", test_fraction=0.3, seed=4)
    test = load_cxr_multilabel(tmp_path, "test", test_fraction=0.3, seed=4)
    assert (len(train), len(test)) == (7, 3)


def test_no_usable_csv_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="expected train.csv \\+ test.csv or one label CSV"):
        load_cxr_multilabel(tmp_path, "train")
    _csv(tmp_path / "train.csv", ["Image Index", "Finding Labels"], [["a.png", "Mass"]])
    with pytest.raises(DataError, match="no test / valid / val / validation.csv"):
        load_cxr_multilabel(tmp_path, "test")


def test_finding_names_map_case_insensitively() -> None:
    assert finding_name("Pleural_Thickening") == "pleural thickening"
    assert finding_name("Pleural Effusion") == finding_name("EFFUSION") == "effusion"
    assert finding_name("No Finding") == "no finding"
    assert finding_name("Lung Opacity") is None
    assert [finding_name(name) for name in NIH_NAMES] == list(FINDINGS)


def test_generator_writes_the_layout_the_loader_reads(tmp_path: Path) -> None:
    # Execute
    folder = generate_cxr_dataset(tmp_path / "cxr", n_train=40, n_test=10, size=32, seed=3)
    train = load_cxr_multilabel(folder, "train")
    again = generate_cxr_dataset(tmp_path / "cxr2", n_train=40, n_test=10, size=32, seed=3)
    # Assert
    assert len(train) == 40 and len(load_cxr_multilabel(folder, "test")) == 10
    assert (folder / "train.csv").read_text() == (again / "train.csv").read_text()  # seeded
    assert (folder / "images" / "train_000000.png").read_bytes() == (again / "images" / "train_000000.png").read_bytes()
    image = np.asarray(train[0]["image"])
    assert image.shape == (32, 32) and image.dtype == np.uint8
    for answer, label in zip(column_values(train, "answer"), column_values(train, "label")):
        assert CXR_FINDINGS[label] == decode_findings(answer)[0]


def test_label_draw_statistics() -> None:
    labels = draw_findings(4000, np.random.default_rng(0))  # (n, 14)
    counts = labels.sum(axis=1)
    assert counts.max() <= 3
    assert 0.26 < (counts == 0).mean() < 0.34  # "no finding" ~30 %
    assert labels.any(axis=0).all()  # every finding occurs
    effusion, atelectasis = FINDINGS.index("effusion"), FINDINGS.index("atelectasis")
    both = (labels[:, effusion] & labels[:, atelectasis]).mean()
    assert both > labels[:, effusion].mean() * labels[:, atelectasis].mean()  # boosted co-occurrence


def test_rows_longer_than_the_header_are_an_error(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text("Image Index,Finding Labels\na.png,Mass,extra\n")
    with pytest.raises(DataError, match="not a readable CSV"):
        load_cxr_multilabel(tmp_path, "train")
