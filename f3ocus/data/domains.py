"""T1's offline stand-in: easy-vqa under five image-domain shifts, one client per shift.

The paper's T1 clients are five medical VQA sets that differ in scanners, sites and protocols (SLAKE,
VQA-RAD, VQA-Med 2019/2020/2021). Those are unreachable here (docs/METHOD.md §6), so this builder simulates
a domain gap, not medicine: it draws disjoint seeded subsets of the real easy-vqa questions (train from
easy-vqa's train split, test from its test split), gives each subset one shift of `DOMAINS` and makes it
a client (`modality` = the shift name; partition naturally by modality). The shifts are deterministic
per (seed, row): colour inversion, film grain (Gaussian noise), blur, a colour tint, low contrast.
Questions and answers are easy-vqa's own; colour answers name the scene's original colour, so the
inverted and tinted clients must learn their own colour mapping, as a site with another protocol would.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
from datasets import Dataset, concatenate_datasets
from PIL import Image, ImageFilter

from f3ocus.data.easy_vqa import easy_vqa_answers, load_easy_vqa
from f3ocus.data.schema import BadRows, DataError, column_values, make_vqa_dataset

SOURCE = "easy-vqa"
GRAIN_SIGMA = 40.0  # grey levels
BLUR_RADIUS = 2.0  # pixels of a 64x64 image
TINT = (1.0, 0.72, 0.38)  # RGB gains: a sepia cast
CONTRAST = 0.35  # pixel = mean + CONTRAST * (pixel - mean)
PIXELATE = 4  # block side in pixels
DARK_GAMMA = 2.2  # pixel = 255 * (pixel / 255) ** gamma: shadows crushed
SALT_PEPPER = 0.06  # share of pixels set to black or white

Shift = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def _invert(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return 255.0 - pixels


def _grain(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return pixels + rng.normal(0.0, GRAIN_SIGMA, pixels.shape)


def _blur(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    image = Image.fromarray(pixels.astype(np.uint8))
    return np.asarray(image.filter(ImageFilter.GaussianBlur(BLUR_RADIUS)), dtype=np.float32)


def _tint(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return pixels * np.asarray(TINT, np.float32)


def _low_contrast(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return pixels.mean() + CONTRAST * (pixels - pixels.mean())


def _pixelate(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    image = Image.fromarray(pixels.astype(np.uint8))
    small = image.resize((max(1, image.width // PIXELATE), max(1, image.height // PIXELATE)), Image.Resampling.BOX)
    return np.asarray(small.resize(image.size, Image.Resampling.NEAREST), dtype=np.float32)


def _dark(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return 255.0 * (pixels / 255.0) ** DARK_GAMMA


def _salt_pepper(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    hit = rng.random(pixels.shape[:2]) < SALT_PEPPER  # (H, W): whole pixels turn black or white
    noisy = pixels.copy()
    noisy[hit] = np.where(rng.random(int(hit.sum())) < 0.5, 0.0, 255.0)[:, None]
    return noisy


DOMAINS: dict[str, Shift] = {"invert": _invert, "grain": _grain, "blur": _blur, "tint": _tint,
                             "low_contrast": _low_contrast,
                             # Three more, so that a study can have 8 domain clients (docs/STUDY.md).
                             "pixelate": _pixelate, "dark": _dark, "salt_pepper": _salt_pepper}
FIVE_DOMAINS: tuple[str, ...] = ("invert", "grain", "blur", "tint", "low_contrast")  # the default set (T1)


def shift_image(image: Image.Image, domain: str, rng: np.random.Generator) -> np.ndarray:
    """Apply one domain shift.

    Args:
        image: an RGB (or convertible) image.
        domain: a key of `DOMAINS`.
        rng: noise source (only "grain" draws from it).

    Returns:
        uint8 (H, W, 3).
    """
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)  # (H, W, 3)
    return np.clip(DOMAINS[domain](pixels, rng), 0, 255).round().astype(np.uint8)


def build_easy_vqa_domains(domains: Sequence[str] | None = None, per_domain: int | None = 200,
                           test_fraction: float = 0.2, seed: int = 0, *,
                           on_bad_row: Literal["fail", "skip"] = "fail", report: BadRows | None = None) -> Dataset:
    """Build one easy-vqa client per domain shift.

    Args:
        domains: keys of `DOMAINS` (default all five, in that order).
        per_domain: rows per domain (train + test, split as `test_fraction`); None = all of easy-vqa spread
            over the domains.
        test_fraction: share of each domain's rows taken from easy-vqa's test split.
        seed: seeds the subsets, which rows get which domain, and the grain noise.
        on_bad_row: passed to the easy-vqa loader and `make_vqa_dataset`.
        report: skipped rows are counted here, per reason.

    Returns:
        Dataset with `FEATURES`; modality = client = the domain name, source "easy-vqa".

    Raises:
        DataError: an unknown domain.
    """
    names = list(domains) if domains is not None else list(FIVE_DOMAINS)
    unknown = [name for name in names if name not in DOMAINS]
    if unknown or not names:
        raise DataError(f"easy_vqa_domains: unknown domain(s) {unknown}; known: {', '.join(DOMAINS)}")
    n_train = None if per_domain is None else len(names) * math.ceil(per_domain * (1 - test_fraction))
    n_test = None if per_domain is None else len(names) * math.ceil(per_domain * test_fraction)
    parts = []
    for split, limit in (("train", n_train), ("test", n_test)):
        rows = load_easy_vqa(split, limit=limit, seed=seed, on_bad_row=on_bad_row, report=report)
        parts.append(_shifted(rows, names, split, seed, on_bad_row, report))
    return concatenate_datasets(parts)


def _shifted(rows: Dataset, names: list[str], split: str, seed: int, on_bad_row: Literal["fail", "skip"],
             report: BadRows | None) -> Dataset:
    """Deal `rows` out evenly over the domains (seeded) and shift each row's image."""
    rng = np.random.default_rng([seed, zlib.crc32(split.encode())])
    assignment = np.empty(len(rows), dtype=np.int64)
    assignment[rng.permutation(len(rows))] = np.arange(len(rows)) % len(names)  # (N,) domain index per row
    domain_of = [names[index] for index in assignment]
    images = [shift_image(image, domain, np.random.default_rng([seed, zlib.crc32(split.encode()), row]))
              for row, (image, domain) in enumerate(zip(rows["image"], domain_of))]
    columns = {name: column_values(rows, name) for name in ("question", "answer", "question_type", "label", "split")}
    columns.update(image=images, modality=domain_of, client=domain_of, source=[SOURCE] * len(rows))
    dataset, _ = make_vqa_dataset(columns, origin=f"easy-vqa {split} (domain shifts)", on_bad_row=on_bad_row,
                                  answer_set=easy_vqa_answers(), report=report)
    return dataset
