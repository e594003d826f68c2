"""Writers of tiny datasets in the real on-disk layouts the loaders read (used by the data and task-config tests)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from datasets import Dataset, DatasetDict, Features, Image, Value
from PIL import Image as PILImage

from f3ocus.data.medmnist_synth import generate_medmnist_npz


def _picture(seed: int, size: int = 12, mode: str = "RGB") -> PILImage.Image:
    shape = (size, size, 3) if mode == "RGB" else (size, size)
    return PILImage.fromarray(np.random.default_rng(seed).integers(0, 255, shape, dtype=np.uint8))


def write_vqa_rad(folder: Path, n_train: int = 6, n_test: int = 2) -> Path:
    """VQA-RAD hub columns (image, question, answer) saved as a DatasetDict."""
    features = Features({"image": Image(), "question": Value("string"), "answer": Value("string")})
    tables = {split: Dataset.from_dict({"image": [_picture(i) for i in range(count)],
                                        "question": ["is there a fracture?"] * count,
                                        "answer": ["yes" if i % 2 else "no" for i in range(count)]}, features=features)
              for split, count in (("train", n_train), ("test", n_test))}
    DatasetDict(tables).save_to_disk(str(folder))
    return folder


def write_slake(folder: Path, n_train: int = 6, n_test: int = 2) -> Path:
    """SLAKE layout: imgs/xmlab<i>/source.jpg and <split>.jsonl with SLAKE's own columns (English rows)."""
    for split, count in (("train", n_train), ("test", n_test)):
        rows = []
        for index in range(count):
            name = f"xmlab{split}{index}/source.jpg"
            (folder / "imgs" / name).parent.mkdir(parents=True, exist_ok=True)
            _picture(index).save(folder / "imgs" / name)
            rows.append({"img_name": name, "question": "Which organ is shown?", "answer": "Lung", "q_lang": "en",
                         "answer_type": "OPEN", "content_type": "Organ", "modality": "X-Ray"})
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder


def write_vqamed(folder: Path, year: int, n_train: int = 6, n_val: int = 2) -> Path:
    """A VQA-Med 2019-style year folder: All_QA_Pairs_train/val.txt with Train_images/ and Val_images/."""
    for split, count, images in (("train", n_train, "Train_images"), ("val", n_val, "Val_images")):
        lines = []
        for index in range(count):
            image_id = f"synpic{year}{split}{index}"
            (folder / images).mkdir(parents=True, exist_ok=True)
            _picture(index, mode="L").save(folder / images / f"{image_id}.jpg")
            lines.append(f"{image_id}|what plane is this?|{'axial' if index % 2 else 'coronal'}")
        (folder / f"All_QA_Pairs_{split}.txt").write_text("\n".join(lines) + "\n")
    return folder


def write_medmnist(folder: Path, flags: tuple[str, ...]) -> Path:
    """MedMNIST-v2 `.npz` files (the real keys, dtypes and shapes) at 28 px."""
    generate_medmnist_npz(folder, flags=flags, size=28, n_train=10, n_val=2, n_test=4, seed=0)
    return folder


NIH_LABELS: tuple[str, ...] = ("Cardiomegaly|Effusion", "No Finding", "Pleural_Thickening", "Infiltration", "Mass",
                               "Nodule|Mass", "No Finding", "Atelectasis", "Edema", "Effusion")


def write_nih(folder: Path, n_images: int = 30) -> Path:
    """NIH ChestX-ray14 layout: Data_Entry_2017.csv, images_001/images/*.png, test_list.txt (every 5th image)."""
    (folder / "images_001" / "images").mkdir(parents=True, exist_ok=True)
    names = [f"{index:08d}_000.png" for index in range(n_images)]
    with (folder / "Data_Entry_2017.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Image Index", "Finding Labels", "Follow-up #", "Patient ID"])
        for index, name in enumerate(names):
            _picture(index, size=16, mode="L").save(folder / "images_001" / "images" / name)
            writer.writerow([name, NIH_LABELS[index % len(NIH_LABELS)], 0, index])
    (folder / "test_list.txt").write_text("".join(name + "\n" for name in names[::5]))
    return folder


def write_mimic(folder: Path, n_images: int = 60) -> Path:
    """A MIMIC-CXR-JPG style CSV (chexpert labels joined with paths and splits); the last row is CheXpert-only."""
    header = ["subject_id", "path", "split", "No Finding", "Atelectasis", "Cardiomegaly", "Pleural Effusion", "Edema",
              "Lung Opacity", "Support Devices"]
    rows = []
    for index in range(n_images):
        relative = f"files/p10/p{index}/s1/view.jpg"
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        _picture(index, size=16, mode="L").save(folder / relative)
        labels = [""] * 7
        if index == n_images - 1:
            labels[5] = "1.0"  # only Lung Opacity: outside the 15 classes
        elif index % 4 == 0:
            labels[0] = "1.0"
        else:
            labels[index % 4] = "1.0"
            labels[4] = "-1.0"  # uncertain edema: absent
        rows.append([str(index), relative, "test" if index % 6 == 0 else ("validate" if index % 6 == 1 else "train"),
                     *labels])
    with (folder / "mimic-cxr-2.0.0-merged.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return folder
