"""Synthetic stand-ins for MedMNIST-v2 2D `.npz` files, in the exact MedMNIST file format.

MedMNIST downloads are unreachable here (docs/METHOD.md §6), so the Ultra-MedVQA builder is fed generated
files with the real keys, dtypes and shapes: `train_images`, `train_labels`, `val_images`, `val_labels`,
`test_images`, `test_labels`; images uint8 (N, H, W) or (N, H, W, 3); labels uint8 (N, 1), or (N, C)
0/1 for multi-label. Each dataset gets a look of its own (channels, tint, background, texture
frequency, polarity), and the label is drawn into the image so a small model can learn it: class k is
a blob at grid cell k with class-dependent intensity; a multi-label finding j is a small mark at cell j;
an ordinal grade g is g spots plus a brightness step. Position jitter, random texture phase and pixel
noise keep it from being trivial. Everything is drawn from a generator seeded by (seed, flag).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from f3ocus.data.medmnist_meta import FLAGS, MedMnistInfo, medmnist_info

SPLITS: tuple[str, ...] = ("train", "val", "test")
# DEVIATION: the paper uses the real MedMNIST-v2 images; these are generated stand-ins (docs/METHOD.md §6).
_CHUNK = 256  # images per vectorised batch: bounds memory at 224x224
FINDING_RATE = 0.2  # P(finding present) per multi-label class
JITTER = 0.2  # std of a mark's centre, in grid cells
DISTRACTOR = 0.15  # intensity of the class-free distractor blob

Background = Callable[[np.ndarray, np.ndarray, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class _Style:
    background: str
    tint: tuple[float, float, float]
    polarity: float  # +1: label marks are brighter than the background, -1: darker
    noise: float


_STYLES: dict[str, _Style] = {
    "pathmnist": _Style("stripes", (0.85, 0.45, 0.75), 1.0, 0.13),
    "chestmnist": _Style("thorax", (1.0, 1.0, 1.0), 1.0, 0.12),
    "dermamnist": _Style("lesion", (0.95, 0.7, 0.55), -1.0, 0.12),
    "octmnist": _Style("layers", (1.0, 1.0, 1.0), 1.0, 0.14),
    "pneumoniamnist": _Style("thorax", (1.0, 1.0, 1.0), 1.0, 0.15),
    "retinamnist": _Style("disc", (0.95, 0.5, 0.25), 1.0, 0.12),
    "breastmnist": _Style("fan", (1.0, 1.0, 1.0), 1.0, 0.15),
    "bloodmnist": _Style("plain", (0.8, 0.7, 0.95), -1.0, 0.1),
    "tissuemnist": _Style("dark", (1.0, 1.0, 1.0), 1.0, 0.12),
    "organamnist": _Style("body", (1.0, 1.0, 1.0), 1.0, 0.12),
    "organcmnist": _Style("body", (1.0, 1.0, 1.0), 1.0, 0.14),
    "organsmnist": _Style("body", (1.0, 1.0, 1.0), 1.0, 0.16),
}


def generate_medmnist_npz(out_dir: str | Path, flags: Sequence[str] = FLAGS, size: int = 28,
                          n_train: int = 200, n_val: int = 40, n_test: int = 80, seed: int = 0) -> list[Path]:
    """Write one synthetic MedMNIST-format `<flag>.npz` per flag.

    Args:
        out_dir: folder to write into (created if missing).
        flags: MedMNIST-v2 2D flags, e.g. ("pathmnist", "chestmnist").
        size: image side H = W in pixels (MedMNIST ships 28, 64, 128, 224).
        n_train: images in the train split; n_val, n_test likewise.
        seed: with the flag, seeds everything in that file.

    Returns:
        the written paths, in `flags` order.
    """
    out_path = Path(out_dir)
    out_path.mkdir(parents=True, exist_ok=True)
    counts = {"train": n_train, "val": n_val, "test": n_test}
    written: list[Path] = []
    for flag in flags:
        info = medmnist_info(flag)
        rng = np.random.default_rng([seed, zlib.crc32(flag.encode())])
        arrays: dict[str, np.ndarray] = {}
        for split in SPLITS:
            labels = draw_labels(info, counts[split], rng)
            arrays[f"{split}_images"] = synthesize_images(info, labels, size, rng)
            arrays[f"{split}_labels"] = labels
        path = out_path / f"{flag}.npz"
        np.savez_compressed(path, **arrays)
        written.append(path)
    return written


def draw_labels(info: MedMnistInfo, n_images: int, rng: np.random.Generator) -> np.ndarray:
    """Draw MedMNIST-shaped labels.

    Returns:
        uint8 (N, 1) class indices, or (N, C) 0/1 for multi-label.
    """
    if info.task == "multi-label":
        return (rng.random((n_images, info.num_classes)) < FINDING_RATE).astype(np.uint8)
    return rng.integers(0, info.num_classes, size=(n_images, 1)).astype(np.uint8)


def synthesize_images(info: MedMnistInfo, labels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Draw images whose content encodes `labels`.

    Args:
        info: the dataset's table entry (task, channels).
        labels: (N, 1) or (N, C) as from `draw_labels`.
        size: H = W.
        rng: source of all randomness.

    Returns:
        uint8 (N, H, W) for 1-channel datasets, (N, H, W, 3) for 3-channel ones.
    """
    chunks = [_synthesize_chunk(info, labels[start:start + _CHUNK], size, rng)
              for start in range(0, len(labels), _CHUNK)]
    channels = (size, size, 3) if info.n_channels == 3 else (size, size)
    return np.concatenate(chunks) if chunks else np.zeros((0, *channels), np.uint8)


def _synthesize_chunk(info: MedMnistInfo, labels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    style = _STYLES[info.flag]
    axis = (np.arange(size, dtype=np.float32) + 0.5) / size  # (S,) pixel centres in [0, 1]
    n_images = len(labels)
    image = _BACKGROUNDS[style.background](axis, np.zeros(n_images), rng)  # (n, S, S)
    image += style.polarity * _label_marks(info, labels, axis, rng)
    image += rng.normal(0.0, style.noise, size=image.shape).astype(np.float32)
    if info.n_channels == 3:
        tint = np.asarray(style.tint, np.float32)
        jitter = rng.normal(1.0, 0.04, size=(n_images, 1, 1, 3)).astype(np.float32)
        image = image[..., None] * tint * jitter  # (n, S, S, 3)
    return (np.clip(image, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def _label_marks(info: MedMnistInfo, labels: np.ndarray, axis: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Return (n, S, S) float intensity that encodes the labels (added to the background)."""
    n_images = len(labels)
    if info.task == "multi-label":
        grid = int(np.ceil(np.sqrt(info.num_classes)))
        marks = np.zeros((n_images, axis.size, axis.size), np.float32)
        for finding in range(info.num_classes):
            present = labels[:, finding].astype(np.float32)[:, None, None]
            marks += 0.55 * present * _cell_blob(finding, grid, axis, n_images, rng, width=0.25)
        return marks
    classes = labels[:, 0].astype(np.int64)
    if info.task == "ordinal":
        return _grade_spots(classes, info.num_classes, axis, rng)
    grid = int(np.ceil(np.sqrt(info.num_classes)))
    # Salient enough for a ~1.5 M-parameter VLM at 32 px to learn from a few hundred questions.
    amplitude = (0.5 + 0.25 * classes / max(info.num_classes - 1, 1)).astype(np.float32)[:, None, None]
    # a weaker distractor blob in a random cell on half of the images: position alone is not enough
    distractor = rng.integers(0, grid * grid, n_images)
    strength = (DISTRACTOR * (rng.random(n_images) < 0.5)).astype(np.float32)[:, None, None]
    return (amplitude * _cell_blob(classes, grid, axis, n_images, rng, width=0.45)
            + strength * _cell_blob(distractor, grid, axis, n_images, rng, width=0.35))


def _cell_blob(cell: int | np.ndarray, grid: int, axis: np.ndarray, n_images: int, rng: np.random.Generator,
               width: float) -> np.ndarray:
    """Gaussian blob centred (with jitter) in grid cell `cell` of a grid x grid layout; (n, S, S)."""
    cell = np.broadcast_to(np.asarray(cell), (n_images,))
    row, col = cell // grid, cell % grid
    centre_y = (row + 0.5) / grid + rng.normal(0.0, JITTER / grid, n_images)
    centre_x = (col + 0.5) / grid + rng.normal(0.0, JITTER / grid, n_images)
    return _gaussian(centre_y, centre_x, width / grid, axis)


def _grade_spots(grades: np.ndarray, num_grades: int, axis: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Grade g -> g small bright spots at random places inside the disc, plus a 0.07*g brightness step."""
    n_images = len(grades)
    spots = np.zeros((n_images, axis.size, axis.size), np.float32)
    for spot in range(num_grades - 1):
        present = (grades > spot).astype(np.float32)[:, None, None]
        angle = rng.uniform(0, 2 * np.pi, n_images)
        radius = rng.uniform(0.1, 0.3, n_images)
        spots += 0.55 * present * _gaussian(0.5 + radius * np.sin(angle), 0.5 + radius * np.cos(angle), 0.045, axis)
    return spots + 0.07 * grades.astype(np.float32)[:, None, None]


def _gaussian(centre_y: np.ndarray, centre_x: np.ndarray, sigma: float, axis: np.ndarray) -> np.ndarray:
    """Separable Gaussians: centres (n,), sigma in image units -> (n, S, S) peaking at 1."""
    along_y = np.exp(-((axis[None, :] - centre_y[:, None]) ** 2) / (2 * sigma**2)).astype(np.float32)
    along_x = np.exp(-((axis[None, :] - centre_x[:, None]) ** 2) / (2 * sigma**2)).astype(np.float32)
    return np.einsum("ni,nj->nij", along_y, along_x)


def _phase(n_images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 2 * np.pi, (n_images.size, 1, 1)).astype(np.float32)


def _stripes(axis: np.ndarray, batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """High-frequency oriented H&E-like texture."""
    theta = rng.uniform(0, np.pi, (batch.size, 1, 1))
    y, x = axis[:, None], axis[None, :]
    wave = np.sin(2 * np.pi * 7 * (x * np.cos(theta) + y * np.sin(theta)) + _phase(batch, rng))
    return (0.45 + 0.12 * wave).astype(np.float32)


def _thorax(axis: np.ndarray, batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Dark field, bright body column, horizontal rib stripes."""
    y, x = axis[:, None], axis[None, :]
    body = 0.15 + 0.3 * np.exp(-(((x - 0.5) / 0.32) ** 2)) + 0.05 * np.sin(2 * np.pi * 9 * y + _phase(batch, rng))
    return np.broadcast_to(body, (batch.size, axis.size, axis.size)).astype(np.float32).copy()


def _lesion(axis: np.ndarray, batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Bright skin with a darker central lesion of random size."""
    y, x = axis[:, None], axis[None, :]
    radius = rng.uniform(0.2, 0.32, (batch.size, 1, 1))
    return (0.8 - 0.25 * np.exp(-((x - 0.5) ** 2 + (y - 0.5) ** 2) / (2 * radius**2))).astype(np.float32)


def _layers(axis: np.ndarray, batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Dark field with a wavy bright retinal band (OCT B-scan)."""
    y, x = axis[:, None], axis[None, :]
    centre = 0.55 + 0.08 * np.sin(2 * np.pi * x + _phase(batch, rng))
    return (0.08 + 0.35 * np.exp(-(((y - centre) / 0.09) ** 2))).astype(np.float32)


def _disc(axis: np.ndarray, batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Fundus: bright disc with radial fall-off on black."""
    y, x = axis[:, None], axis[None, :]
    distance = np.sqrt((x - 0.5) ** 2 + (y - 0.5) ** 2)
    disc = np.where(distance < 0.47, 0.55 - 0.5 * distance, 0.0)
    return np.broadcast_to(disc, (batch.size, axis.size, axis.size)).astype(np.float32).copy()


def _fan(axis: np.ndarray, batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Ultrasound: speckled fan from the top centre, black outside."""
    y, x = axis[:, None], axis[None, :]
    inside = (np.abs(np.arctan2(x - 0.5, y + 0.1)) < 0.6) & (y < 0.95)
    speckle = rng.gamma(4.0, 0.25, (batch.size, axis.size, axis.size))
    return (0.3 * inside * speckle).astype(np.float32)


def _plain(axis: np.ndarray, batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Light, slowly varying microscope field."""
    y, x = axis[:, None], axis[None, :]
    return (0.85 + 0.05 * np.sin(2 * np.pi * (x + y) + _phase(batch, rng))).astype(np.float32)


def _dark(axis: np.ndarray, batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Dark fluorescence field with faint low-frequency texture."""
    y, x = axis[:, None], axis[None, :]
    return (0.1 + 0.05 * np.sin(2 * np.pi * 2 * x + _phase(batch, rng)) * np.cos(2 * np.pi * 2 * y)).astype(np.float32)


def _body(axis: np.ndarray, batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Axial CT: mid-grey elliptical body on black with soft texture."""
    y, x = axis[:, None], axis[None, :]
    inside = ((x - 0.5) / 0.46) ** 2 + ((y - 0.5) / 0.38) ** 2 < 1.0
    texture = 0.04 * np.sin(2 * np.pi * 4 * x + _phase(batch, rng)) * np.sin(2 * np.pi * 3 * y)
    return (inside * (0.35 + texture)).astype(np.float32)


_BACKGROUNDS: dict[str, Background] = {
    "stripes": _stripes, "thorax": _thorax, "lesion": _lesion, "layers": _layers, "disc": _disc,
    "fan": _fan, "plain": _plain, "dark": _dark, "body": _body,
}
