"""Shared fixtures of the model tests: seeded synthetic images/questions and tiny scratch models."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from PIL import Image

FAMILIES = ("llava", "vilt")
ANSWERS = ("red", "green", "blue", "yes", "no")
COLORS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220)}


def synthetic_examples(n: int, seed: int = 0) -> tuple[list[Image.Image], list[str], list[str]]:
    """n (image, question, answer) triples: a coloured square on noise; colour and yes/no questions."""
    rng = np.random.default_rng(seed)
    images, questions, answers = [], [], []
    names = list(COLORS)
    for index in range(n):
        color = names[index % len(names)]
        pixels = rng.integers(0, 60, size=(64, 64, 3), dtype=np.uint8)
        pixels[16:48, 16:48] = COLORS[color]
        images.append(Image.fromarray(pixels))
        if index % 2 == 0:
            questions.append("what color is the shape?")
            answers.append(color)
        else:
            asked = names[(index // 2) % len(names)]
            questions.append(f"is there a {asked} shape?")
            answers.append("yes" if asked == color else "no")
    return images, questions, answers


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Run each model test on one intra-op thread, restoring the caller's setting afterwards.

    On this 2-core box, when other processes load the CPUs, 2-thread OpenMP regions stall at their
    barriers: a tiny ViLT step measured 0.6-10 s on 2 threads vs 0.2 s on 1 thread (load ~6).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(params=FAMILIES)
def family(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def examples() -> tuple[list[Image.Image], list[str], list[str]]:
    return synthetic_examples(8)
