"""Synthetic chest X-rays with multi-label findings, written in the NIH ChestX-ray14 layout `f3ocus.data.cxr` reads.

Open-I and MIMIC-CXR are unreachable here (docs/METHOD.md §6), so T4-T6 run offline on generated images that go
through the real loader: `out_dir/train.csv` and `out_dir/test.csv` with NIH's `Image Index` and
`Finding Labels` columns ("Cardiomegaly|Effusion", "Pleural_Thickening", "No Finding") and grayscale PNGs
in `out_dir/images/`. Each image is a torso (body ellipse, two dark lungs with rib texture, a heart,
the diaphragm) and each of the 14 findings adds its own mark at its own place: atelectasis a flat band in
the image-left lower lung, cardiomegaly a larger heart, effusion bright lung bases, infiltration patchy
spots, mass a large upper blob, nodule a small dot, pneumonia a lower haze, pneumothorax a black apex,
consolidation a dense sharp patch, edema a perihilar "butterfly", emphysema larger darker lungs, fibrosis
a reticular grid, pleural thickening a bright lateral rim, hernia a blob below the diaphragm. Labels are
realistic-ish: 0-3 findings (P = 0.30 / 0.38 / 0.20 / 0.12: "no finding" ~30 %), findings drawn by
(flattened) ChestX-ray14 prevalence with the common co-occurrences boosted (effusion + atelectasis,
cardiomegaly + edema + effusion, consolidation + pneumonia, ...). Everything is seeded.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from f3ocus.data.multilabel import CXR_FINDINGS

# DEVIATION: the paper uses Open-I / MIMIC-CXR radiographs; these are generated stand-ins (docs/METHOD.md §6).
SIZE = 32
FINDINGS: tuple[str, ...] = CXR_FINDINGS[:14]  # without "no finding"
NIH_NAMES: tuple[str, ...] = tuple(name.title().replace(" ", "_") for name in FINDINGS)  # "Pleural_Thickening"
NO_FINDING_NAME = "No Finding"
COUNT_PROBABILITIES: tuple[float, ...] = (0.30, 0.38, 0.20, 0.12)  # P(0, 1, 2, 3 findings)
# ChestX-ray14 label counts (Wang et al. 2017), FINDINGS order; flattened by PREVALENCE_POWER so that rare
# classes still occur in a few hundred images.
NIH_COUNTS: tuple[int, ...] = (11559, 2776, 13317, 19894, 5782, 6331, 1431, 5302, 4667, 2303, 2516, 1686, 3385, 227)
PREVALENCE_POWER = 0.6
CO_OCCURRENCE: tuple[tuple[str, str, float], ...] = (
    ("effusion", "atelectasis", 3.0), ("effusion", "cardiomegaly", 2.0), ("edema", "cardiomegaly", 3.0),
    ("edema", "effusion", 3.0), ("infiltration", "effusion", 2.0), ("mass", "nodule", 2.0),
    ("consolidation", "pneumonia", 3.0), ("emphysema", "pneumothorax", 2.0), ("fibrosis", "pleural thickening", 2.0),
)


def generate_cxr_dataset(out_dir: str | Path, *, n_train: int, n_test: int, size: int = SIZE, seed: int = 0) -> Path:
    """Write a synthetic multi-label chest X-ray dataset (train.csv, test.csv, images/) and return `out_dir`.

    Args:
        out_dir: folder to (re)write; an existing `images/` folder in it is replaced.
        n_train: train images; n_test: test images.
        size: image side in pixels.
        seed: seeds labels, anatomy jitter, marks and noise.
    """
    root = Path(out_dir)
    if (root / "images").exists():
        shutil.rmtree(root / "images")
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for split, count in (("train", n_train), ("test", n_test)):
        labels = draw_findings(count, rng)  # (n, 14) bool
        images = synthesize_cxr(labels, size, rng)  # (n, S, S) uint8
        with (root / f"{split}.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["Image Index", "Finding Labels"])
            for index, (image, present) in enumerate(zip(images, labels)):
                name = f"{split}_{index:06d}.png"
                Image.fromarray(image, mode="L").save(root / "images" / name)
                found = [NIH_NAMES[j] for j in np.flatnonzero(present)]
                writer.writerow([name, "|".join(found) if found else NO_FINDING_NAME])
    return root


def draw_findings(n_images: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 14) bool: 0-3 findings per image, by flattened prevalence with co-occurrence boosts."""
    weights = np.asarray(NIH_COUNTS, np.float64) ** PREVALENCE_POWER  # (14,)
    boost = np.ones((len(FINDINGS), len(FINDINGS)))  # (14, 14) symmetric
    for first, second, factor in CO_OCCURRENCE:
        i, j = FINDINGS.index(first), FINDINGS.index(second)
        boost[i, j] = boost[j, i] = factor
    counts = rng.choice(len(COUNT_PROBABILITIES), size=n_images, p=COUNT_PROBABILITIES)
    labels = np.zeros((n_images, len(FINDINGS)), dtype=bool)
    for row, count in enumerate(counts):
        chosen_weights = weights.copy()
        for _ in range(count):
            p = np.where(labels[row], 0.0, chosen_weights)
            pick = rng.choice(len(FINDINGS), p=p / p.sum())
            labels[row, pick] = True
            chosen_weights = chosen_weights * boost[pick]
    return labels


def synthesize_cxr(labels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Draw (n, S, S) uint8 radiographs whose marks encode `labels` (n, 14) bool."""
    n_images = len(labels)
    has = {name: labels[:, j].astype(np.float32)[:, None, None] for j, name in enumerate(FINDINGS)}
    axis = (np.arange(size, dtype=np.float32) + 0.5) / size
    y, x = axis[None, :, None], axis[None, None, :]  # (1, S, 1), (1, 1, S)
    shift_y, shift_x = (rng.normal(0.0, 0.015, (2, n_images, 1, 1))).astype(np.float32)
    y, x = y - shift_y, x - shift_x  # (n, S, 1), (n, 1, S): anatomy jitter
    body = _ellipse(y, x, 0.55, 0.5, 0.46, 0.43)
    scale = 1.0 + 0.15 * has["emphysema"]  # hyperinflated lungs
    lungs = np.maximum(_ellipse(y, x, 0.45, 0.32, 0.25 * scale, 0.13 * scale),
                       _ellipse(y, x, 0.45, 0.68, 0.25 * scale, 0.13 * scale))
    heart_scale = 1.0 + 0.6 * has["cardiomegaly"]
    heart = _ellipse(y, x, 0.63, 0.56, 0.09 * heart_scale, 0.10 * heart_scale)
    ribs = 0.05 * np.sin(2 * np.pi * 7 * y + rng.uniform(0, 2 * np.pi, (n_images, 1, 1)))
    image = 0.05 + 0.42 * body + 0.12 * body * (y > 0.72)  # dark field, soft tissue, abdomen below diaphragm
    image = image - lungs * (0.30 + 0.12 * has["emphysema"]) + lungs * ribs
    image = np.maximum(image, 0.62 * heart)
    image = image + _finding_marks(has, y, x, lungs, n_images, rng)
    image = image * rng.uniform(0.9, 1.1, (n_images, 1, 1)) + rng.normal(0.0, 0.035, image.shape)
    return (np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8)


def _finding_marks(has: dict[str, np.ndarray], y: np.ndarray, x: np.ndarray, lungs: np.ndarray, n_images: int,
                   rng: np.random.Generator) -> np.ndarray:
    """(n, S, S) intensity added by the findings (each term is zero where its finding is absent)."""
    def blob(cy: float | np.ndarray, cx: float | np.ndarray, sigma: float) -> np.ndarray:
        jitter_y, jitter_x = rng.normal(0.0, 0.015, (2, n_images, 1, 1))
        return np.exp(-((y - cy - jitter_y) ** 2 + (x - cx - jitter_x) ** 2) / (2 * sigma**2))

    patches = sum(blob(rng.uniform(0.38, 0.55, (n_images, 1, 1)), centre + rng.uniform(-0.06, 0.06, (n_images, 1, 1)),
                       0.03) for centre in (0.32, 0.68, 0.32, 0.68))
    left_apex = _ellipse(y, x, 0.30, 0.32, 0.09, 0.10)
    outer_rim = lungs * ((np.abs(x - 0.5) > 0.25) & (np.abs(x - 0.5) < 0.32))
    grid = (np.abs(np.sin(2 * np.pi * 6 * x) * np.sin(2 * np.pi * 6 * y)) > 0.5) * lungs * (y > 0.48)
    return (0.40 * has["atelectasis"] * lungs * (np.abs(y - 0.56) < 0.03) * (x < 0.5)
            + 0.38 * has["effusion"] * lungs * (y > 0.54)
            + 0.28 * has["infiltration"] * np.minimum(patches, 1.0)
            + 0.50 * has["mass"] * blob(0.33, 0.68, 0.06)
            + 0.60 * has["nodule"] * blob(0.30, 0.30, 0.025)
            + 0.30 * has["pneumonia"] * blob(0.56, 0.68, 0.07)
            - 0.25 * has["pneumothorax"] * left_apex
            + 0.45 * has["consolidation"] * _ellipse(y, x, 0.47, 0.30, 0.06, 0.05)
            + 0.22 * has["edema"] * (blob(0.45, 0.40, 0.07) + blob(0.45, 0.60, 0.07))
            + 0.40 * has["fibrosis"] * grid
            + 0.35 * has["pleural thickening"] * outer_rim
            + 0.45 * has["hernia"] * blob(0.76, 0.5, 0.045)).astype(np.float32)


def _ellipse(y: np.ndarray, x: np.ndarray, cy: float, cx: float, ry: float | np.ndarray,
             rx: float | np.ndarray) -> np.ndarray:
    """1.0 inside the ellipse, 0.0 outside (broadcast over the batch)."""
    return ((((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2) < 1.0).astype(np.float32)
