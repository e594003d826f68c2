"""Baseline selectors: budgets respected exactly, hand-checked choices, seeded determinism."""

import numpy as np
import pytest

from f3ocus.config.schema import SelectionConfig
from f3ocus.selection import SELECTORS, build_selector, check_mask, top_k_mask
from f3ocus.utils.seeding import SELECT, numpy_rng

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


def _rounds(selector, rounds: int = 5, num_units: int = 6) -> list[np.ndarray]:
    """Masks of `rounds` rounds, each with the coordinator's per-round generator (seed 0, round r, SELECT)."""
    return [selector.select(None, BUDGETS, num_units, numpy_rng(0, round_idx, SELECT)).masks
            for round_idx in range(1, rounds + 1)]


def test_fed_dropout_draws_exact_budgets_afresh_every_round():
    masks = _rounds(build_selector("fed_dropout"))

    for mask in masks:
        check_mask(mask, BUDGETS, 6)
    assert len({mask.tobytes() for mask in masks}) > 1  # new units each round
    again = build_selector("fed_dropout").select(None, BUDGETS, 6, numpy_rng(0, 1, SELECT)).masks
    assert np.array_equal(again, masks[0])  # a function of the round's generator only


def test_random_keeps_one_subset_for_the_whole_run():
    selector = build_selector("random")

    masks = _rounds(selector)

    check_mask(masks[0], BUDGETS, 6)
    assert all(np.array_equal(mask, masks[0]) for mask in masks)
    fresh_round_1 = build_selector("random").select(None, BUDGETS, 6, numpy_rng(0, 1, SELECT)).masks
    assert np.array_equal(fresh_round_1, masks[0])  # drawn from the first call's generator
    masks[0][:] = False  # a caller mutating its result does not change the kept subset
    assert np.array_equal(selector.select(None, BUDGETS, 6, np.random.default_rng(9)).masks, fresh_round_1)


def test_seeded_random_subset_survives_a_new_instance_as_after_resume():
    run = _rounds(build_selector("random", seed=11))
    resumed = build_selector(SelectionConfig(method="random"), seed=11)  # built anew, first call in round 4

    after_resume = resumed.select(None, BUDGETS, 6, numpy_rng(11, 4, SELECT)).masks

    assert all(np.array_equal(mask, run[0]) for mask in run)
    assert np.array_equal(after_resume, run[0])
    others = {build_selector("random", seed=seed).select(None, BUDGETS, 6, np.random.default_rng(0)).masks.tobytes()
              for seed in range(5)}
    assert len(others) > 1  # the subset depends on the run's seed
    assert build_selector("first_k", seed=11).select(None, BUDGETS, 6, np.random.default_rng(0)).masks.sum() == 6


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


def test_every_selector_declares_its_abilities_and_builds_from_a_config_or_its_defaults():
    # The coordinator reads these plainly (no getattr default): a selector that forgot one fails here.
    for name, cls in SELECTORS.items():
        assert isinstance(cls.needs_scores, bool) and isinstance(cls.respects_budgets, bool), name
        assert type(cls.from_config(None)) is cls and type(cls.from_config(SelectionConfig(method=name), 3)) is cls
    assert [name for name, cls in SELECTORS.items() if not cls.respects_budgets] == ["full"]
    assert build_selector("random", seed=5).seed == 5 and build_selector("random").seed is None
