"""SLAKE / VQA-RAD / PathVQA loaders on small local datasets written in each source's own column layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset, DatasetDict, Features, Image, Value
from PIL import Image as PILImage

from f3ocus.data.hub import load_hub_vqa
from f3ocus.data.schema import FEATURES, DataError, column_values


def _image(seed: int) -> PILImage.Image:
    return PILImage.fromarray(np.random.default_rng(seed).integers(0, 255, (12, 12, 3), dtype=np.uint8))


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


@pytest.fixture
def vqa_rad_dir(tmp_path: Path) -> Path:
    """VQA-RAD hub layout (image, question, answer), saved as a DatasetDict."""
    features = Features({"image": Image(), "question": Value("string"), "answer": Value("string")})
    splits = {
        "train": {"image": [_image(i) for i in range(4)], "question": ["is there a mass?", "what organ is this?",
                  "is this a ct?", "where is the lesion?"], "answer": ["yes", "liver", "No", "left lobe"]},
        "test": {"image": [_image(9)], "question": ["is the heart enlarged?"], "answer": ["no"]},
    }
    folder = tmp_path / "vqa-rad"
    tables = {name: Dataset.from_dict(columns, features=features) for name, columns in splits.items()}
    DatasetDict(tables).save_to_disk(folder)
    return folder


@pytest.fixture
def slake_dir(tmp_path: Path) -> Path:
    """SLAKE layout: imgs/<img_name>, train.jsonl with SLAKE's own columns, an English and a Chinese row."""
    folder = tmp_path / "Slake1.0"
    (folder / "imgs" / "xmlab1").mkdir(parents=True)
    _image(1).save(folder / "imgs" / "xmlab1" / "source.jpg")
    base = {"img_id": 1, "img_name": "xmlab1/source.jpg", "location": "Lung", "modality": "X-Ray", "base_type": "vqa",
            "triple": ["vhead", "_", "_"]}
    _write_jsonl(folder / "train.jsonl", [
        {**base, "qid": 1, "question": "Which organ is abnormal?", "answer": "Lung", "answer_type": "OPEN",
         "content_type": "Organ", "q_lang": "en"},
        {**base, "qid": 2, "question": "Is this a CT?", "answer": "No", "answer_type": "CLOSED",
         "content_type": "Modality", "q_lang": "en"},
        {**base, "qid": 3, "question": "这是CT吗?", "answer": "不是", "answer_type": "CLOSED",
         "content_type": "Modality", "q_lang": "zh"},
    ])
    return folder


def test_vqa_rad_save_to_disk_layout(vqa_rad_dir: Path) -> None:
    train = load_hub_vqa(str(vqa_rad_dir), "train")
    assert train.features == FEATURES and len(train) == 4
    assert column_values(train, "source") == ["vqa_rad"] * 4
    assert column_values(train, "question_type") == ["closed", "open", "closed", "open"]
    assert set(column_values(train, "split")) == {"train"}
    assert train[0]["image"].size == (12, 12)
    closed = load_hub_vqa(str(vqa_rad_dir), "train", answer_type="closed")
    assert column_values(closed, "answer") == ["yes", "No"]
    test = load_hub_vqa(str(vqa_rad_dir), "test")
    assert column_values(test, "split") == ["test"]
    with pytest.raises(DataError, match="no split 'validation'"):
        load_hub_vqa(str(vqa_rad_dir), "validation")


def test_pathvqa_jsonl_layout_with_relative_images(tmp_path: Path) -> None:
    folder = tmp_path / "path-vqa"
    (folder / "images").mkdir(parents=True)
    _image(3).save(folder / "images" / "a.png")
    _write_jsonl(folder / "validation.jsonl", [
        {"image": "images/a.png", "question": "is this malignant?", "answer": "yes"},
        {"image": "images/a.png", "question": "what stain is used?", "answer": "H&E"},
    ])
    ds = load_hub_vqa(str(folder), "validation")
    assert column_values(ds, "source") == ["pathvqa"] * 2
    assert column_values(ds, "modality") == ["pathology"] * 2
    assert column_values(ds, "split") == ["test"] * 2
    assert ds[1]["image"].size == (12, 12)


def test_slake_keeps_english_and_maps_columns(slake_dir: Path) -> None:
    ds = load_hub_vqa(str(slake_dir), "train")
    assert column_values(ds, "question") == ["Which organ is abnormal?", "Is this a CT?"]
    assert column_values(ds, "modality") == ["x-ray", "x-ray"]
    assert column_values(ds, "question_type") == ["organ", "modality"]
    assert column_values(ds, "source") == ["slake", "slake"]
    closed = load_hub_vqa(str(slake_dir), "train", answer_type="closed")
    assert column_values(closed, "answer") == ["No"]


def test_slake_missing_image_fails_or_is_skipped(slake_dir: Path) -> None:
    rows = [json.loads(line) for line in (slake_dir / "train.jsonl").read_text().splitlines()]
    rows[1]["img_name"] = "xmlab9/missing.jpg"
    _write_jsonl(slake_dir / "train.jsonl", rows)
    with pytest.raises(DataError, match=r"train.jsonl: row 1: unreadable image file"):
        load_hub_vqa(str(slake_dir), "train")
    ds = load_hub_vqa(str(slake_dir), "train", on_bad_row="skip")
    assert column_values(ds, "question") == ["Which organ is abnormal?"]


def test_missing_split_file_and_unknown_source(tmp_path: Path, slake_dir: Path) -> None:
    with pytest.raises(DataError, match="test.jsonl"):
        load_hub_vqa(str(slake_dir), "test")
    folder = tmp_path / "mystery"
    folder.mkdir()
    _image(0).save(folder / "a.png")
    _write_jsonl(folder / "train.jsonl", [{"image": "a.png", "question": "q?", "answer": "a"}])
    with pytest.raises(DataError, match="pass source="):
        load_hub_vqa(str(folder), "train")
    assert column_values(load_hub_vqa(str(folder), "train", source="vqa_rad"), "source") == ["vqa_rad"]


def test_short_name_goes_to_the_hub_id(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_load_dataset(hub_id: str, split: str) -> Dataset:
        calls.append((hub_id, split))
        return Dataset.from_dict({"image": [_image(0)], "question": ["is it normal?"], "answer": ["yes"]},
                                 features=Features({"image": Image(), "question": Value("string"),
                                                    "answer": Value("string")}))

    monkeypatch.setattr("f3ocus.data.hub.datasets.load_dataset", fake_load_dataset)
    ds = load_hub_vqa("pathvqa", "test")
    assert calls == [("flaviagiammarino/path-vqa", "test")]
    assert column_values(ds, "source") == ["pathvqa"] and column_values(ds, "split") == ["test"]
    load_hub_vqa("flaviagiammarino/vqa-rad", "train")
    assert calls[-1] == ("flaviagiammarino/vqa-rad", "train")


def test_slake_release_layout_json_arrays_and_validate_split(slake_dir: Path) -> None:
    # The SLAKE 1.0 release ships `train.json` / `validate.json` / `test.json` as JSON arrays next to imgs/.
    rows = [json.loads(line) for line in (slake_dir / "train.jsonl").read_text().splitlines()]
    (slake_dir / "train.jsonl").unlink()
    (slake_dir / "train.json").write_text(json.dumps(rows, ensure_ascii=False))
    (slake_dir / "validate.json").write_text(json.dumps(rows[1:2]))

    train = load_hub_vqa(str(slake_dir), "train")
    assert column_values(train, "question") == ["Which organ is abnormal?", "Is this a CT?"]  # zh row dropped
    assert column_values(train, "source") == ["slake", "slake"] and train[0]["image"].size == (12, 12)
    validation = load_hub_vqa(str(slake_dir), "validation")
    assert column_values(validation, "answer") == ["No"] and column_values(validation, "split") == ["test"]
    with pytest.raises(DataError, match=r"neither a save_to_disk dataset nor a test.jsonl or test.json file"):
        load_hub_vqa(str(slake_dir), "test")


@pytest.mark.parametrize(("text", "message"), [
    ("[{\"question\": 1", r"test.json: invalid JSON"),
    ("{\"question\": \"q\"}", r"test.json: expected a JSON array of question objects, got a JSON dict"),
    ("[{\"question\": \"q\"}, 3]", r"test.json: row 2: expected a JSON object, got int"),
])
def test_a_malformed_json_split_file_is_named_with_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "test.json").write_text(text)
    with pytest.raises(DataError, match=message):
        load_hub_vqa(str(tmp_path), "test", source="slake")
