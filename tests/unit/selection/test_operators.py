"""Budget-preserving operators: repair on adversarial masks, sampling, crossover and swap mutation."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from f3ocus.selection.operators import repair, sample, set_crossover, swap_mutation
from f3ocus.selection.problem import SelectionProblem

SCORES = np.array([[0.4, 0.3, 0.2, 0.1], [0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25]])
BUDGETS = np.array([1, 2, 3])
PROBLEM = SelectionProblem(SCORES, BUDGETS)


def _counts(X):
    return X.reshape(len(X), 3, 4).sum(axis=2)


def test_repair_of_all_ones_keeps_the_highest_scored_units():
    fixed = repair(np.ones((1, 12), dtype=bool), BUDGETS, SCORES, np.random.default_rng(0))
    blocks = fixed.reshape(3, 4)
    assert blocks[0].tolist() == [True, False, False, False]
    assert blocks[1].tolist() == [False, False, True, True]
    assert blocks[2].sum() == 3  # all tied: random choice of 3


def test_repair_of_all_zeros_adds_the_highest_scored_units():
    fixed = repair(np.zeros((1, 12), dtype=bool), BUDGETS, SCORES, np.random.default_rng(0)).reshape(3, 4)
    assert fixed[0].tolist() == [True, False, False, False] and fixed[1].tolist() == [False, False, True, True]


def test_repair_changes_only_the_row_over_budget_and_drops_its_lowest_score():
    X = np.array([[0, 1, 0, 0, 1, 1, 0, 0, 1, 1, 1, 0]], dtype=bool)  # feasible
    X_over = X.copy()
    X_over[0, 6] = True  # client 1 now {0, 1, 2}: drop unit 0 (score 0.1)
    fixed = repair(X_over, BUDGETS, SCORES, np.random.default_rng(0))
    assert np.array_equal(repair(X, BUDGETS, SCORES, np.random.default_rng(0)), X)
    assert fixed.reshape(3, 4)[1].tolist() == [False, True, True, False]
    assert np.array_equal(fixed.reshape(3, 4)[[0, 2]], X.reshape(3, 4)[[0, 2]])


def test_repair_breaks_ties_with_the_rng():
    tied = np.ones((1, 4)) / 4
    picks = {tuple(repair(np.zeros((1, 4), bool), np.array([1]), tied, np.random.default_rng(s))[0]) for s in range(20)}
    assert len(picks) > 1


@settings(max_examples=60, deadline=None)
@given(st.lists(st.booleans(), min_size=12 * 5, max_size=12 * 5), st.integers(0, 2**32 - 1))
def test_repair_always_meets_budgets_exactly(bits, seed):
    X = np.array(bits, dtype=bool).reshape(5, 12)
    fixed = repair(X, BUDGETS, SCORES, np.random.default_rng(seed))
    assert (_counts(fixed) == BUDGETS).all()
    assert not np.shares_memory(fixed, X)


def test_sample_crossover_and_mutation_keep_budgets_and_are_seeded():
    rng = np.random.default_rng(3)
    A, B = sample(20, PROBLEM, rng), sample(20, PROBLEM, rng)
    assert (_counts(A) == BUDGETS).all() and A[0].reshape(3, 4)[1].tolist() == [False, False, True, True]
    child = set_crossover(A, B, PROBLEM, rng)
    assert (_counts(child) == BUDGETS).all()
    assert not (child & ~(A | B)).any()  # children only use their parents' units
    mutated = swap_mutation(A, PROBLEM, 0.0, rng, force=True)
    assert (_counts(mutated) == BUDGETS).all()
    assert ((mutated != A).sum(axis=1) == 2).all()  # exactly one swap per row (clients 0-2 can all swap)
    assert np.array_equal(sample(5, PROBLEM, np.random.default_rng(1)), sample(5, PROBLEM, np.random.default_rng(1)))
