"""Background scenes of the foundation pretraining: only background pixels change, seeded, closed answers."""

import numpy as np
from PIL import Image

from f3ocus.data.backgrounds import (BACKGROUND_COLORS, COLOR_QUESTIONS, GRAIN_QUESTIONS, add_background_scenes,
                                     background_answers, background_words, repaint_background)
from f3ocus.data.vocabulary import builtin_words, split_words


def _shape_image() -> Image.Image:
    """8x8 near-white background with a 2x2 red square at rows/cols 3-4."""
    pixels = np.full((8, 8, 3), (245, 240, 250), np.uint8)
    pixels[3:5, 3:5] = (200, 20, 20)
    return Image.fromarray(pixels)


def test_repaint_changes_background_only():
    out = np.asarray(repaint_background(_shape_image(), BACKGROUND_COLORS["blue"], 0.0, np.random.default_rng(0)))
    assert (out[3:5, 3:5] == (200, 20, 20)).all()  # the shape is untouched
    background = np.ones((8, 8), bool)
    background[3:5, 3:5] = False
    colors = out[background].astype(float)
    # Flat blue scaled by one brightness factor in [0.8, 1.15]: blue channel dominates, ratios preserved.
    ratio = colors[:, 2] / 200.0
    assert np.allclose(ratio, ratio[0]) and 0.8 <= ratio[0] <= 1.15
    assert np.allclose(colors[:, 0], 40 * ratio[0], atol=1)


def test_grainy_background_is_noisier_than_smooth():
    rng = np.random.default_rng(0)
    image = Image.fromarray(np.full((32, 32, 3), 245, np.uint8))
    smooth = np.asarray(repaint_background(image, BACKGROUND_COLORS["gray"], 4.0, rng)).astype(float)
    grainy = np.asarray(repaint_background(image, BACKGROUND_COLORS["gray"], 45.0, rng)).astype(float)
    assert grainy.std() > 5 * smooth.std()


def test_scenes_are_seeded_and_answers_match_questions():
    images = [_shape_image() for _ in range(200)]
    questions = ["what color is the shape?"] * 200
    answers = ["red"] * 200
    first = add_background_scenes(images, questions, answers, seed=3)
    second = add_background_scenes(images, questions, answers, seed=3)
    assert first[1] == second[1] and first[2] == second[2]
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(first[0], second[0]))
    changed = [i for i, (q, a) in enumerate(zip(first[1], first[2])) if (q, a) != ("what color is the shape?", "red")]
    assert 20 < len(changed) < 100  # 0.6 repainted x 0.5 asked = 30 % expected
    for i in changed:
        if first[1][i] in COLOR_QUESTIONS:
            assert first[2][i] in BACKGROUND_COLORS
        else:
            assert first[1][i] in GRAIN_QUESTIONS and first[2][i] in ("yes", "no")
        assert first[2][i] in background_answers()


def test_background_words_are_in_the_builtin_vocabulary():
    vocabulary = set(builtin_words())
    assert {word for text in background_words() for word in split_words(text)} <= vocabulary
