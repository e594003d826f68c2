"""Easy-vqa scenes on coloured, textured backgrounds: generic image-statistics questions for pretraining.

Easy-vqa draws one solid shape on a near-white background, so a model pretrained on it alone learns the
shape's colour and outline but not the global hue, brightness or texture of an image, which is what
tells a pathology slide from an OCT scan. A real VLM knows those from web-scale pretraining; this
module gives the tiny foundation checkpoints the same kind of knowledge, offline: it repaints the
background of a seeded fraction of easy-vqa images with a colour (one of `BACKGROUND_COLORS`, with
brightness jitter) and smooth or grainy noise, and asks about it ("what color is the background?",
"is the background grainy?") for a fraction of those. The shape and its own question stay as they are.
No medical data or medical word is involved.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

# Colour names and RGB centres; names a tokenizer must know are listed by `background_words`.
BACKGROUND_COLORS: dict[str, tuple[int, int, int]] = {
    "black": (20, 20, 20), "blue": (40, 60, 200), "brown": (120, 70, 30), "gray": (128, 128, 128),
    "green": (40, 160, 50), "orange": (235, 140, 40), "pink": (240, 130, 190), "purple": (130, 50, 160),
    "red": (200, 30, 30), "teal": (30, 140, 140), "white": (240, 240, 240), "yellow": (230, 210, 40),
}
COLOR_QUESTIONS: tuple[str, ...] = ("what color is the background?", "which color is the background?")
GRAIN_QUESTIONS: tuple[str, ...] = ("is the background grainy?", "is the background noisy?")
YES, NO = "yes", "no"
SMOOTH_SIGMA, GRAINY_SIGMA = 4.0, 45.0
BACKGROUND_TOLERANCE = 24  # max per-channel distance from the corner pixel that still counts as background


def background_answers() -> list[str]:
    """Every answer a background question can have (colour names, yes, no), sorted."""
    return sorted({*BACKGROUND_COLORS, YES, NO})


def background_words() -> list[str]:
    """Every question and answer text this module can produce (for the tokenizer vocabulary)."""
    return [*COLOR_QUESTIONS, *GRAIN_QUESTIONS, *background_answers()]


def repaint_background(image: Image.Image, color: tuple[int, int, int], sigma: float,
                       rng: np.random.Generator) -> Image.Image:
    """Replace the pixels that match the corner colour with `color` plus Gaussian noise of `sigma`.

    Args:
        image: an easy-vqa image (RGB, one shape on a flat background).
        color: RGB centre of the new background.
        sigma: per-pixel noise standard deviation (grey levels).
        rng: noise and brightness jitter source.

    Returns:
        A new RGB image; the shape's pixels are untouched.
    """
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)  # (H, W, 3)
    corner = pixels[0, 0]
    background = (np.abs(pixels - corner) <= BACKGROUND_TOLERANCE).all(axis=-1)  # (H, W)
    brightness = rng.uniform(0.8, 1.15)
    fill = np.asarray(color, np.float32) * brightness + rng.normal(0.0, sigma, pixels.shape)
    pixels[background] = fill[background]
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def add_background_scenes(images: Sequence[Image.Image], questions: Sequence[str], answers: Sequence[str], *,
                          seed: int, repaint_fraction: float = 0.6,
                          ask_fraction: float = 0.5) -> tuple[list[Image.Image], list[str], list[str]]:
    """Repaint a seeded fraction of backgrounds, and ask about the background for a fraction of those.

    Args:
        images, questions, answers: easy-vqa rows (same length).
        seed: seeds which rows change, their colour, noise and question.
        repaint_fraction: share of rows whose background is repainted.
        ask_fraction: share of repainted rows whose question becomes a background question.

    Returns:
        New (images, questions, answers) lists of the same length and order.
    """
    if not len(images) == len(questions) == len(answers):
        raise ValueError(f"got {len(images)} images, {len(questions)} questions and {len(answers)} answers")
    rng = np.random.default_rng(seed)
    names = sorted(BACKGROUND_COLORS)
    out_images, out_questions, out_answers = list(images), list(questions), list(answers)
    for row in np.flatnonzero(rng.random(len(images)) < repaint_fraction):
        name = names[rng.integers(len(names))]
        grainy = bool(rng.random() < 0.5)
        out_images[row] = repaint_background(images[row], BACKGROUND_COLORS[name],
                                             GRAINY_SIGMA if grainy else SMOOTH_SIGMA, rng)
        if rng.random() < ask_fraction:
            if rng.random() < 0.5:
                out_questions[row], out_answers[row] = COLOR_QUESTIONS[rng.integers(len(COLOR_QUESTIONS))], name
            else:
                out_questions[row] = GRAIN_QUESTIONS[rng.integers(len(GRAIN_QUESTIONS))]
                out_answers[row] = YES if grainy else NO
    return out_images, out_questions, out_answers
