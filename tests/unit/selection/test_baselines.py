"""Baseline selectors: budgets respected exactly, hand-checked choices, seeded determinism."""

import numpy as np
import pytest

from f3ocus.selection import SELECTORS, build_selector, check_mask, top_k_mask

BUDGETS = np.array([1, 2, 3])


def test_first_and_last_k_pick_the_ends_of_the_unit_order():
    first = build_selector("first_k").select(None, BUDGETS, 5, np.random.default_rng(0)).masks
    last = build_selector("last_k").select(None, BUDGETS, 5, np.random.default_rng(0)).masks
    assert first.astype(int).tolist() == [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0]]
    assert last.astype(int).tolist() == [[0, 0, 0, 0, 1], [0, 0, 0, 1, 1], [0, 0, 1, 1, 1]]


def test_top_k_takes_each_clients_own_best_units_with_stable_ties():
    scores = np.array([[0.1, 0.5, 0.2, 0.2], [0.4, 0.1, 0.4, 0.1], [0.25, 0.25, 0.25, 0.25]])
    mask = build_selector("top_k").select(scores, BUDGETS, 4, np.random.default_rng(0)).masks
    assert mask.astype(int).tolist() == [[0, 1, 0, 0], [1, 0, 1, 0], [1, 1, 1, 0]]


def test_top_k_without_scores_is_an_error():
    with pytest.raises(ValueError, match="score"):
        build_selector("top_k").select(None, BUDGETS, 4, np.random.default_rng(0)).masks


def test_random_is_seeded_and_respects_budgets():
    selector = build_selector("random")
    a = selector.select(None, BUDGETS, 6, np.random.default_rng(7)).masks
    b = selector.select(None, BUDGETS, 6, np.random.default_rng(7)).masks
    c = selector.select(None, BUDGETS, 6, np.random.default_rng(8)).masks
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    check_mask(a, BUDGETS, 6)


def test_full_selects_everything():
    mask = build_selector("full").select(None, BUDGETS, 4, np.random.default_rng(0)).masks
    assert mask.all() and mask.shape == (3, 4)


@pytest.mark.parametrize("name", sorted(set(SELECTORS) - {"full"}))
def test_every_budgeted_selector_is_feasible(name):
    scores = np.random.default_rng(1).random((3, 7))
    mask = build_selector(name).select(scores, BUDGETS, 7, np.random.default_rng(0)).masks
    check_mask(mask, BUDGETS, 7)


def test_check_mask_rejects_wrong_counts_and_shapes():
    with pytest.raises(ValueError, match="budgets"):
        check_mask(np.ones((3, 4), dtype=bool), BUDGETS, 4)
    with pytest.raises(ValueError, match="shape"):
        check_mask(np.ones((2, 4), dtype=bool), BUDGETS, 4)
    assert top_k_mask(np.zeros((1, 3)), np.array([0])).sum() == 0


def test_unknown_selector_names_the_known_ones():
    with pytest.raises(ValueError, match="first_k"):
        build_selector("nope")
