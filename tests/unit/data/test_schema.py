"""make_vqa_dataset: every image kind is accepted, bad rows fail or are skipped with messages naming them."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from f3ocus.data.schema import FEATURES, DataError, column_values, make_vqa_dataset


def _png_bytes(color: int = 128) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (color, 0, 0)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_every_image_kind_is_accepted_and_defaults_filled(tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "a.png"
    Image.new("L", (6, 5)).save(path)
    rows = {
        "image": [Image.new("RGB", (4, 4)), np.zeros((5, 7), np.uint8), np.zeros((3, 3, 3), np.uint8),
                  str(path), _png_bytes()],
        "question": ["q0?", "q1?", "q2?", "q3?", "q4?"],
        "answer": ["a", "b", "c", "d", "e"],
    }
    # Execute
    ds, skipped = make_vqa_dataset(rows, origin="unit")
    # Assert
    assert skipped == []
    assert ds.features == FEATURES
    assert list(ds.column_names) == list(FEATURES)
    assert column_values(ds, "label") == [-1] * 5
    assert column_values(ds, "split") == ["train"] * 5
    assert ds[1]["image"].size == (7, 5)
    assert ds[3]["image"].size == (6, 5)


@pytest.mark.parametrize(("column", "value", "problem"), [
    ("question", "  ", "empty or non-text question"),
    ("answer", "", "missing or empty answer"),
    ("answer", None, "missing or empty answer"),
    ("image", b"not an image", "unreadable image bytes"),
    ("image", "/no/such/file.png", "unreadable image file"),
    ("image", np.zeros((4, 4), np.float32), "must be uint8"),
    ("image", np.zeros((4, 4, 2), np.uint8), "(H, W) or (H, W, 3)"),
    ("split", "val", "split must be one of"),
])
def test_bad_row_fails_naming_origin_and_row(column: str, value: object, problem: str) -> None:
    rows = {"image": [np.zeros((4, 4), np.uint8)] * 3, "question": ["a?", "b?", "c?"], "answer": ["x", "y", "z"],
            "split": ["train", "test", "train"]}
    rows[column] = list(rows[column])
    rows[column][2] = value
    with pytest.raises(DataError) as error:
        make_vqa_dataset(rows, origin="data/file.jsonl")
    assert "data/file.jsonl: row 2:" in str(error.value)
    assert problem in str(error.value)
    assert isinstance(error.value, ValueError)


def test_skip_drops_bad_rows_and_reports_each(caplog: pytest.LogCaptureFixture) -> None:
    rows = {"image": [np.zeros((4, 4), np.uint8), b"junk", np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8)],
            "question": ["a?", "b?", "", "d?"], "answer": ["x", "y", "z", "w"], "label": [0, 1, 2, 3]}
    with caplog.at_level(logging.WARNING):
        ds, skipped = make_vqa_dataset(rows, origin="src", on_bad_row="skip")
    assert column_values(ds, "label") == [0, 3]
    assert [message.split(":")[:2] for message in skipped] == [["src", " row 1"], ["src", " row 2"]]
    assert "skipped 2 bad row(s)" in caplog.text


def test_column_errors_name_the_origin() -> None:
    with pytest.raises(DataError, match="origin-x: missing required column"):
        make_vqa_dataset({"question": ["a"], "answer": ["b"]}, origin="origin-x")
    with pytest.raises(DataError, match="unknown column"):
        make_vqa_dataset({"image": [b""], "question": ["a"], "answer": ["b"], "colour": ["r"]}, origin="o")
    with pytest.raises(DataError, match="unequal lengths"):
        make_vqa_dataset({"image": [b"", b""], "question": ["a"], "answer": ["b"]}, origin="o")
