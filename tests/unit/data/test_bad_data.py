"""Bad data under `data.on_bad_row`: every problem names its file or row; "fail" raises `DataError`, "skip"
drops the row and counts it per reason; broken files and empty clients raise whatever the policy."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from f3ocus.config.schema import DataConfig, PartitionConfig
from f3ocus.data.medmnist_meta import INFO
from f3ocus.data.prepare import prepare_federated_data
from f3ocus.data.schema import BadRows, DataError, column_values, make_vqa_dataset
from f3ocus.data.store import FederatedStore
from f3ocus.data.ultra_medvqa import build_ultra_medvqa, load_medmnist_npz

ROOT = Path(__file__).resolve().parents[3]


def _png(size: tuple[int, int] = (8, 8), mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, format="PNG")
    return buffer.getvalue()


def _good_rows(n_rows: int = 4) -> dict[str, list]:
    return {"image": [np.full((4, 4), i, np.uint8) for i in range(n_rows)],
            "question": [f"q{i}?" for i in range(n_rows)], "answer": ["yes", "no", "yes", "no"][:n_rows],
            "label": list(range(n_rows))}


def _truncated_png_file(tmp_path: Path) -> str:
    path = tmp_path / "truncated.png"
    data = _png((32, 32))
    path.write_bytes(data[: len(data) // 2])  # header intact, body cut: only a full decode notices
    return str(path)


def _sixteen_bit_file(tmp_path: Path) -> str:
    path = tmp_path / "sixteen.png"
    Image.fromarray(np.full((6, 6), 40000, np.uint16)).save(path)
    return str(path)


# (row-2 value for column, reason, words in the message); callables get tmp_path.
BAD_ROWS = [
    ("image", b"\x89PNG\r\n\x1a\n garbage", "unreadable_image", "unreadable image bytes"),
    ("image", _truncated_png_file, "unreadable_image", "unreadable image file"),
    ("image", _sixteen_bit_file, "unreadable_image", "unsupported mode 'I;16'"),
    ("image", lambda _: Image.new("F", (4, 4)), "unreadable_image", "unsupported mode 'F'"),
    ("image", lambda _: np.zeros((4, 4, 2), np.uint8), "unreadable_image", "(H, W) or (H, W, 3), got shape (4, 4, 2)"),
    ("image", lambda _: np.zeros((0, 4), np.uint8), "unreadable_image", "got shape (0, 4)"),
    ("answer", None, "missing_answer", "missing or empty answer None"),
    ("answer", "", "missing_answer", "missing or empty answer ''"),
    ("answer", "   ", "missing_answer", "missing or empty answer"),
    ("answer", "maybe", "answer_not_in_answer_set", "answer 'maybe' is not in the closed answer set"),
    ("question", None, "empty_question", "empty or non-text question"),
]


def _rows_with(tmp_path: Path, column: str, value) -> dict[str, list]:
    rows = _good_rows()
    rows[column][2] = value(tmp_path) if callable(value) else value
    return rows


@pytest.mark.parametrize(("column", "value", "reason", "words"), BAD_ROWS)
def test_fail_names_origin_row_and_problem(tmp_path: Path, column, value, reason, words) -> None:
    rows = _rows_with(tmp_path, column, value)
    with pytest.raises(DataError) as caught:
        make_vqa_dataset(rows, origin="clients/a.jsonl", answer_set={"yes", "no"})
    assert str(caught.value).startswith("clients/a.jsonl: row 2: ")
    assert words in str(caught.value)


@pytest.mark.parametrize(("column", "value", "reason", "words"), BAD_ROWS)
def test_skip_drops_the_row_and_counts_the_reason(tmp_path: Path, column, value, reason, words) -> None:
    rows = _rows_with(tmp_path, column, value)
    report = BadRows()
    ds, skipped = make_vqa_dataset(rows, origin="src", on_bad_row="skip", answer_set={"yes", "no"}, report=report)
    assert column_values(ds, "label") == [0, 1, 3]
    assert len(skipped) == 1 and words in skipped[0]
    assert report.to_dict() == {"total": 1, "by_reason": {reason: 1}, "examples": skipped}


def test_answer_set_compares_normalised_answers() -> None:
    rows = _good_rows()
    rows["answer"] = ["Yes.", "  NO ", "yes", "no"]
    ds, skipped = make_vqa_dataset(rows, origin="src", answer_set={"yes", "no"})
    assert len(ds) == 4 and skipped == []


def test_report_counts_every_reason_and_keeps_few_examples(tmp_path: Path) -> None:
    n_rows = 30
    rows = {"image": [b"junk"] * 10 + [np.zeros((3, 3), np.uint8)] * 20,
            "question": ["q?"] * n_rows, "answer": ["a"] * 10 + [""] * 5 + ["a"] * 15}
    report = BadRows()
    ds, _ = make_vqa_dataset(rows, origin="src", on_bad_row="skip", report=report)
    assert len(ds) == 15
    assert report.total == 15 and dict(report.by_reason) == {"unreadable_image": 10, "missing_answer": 5}
    assert len(report.examples) <= 20
    assert report.summary() == "15 bad row(s) skipped (missing_answer: 5, unreadable_image: 10)"


# ---------------------------------------------------------------------------------------- MedMNIST .npz files
def _arrays(n_images: int = 6, n_channels: int = 3) -> dict[str, np.ndarray]:
    tail = (8, 8) if n_channels == 1 else (8, 8, 3)
    rng = np.random.default_rng(0)
    return {f"{split}_{kind}": (rng.integers(0, 255, (n_images, *tail), dtype=np.uint8) if kind == "images"
                                else rng.integers(0, 8, (n_images, 1)).astype(np.uint8))
            for split in ("train", "val", "test") for kind in ("images", "labels")}


def _save(folder: Path, name: str = "bloodmnist.npz", **arrays: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("policy", ["fail", "skip"])
@pytest.mark.parametrize(("change", "words"), [
    (lambda a: a.pop("train_labels"), "missing key(s) ['train_labels']"),
    (lambda a: a.update(val_images=np.zeros((6, 8), np.uint8)), "key 'val_images': bloodmnist images must be "
                                                                 "(N, H, W, 3), got shape (6, 8)"),
    (lambda a: a.update(test_labels=np.zeros((5, 1), np.uint8)), "key 'test_labels': 5 labels for 6 images"),
    (lambda a: a.update(train_labels=np.array([["x"]] * 6, dtype=object)), "key 'train_labels': unreadable array"),
])
def test_broken_npz_always_raises_naming_file_and_key(tmp_path: Path, policy: str, change, words: str) -> None:
    arrays = _arrays()
    change(arrays)
    path = _save(tmp_path / "npz", **arrays)
    with pytest.raises(DataError) as caught:
        build_ultra_medvqa(tmp_path / "npz", on_bad_row=policy)
    assert str(path) in str(caught.value) and words in str(caught.value)


def test_npy_or_truncated_file_under_an_npz_name(tmp_path: Path) -> None:
    folder = tmp_path / "npz"
    folder.mkdir()
    np.save(folder / "x.npy", np.zeros(3))
    (folder / "x.npy").rename(folder / "bloodmnist.npz")
    with pytest.raises(DataError, match=r"bloodmnist.npz: not a .npz archive"):
        build_ultra_medvqa(folder)
    path = _save(tmp_path / "cut", **_arrays())
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(DataError, match=r"bloodmnist.npz: (not a readable .npz file|key)"):
        build_ultra_medvqa(tmp_path / "cut")


def test_label_out_of_range_fails_or_skips_those_images(tmp_path: Path) -> None:
    arrays = _arrays()
    arrays["val_labels"][[1, 4], 0] = 8  # bloodmnist has 8 classes: 0..7
    path = _save(tmp_path / "npz", **arrays)
    with pytest.raises(DataError) as caught:
        load_medmnist_npz(path, INFO["bloodmnist"])
    assert f"{path}: key 'val_labels': label values must be in [0, 7]" in str(caught.value)
    assert "first bad row 1" in str(caught.value)
    report = BadRows()
    images, labels = load_medmnist_npz(path, INFO["bloodmnist"], on_bad_row="skip", report=report)
    assert len(images) == len(labels) == 16 and labels.max() <= 7
    assert dict(report.by_reason) == {"label_out_of_range": 2}
    assert "key 'val_labels': row 1: label value(s) [8]" in report.examples[0]


@pytest.mark.parametrize("policy", ["fail", "skip"])
def test_empty_client_is_always_an_error_naming_it(tmp_path: Path, policy: str) -> None:
    empty = {key: value[:0] for key, value in _arrays().items()}
    _save(tmp_path / "npz", **empty)
    with pytest.raises(DataError, match=r"bloodmnist.npz: client 'bloodmnist' has no usable rows"):
        build_ultra_medvqa(tmp_path / "npz", on_bad_row=policy)


def test_client_emptied_by_skipping_is_an_error(tmp_path: Path) -> None:
    arrays = _arrays()
    for split in ("train", "val", "test"):
        arrays[f"{split}_labels"][:] = 9
    _save(tmp_path / "npz", **arrays)
    with pytest.raises(DataError) as caught:
        build_ultra_medvqa(tmp_path / "npz", on_bad_row="skip")
    assert "client 'bloodmnist' has no usable rows (18 bad row(s) skipped (label_out_of_range: 18))" \
        in str(caught.value)


def test_unknown_flag_is_a_data_error(tmp_path: Path) -> None:
    _save(tmp_path / "npz", **_arrays())
    with pytest.raises(DataError, match="unknown MedMNIST flag 'nosuchmnist'"):
        build_ultra_medvqa(tmp_path / "npz", flags=["nosuchmnist"])


# ----------------------------------------------------------------------------------- prepare: counts in the store
def _ultra_cfg(path: Path, policy: str) -> DataConfig:
    return DataConfig(task="ultra_medvqa", path=str(path), modalities=("bloodmnist", "pathmnist"),
                      samples_per_client=None, on_bad_row=policy,  # type: ignore[arg-type]
                      partition=PartitionConfig(scheme="natural", by="source"))


def test_prepare_skip_reports_counts_in_the_store_and_cache(tmp_path: Path) -> None:
    arrays = _arrays(n_images=10)
    arrays["train_labels"][[0, 3, 5], 0] = 200
    _save(tmp_path / "npz", **arrays)
    _save(tmp_path / "npz", "pathmnist.npz", **_arrays(n_images=10))
    with pytest.raises(DataError, match="bloodmnist.npz: key 'train_labels'"):
        prepare_federated_data(_ultra_cfg(tmp_path / "npz", "fail"), tmp_path / "store-fail", seed=0)
    store = prepare_federated_data(_ultra_cfg(tmp_path / "npz", "skip"), tmp_path / "store", seed=0)
    assert store.clients == ["bloodmnist", "pathmnist"]
    assert store.num_examples("bloodmnist", "train") + store.num_examples("bloodmnist", "test") == 27
    assert store.skipped_rows == 3
    assert store.bad_rows["by_reason"] == {"label_out_of_range": 3}
    assert json.loads((tmp_path / "store" / "meta.json").read_text())["bad_rows"]["total"] == 3
    assert FederatedStore.load(tmp_path / "store").skipped_rows == 3  # what a cache hit returns


def _pathvqa_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "pathvqa"
    folder.mkdir()
    Image.new("RGB", (8, 8), (90, 10, 10)).save(folder / "ok.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    train = [{"image": "ok.png", "question": f"is there tissue {i}?", "answer": "yes" if i % 2 else "no"}
             for i in range(12)]
    train += [{"image": "broken.png", "question": "is this broken?", "answer": "yes"},
              {"image": "ok.png", "question": "what is here?", "answer": None},
              {"image": "ok.png", "question": "what else?", "answer": ""}]
    test = [{"image": "ok.png", "question": "is there tissue?", "answer": "yes"},
            {"image": "ok.png", "question": "which stain?", "answer": "eosin"}]
    for name, rows in (("train", train), ("test", test)):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder


def test_prepare_hub_skip_counts_per_reason(tmp_path: Path) -> None:
    cfg = DataConfig(task="pathvqa", path=str(_pathvqa_dir(tmp_path)), samples_per_client=None, on_bad_row="skip")
    store = prepare_federated_data(cfg, tmp_path / "store", seed=0)
    assert store.clients == ["pathology"]
    assert store.bad_rows["by_reason"] == {"missing_answer": 2, "unreadable_image": 1}
    assert store.skipped_rows == 3
    assert store.unseen_test_answers == 1  # "eosin" is no train answer: kept, always scored wrong
    with pytest.raises(DataError, match=r"train.jsonl: row 12: unreadable image file"):
        prepare_federated_data(DataConfig(task="pathvqa", path=cfg.path, samples_per_client=None),
                               tmp_path / "store-fail", seed=0)


def test_requested_modality_without_rows_is_an_error(tmp_path: Path) -> None:
    cfg = DataConfig(task="pathvqa", path=str(_pathvqa_dir(tmp_path)), samples_per_client=None, on_bad_row="skip",
                     modalities=("pathology", "radiology"))
    with pytest.raises(DataError, match="data.modalities: no pathvqa row has modality 'radiology'"):
        prepare_federated_data(cfg, tmp_path / "store", seed=0)


# --------------------------------------------------------------------------------------------------- the CLI
def test_cli_bad_npz_folder_exits_2_with_a_data_error(tmp_path: Path) -> None:
    arrays = _arrays()
    arrays["train_images"] = arrays["train_images"][:, :, :, 0]  # gray images in an RGB dataset
    path = _save(tmp_path / "npz", **arrays)
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump({
        "name": "bad-data", "model": {"family": "llava", "checkpoint": "scratch"},
        "data": {"task": "ultra_medvqa", "path": str(tmp_path / "npz"), "modalities": ["bloodmnist"],
                 "samples_per_client": 20, "on_bad_row": "fail", "partition": {"scheme": "natural", "by": "source"}},
        "federation": {"rounds": 1, "budgets": 1, "engine": "local"},
        "tracking": {"output_dir": str(tmp_path / "runs"), "mlflow": False},
    }))
    done = subprocess.run([sys.executable, "-m", "f3ocus.cli", "run", str(config)], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr + done.stdout
    error_lines = [line for line in done.stderr.splitlines() if line.startswith("data error: ")]
    assert len(error_lines) == 1, done.stderr[-2000:]
    assert str(path) in error_lines[0] and "key 'train_images'" in error_lines[0]
