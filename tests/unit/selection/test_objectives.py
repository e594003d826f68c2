"""SelectionProblem validation and the two objectives on hand-computed examples (docs/METHOD.md §3)."""

import numpy as np
import pytest

from f3ocus.selection.objectives import MaskProblem, evaluate, histogram_variance, importance, to_objectives
from f3ocus.selection.problem import SelectionProblem

SCORES = np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
MASKS = np.array([[1, 1, 0, 0, 0, 1],    # client 0 {0, 1}, client 1 {2}: histogram (1, 1, 1)
                  [1, 0, 0, 1, 0, 0]], dtype=bool)  # client 0 {0}, client 1 {0}: histogram (2, 0, 0)


def test_objectives_match_hand_computed_values():
    # Prepare: importance row 0 = 0.5 + 0.3 + 0.8 = 1.6; row 1 = 0.5 + 0.1 = 0.6.
    # Variance row 0: n = (1,1,1), mean 1 -> 0. Row 1: n = (2,0,0), mean 2/3 -> ((4/3)² + 2(2/3)²)/3 = 8/9.
    problem = SelectionProblem(SCORES, [2, 1])
    # Execute
    imp, var, F = importance(MASKS, SCORES), histogram_variance(MASKS, 3), evaluate(MASKS, problem)
    # Assert
    np.testing.assert_allclose(imp, [1.6, 0.6])
    np.testing.assert_allclose(var, [0.0, 8 / 9])
    np.testing.assert_allclose(F, [[-1.6, 0.0], [-0.6, 8 / 9]])
    np.testing.assert_allclose(to_objectives(F), [[1.6, 0.0], [0.6, 8 / 9]])


def test_variance_is_population_variance_of_histogram():
    # 3 clients x 4 units, histogram (3, 1, 0, 2): mean 1.5, variance (2.25 + 0.25 + 2.25 + 0.25) / 4 = 1.25.
    X = np.array([[1, 1, 0, 0, 1, 0, 0, 1, 1, 0, 0, 1]], dtype=bool)
    np.testing.assert_allclose(histogram_variance(X, 4), [1.25])


def test_pymoo_adapter_evaluates_the_same_objectives():
    problem = SelectionProblem(SCORES, [2, 1])
    out = {}
    MaskProblem(problem)._evaluate(MASKS, out)
    np.testing.assert_allclose(out["F"], evaluate(MASKS, problem))
    assert MaskProblem(problem).n_var == 6 and MaskProblem(problem).n_obj == 2


@pytest.mark.parametrize("scores, budgets, message", [
    ([[0.1, 0.2], [0.3]], [1, 1], "rectangular"),
    ([[0.1, float("nan")], [0.3, 0.1]], [1, 1], "finite"),
    ([[0.1, -0.2], [0.3, 0.1]], [1, 1], "non-negative"),
    ([[0.1, 0.2], [0.3, 0.1]], [1, 3], r"\[1, L=2\]"),
    ([[0.1, 0.2], [0.3, 0.1]], [0, 1], r"\[1, L=2\]"),
    ([[0.1, 0.2], [0.3, 0.1]], [1], "2 clients"),
    ([[0.1, 0.2], [0.3, 0.1]], [1.5, 1], "integers"),
    ([0.1, 0.2], [1], "N x L"),
])
def test_problem_rejects_bad_input_with_a_clear_message(scores, budgets, message):
    with pytest.raises(ValueError, match=message):
        SelectionProblem(scores, budgets)


def test_problem_is_read_only_and_does_not_alias_input():
    scores = np.array([[0.2, 0.8]])
    problem = SelectionProblem(scores, [1])
    scores[0, 0] = 5.0
    assert problem.scores[0, 0] == 0.2 and not problem.scores.flags.writeable
    assert (problem.num_clients, problem.num_units, problem.n_var) == (1, 2, 2)
