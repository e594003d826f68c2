"""F3ocusSelector and LntkOnlySelector through the registry and the config; the decision rules."""

import numpy as np
import pytest

from f3ocus.config.schema import ConfigError, SelectionConfig
from f3ocus.selection import SELECTORS, build_selector, check_mask
from f3ocus.selection.decide import choose
from f3ocus.selection.f3ocus_selector import F3ocusSelector, revised_ranking
from f3ocus.selection.solvers import SOLVERS

SCORES = np.random.default_rng(4).random((5, 10))
BUDGETS = np.array([2, 3, 1, 4, 2])


@pytest.mark.parametrize("solver", sorted(SOLVERS))
def test_f3ocus_selector_from_config_returns_a_consistent_front(solver):
    config = SelectionConfig(method="f3ocus", solver=solver, pop_size=20, max_evals=400, archive_size=20)
    selector = build_selector(config)
    result = selector.select(SCORES, BUDGETS, 10, np.random.default_rng(0))
    check_mask(result.masks, BUDGETS, 10)
    assert np.array_equal(result.masks, result.front_masks[result.chosen])
    normalised = SCORES / SCORES.sum(axis=1, keepdims=True)
    importance = (result.front_masks * normalised).sum(axis=(1, 2))
    np.testing.assert_allclose(result.front_F[:, 0], importance)  # reported un-negated
    assert (result.front_F[:, 1] >= 0).all() and result.n_evals > 0 and result.seconds > 0
    again = selector.select(SCORES, BUDGETS, 10, np.random.default_rng(0))
    assert np.array_equal(again.masks, result.masks)


def test_build_selector_accepts_a_name_or_a_config():
    assert isinstance(build_selector("f3ocus"), F3ocusSelector)
    assert build_selector(SelectionConfig(method="f3ocus", solver="sa")).solver.name == "sa"
    assert type(build_selector(SelectionConfig(method="first_k"))) is SELECTORS["first_k"]
    assert {"f3ocus", "lntk"} <= set(SELECTORS)


def test_lntk_is_each_clients_own_top_b():
    result = build_selector("lntk").select(SCORES, BUDGETS, 10, np.random.default_rng(0))
    expected = build_selector("top_k").select(SCORES, BUDGETS, 10, np.random.default_rng(0)).masks
    assert np.array_equal(result.masks, expected) and result.front_F is None
    with pytest.raises(ValueError, match="score"):
        build_selector("lntk").select(None, BUDGETS, 10, np.random.default_rng(0))


def test_f3ocus_needs_scores_and_matching_units():
    selector = build_selector("f3ocus")
    with pytest.raises(ValueError, match="score"):
        selector.select(None, BUDGETS, 10, np.random.default_rng(0))
    with pytest.raises(ValueError, match="units"):
        selector.select(SCORES, BUDGETS, 11, np.random.default_rng(0))


def test_revised_ranking_puts_chosen_units_first_by_score():
    mask = np.array([[False, True, False, True]])
    scores = np.array([[0.4, 0.1, 0.3, 0.2]])
    assert revised_ranking(mask, scores).tolist() == [[3, 1, 0, 2]]


def test_decision_rules_on_a_hand_made_front():
    F = np.array([[-3.0, 4.0], [-2.9, 1.0], [-2.0, 0.5], [-1.0, 0.0]])  # (−importance, variance)
    assert choose(F) == 1  # normalised: (0, 1), (.05, .25), (.5, .125), (1, 0): largest bulge is row 1
    assert choose(F, "pseudo_weights", 1.0) == 0 and choose(F, "pseudo_weights", 0.0) == 3
    assert choose(F[:1], "pseudo_weights", 0.3) == 0
    with pytest.raises(ValueError, match="knee"):
        choose(F, "median")


@pytest.mark.parametrize("field, value", [("solver", "tabu"), ("pop_size", 1), ("max_evals", 5),
                                          ("archive_size", 1), ("decision", "median"), ("decision_weight", 1.5)])
def test_selection_config_rejects_bad_f3ocus_fields(field, value):
    with pytest.raises(ConfigError, match=field):
        SelectionConfig(**{field: value})


def test_config_solver_names_match_the_solver_registry():
    for name in SOLVERS:
        SelectionConfig(solver=name)
    assert SelectionConfig().solver in SOLVERS
