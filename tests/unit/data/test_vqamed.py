"""VQA-Med loader on small folders written in the ImageCLEF 2019 and 2020/2021 release layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from f3ocus.data.schema import BadRows, DataError, column_values
from f3ocus.data.vqamed import find_qa_files, load_vqamed, question_category


def _jpg(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (10, 10), dtype=np.uint8)).save(path)


def _write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))


@pytest.fixture
def vqamed2019(tmp_path: Path) -> Path:
    """2019 layout: Training (All_QA_Pairs + QAPairsByCategory + Train_images), Validation, Test with categories."""
    root = tmp_path / "VQA-Med-2019"
    train = root / "ImageClef-2019-VQA-Med-Training"
    for index in range(3):
        _jpg(train / "Train_images" / f"synpic{index}.jpg", index)
    _write(train / "All_QA_Pairs_train.txt", ["synpic0|what modality is shown?|ct noncontrast",
                                              "synpic1|in what plane is this \tmri?|axial",
                                              "synpic2|what is abnormal in the x-ray?|pneumothorax"])
    _write(train / "QAPairsByCategory" / "C1_Modality_train.txt", ["synpic0|what modality is shown?|ct noncontrast"])
    _write(train / "train_ImageIDs.txt", ["synpic0", "synpic1", "synpic2"])
    val = root / "ImageClef-2019-VQA-Med-Validation"
    _jpg(val / "Val_images" / "synpic10.jpg", 10)
    _write(val / "All_QA_Pairs_val.txt", ["synpic10|which organ system is shown?|skull and contents"])
    test = root / "VQAMed2019Test"
    _jpg(test / "VQAMed2019_Test_Images" / "synpic20.jpg", 20)
    _write(test / "VQAMed2019_Test_Questions_w_Ref_Answers.txt", ["synpic20|plane|what plane is this?|coronal"])
    _write(test / "VQAMed2019_Test_Questions.txt", ["synpic20|what plane is this?"])  # no answers: ignored
    return root


def test_2019_layout_train_and_held_out(vqamed2019: Path) -> None:
    # Execute
    train = load_vqamed(vqamed2019, "train", source="vqamed2019")
    test = load_vqamed(vqamed2019, "test", source="vqamed2019")
    # Assert
    assert len(train) == 3  # QAPairsByCategory repeats the all-pairs file and is skipped
    assert column_values(train, "question") == ["what modality is shown?", "in what plane is this mri?",
                                                "what is abnormal in the x-ray?"]
    assert column_values(train, "question_type") == ["modality", "plane", "abnormality"]
    assert set(column_values(train, "source")) == {"vqamed2019"} and set(column_values(train, "split")) == {"train"}
    assert set(column_values(train, "modality")) == {"radiology"}
    assert sorted(column_values(test, "answer")) == ["coronal", "skull and contents"]
    assert column_values(test, "question_type") == ["organ", "plane"]  # the 2019 test file's own category
    assert np.asarray(train[0]["image"]).shape == (10, 10)


def test_2020_questions_joined_with_reference_answers(tmp_path: Path) -> None:
    # Prepare: 2020 train pairs + the test set's separate questions and reference answers
    root = tmp_path / "VQA-Med-2020"
    _jpg(root / "VQAMed2020-VQAnswering-TrainingSet" / "VQAnswering_2020_Train_images" / "synpic1.jpg", 1)
    _write(root / "VQAMed2020-VQAnswering-TrainingSet" / "VQAnswering_2020_Train_QA_pairs.txt",
           ["synpic1|is this image normal?|no"])
    test = root / "VQA-TestSet-ReferenceAnswers-VQAMed2020-Task1"
    _jpg(test / "Task1-2020-VQAnswering-Test-Images" / "synpic2.jpg", 2)
    _jpg(test / "Task1-2020-VQAnswering-Test-Images" / "synpic3.jpg", 3)
    _write(test / "VQAMed2020-Task1-VQAnswering-Test-Questions.txt",
           ["synpic2|what abnormality is seen in the image?", "synpic3|is this a normal ct scan?"])
    _write(test / "VQAMed2020-Task1-VQAnswering-Test-ReferenceAnswers.txt",
           ["synpic2|pulmonary embolism|pe", "synpic3|yes"])
    # Execute
    train = load_vqamed(root, "train")
    held_out = load_vqamed(root, "test")
    # Assert
    assert column_values(train, "answer") == ["no"]
    assert column_values(held_out, "answer") == ["pulmonary embolism", "yes"]  # first accepted answer
    assert set(column_values(held_out, "split")) == {"test"} and set(column_values(held_out, "source")) == {"vqamed"}


def test_assembled_folder_and_limit(tmp_path: Path) -> None:
    for index in range(6):
        _jpg(tmp_path / "images" / f"img{index}.png", index)
    _write(tmp_path / "train.txt", [f"img{index}|what organ is shown?|liver" for index in range(5)])
    _write(tmp_path / "test.txt", ["img5|organ|what organ is shown?|spleen"])
    first = load_vqamed(tmp_path, "train", limit=3, seed=1)
    again = load_vqamed(tmp_path, "train", limit=3, seed=1)
    assert len(first) == 3
    assert [row["image"].tobytes() for row in first] == [row["image"].tobytes() for row in again]
    assert column_values(load_vqamed(tmp_path, "test"), "answer") == ["spleen"]


def test_bad_rows_fail_or_skip(tmp_path: Path) -> None:
    # Prepare: an unknown image id, a line with too few fields, an empty answer
    _jpg(tmp_path / "Train_images" / "ok.jpg", 0)
    _write(tmp_path / "All_QA_Pairs_train.txt", ["ok|what plane is this?|axial", "missing|what plane?|axial",
                                                 "ok|no answer here", "ok|what organ?|"])
    # Execute / Assert
    with pytest.raises(DataError, match=r"line 3: expected image_id\|\[category\|\]question\|answer"):
        load_vqamed(tmp_path, "train")
    report = BadRows()
    rows = load_vqamed(tmp_path, "train", on_bad_row="skip", report=report)
    assert len(rows) == 1
    assert report.by_reason == {"bad_column": 1, "unreadable_image": 1, "missing_answer": 1}


def test_missing_folder_or_split_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a VQA-Med folder"):
        load_vqamed(tmp_path / "nope", "train")
    with pytest.raises(DataError, match="no VQA-Med test file"):
        load_vqamed(tmp_path, "test")


def test_find_qa_files_and_categories(vqamed2019: Path) -> None:
    names = [path.name for path, _ in find_qa_files(vqamed2019, "test")]
    assert names == ["All_QA_Pairs_val.txt", "VQAMed2019_Test_Questions_w_Ref_Answers.txt"]
    assert question_category("is this a t1 weighted image?") == "modality"
    assert question_category("what is most alarming about this ct scan?") == "abnormality"
    assert question_category("how old is the patient?") == "other"
