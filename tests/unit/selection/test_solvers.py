"""Every solver: seeded determinism, feasible and mutually non-dominated fronts; flow and exact = brute force."""

import itertools

import numpy as np
import pytest

from f3ocus.selection.archive import Archive, SolverSettings, non_dominated_unique
from f3ocus.selection.objectives import evaluate, square_sum, variance_from_squares
from f3ocus.selection.problem import SelectionProblem
from f3ocus.selection.solvers import SOLVERS, ExactSolver, build_solver, solve_weighted
from f3ocus.selection.synthetic import lntk_like_problem

SETTINGS = SolverSettings(pop_size=20, max_evals=600, archive_size=30)
HEURISTICS = ("nsga2", "abc", "aco", "sa", "mopso")


def _plain(name):
    """The heuristic alone: no supported-point seeding, no archive local search."""
    return type(build_solver(name))(seeding=False, local_search=0.0)


def _problem(seed=0, N=4, L=7):
    rng = np.random.default_rng(seed)
    return SelectionProblem(rng.dirichlet(np.ones(L), N), rng.integers(1, 4, N))


def _enumerate(problem):
    """All feasible masks (K, N·L) of a tiny problem."""
    L = problem.num_units
    rows = [[np.isin(np.arange(L), c) for c in itertools.combinations(range(L), b)] for b in problem.budgets]
    return np.array([np.concatenate(choice) for choice in itertools.product(*rows)])


@pytest.mark.parametrize("name, plain", [(name, False) for name in sorted(SOLVERS)] + [(name, True) for name in HEURISTICS])
def test_solver_is_seeded_feasible_and_non_dominated(name, plain):
    problem = _problem()
    first = (_plain(name) if plain else build_solver(name)).solve(problem, 11, SETTINGS)
    again = (_plain(name) if plain else build_solver(name)).solve(problem, np.random.default_rng(11), SETTINGS)
    assert np.array_equal(first.X, again.X) and np.array_equal(first.F, again.F)
    assert (first.masks(problem).sum(axis=2) == problem.budgets).all()
    np.testing.assert_allclose(first.F, evaluate(first.X, problem))
    assert len(non_dominated_unique(first.F)) == len(first.F)
    assert first.n_evals <= SETTINGS.max_evals


@pytest.mark.parametrize("name, plain", [(name, False) for name in sorted(set(SOLVERS) - {"flow"})]
                         + [(name, True) for name in HEURISTICS])
def test_solver_finds_the_exact_front_of_a_tiny_problem(name, plain):  # exact included
    problem = _problem(seed=2, N=3, L=5)
    X = _enumerate(problem)
    exact = evaluate(X, problem)[non_dominated_unique(evaluate(X, problem))]
    solver = _plain(name) if plain else build_solver(name)
    found = solver.solve(problem, 0, SolverSettings(pop_size=20, max_evals=2000))
    assert {tuple(np.round(f, 9)) for f in found.F} == {tuple(np.round(f, 9)) for f in exact}


@pytest.mark.parametrize("weight", [0.0, 0.05, 0.3, 0.5, 0.8, 0.97, 1.0])
def test_flow_equals_brute_force_for_every_weight(weight):
    problem = SelectionProblem([[0.1, 0.4, 0.3, 0.2], [0.5, 0.2, 0.2, 0.1]], [2, 3])
    F = evaluate(_enumerate(problem), problem)  # 6 * 4 = 24 masks
    best = np.min(weight * F[:, 0] + (1 - weight) * F[:, 1])
    f = evaluate(solve_weighted(problem, weight), problem)[0]
    assert weight * f[0] + (1 - weight) * f[1] == pytest.approx(best, abs=1e-12)


def test_flow_front_is_the_supported_part_of_the_exact_front():
    problem = _problem(seed=5, N=3, L=6)
    F = evaluate(_enumerate(problem), problem)
    exact = {tuple(np.round(f, 9)) for f in F[non_dominated_unique(F)]}
    flow = build_solver("flow").solve(problem, None, SETTINGS)
    assert {tuple(np.round(f, 9)) for f in flow.F} <= exact
    assert flow.F[0, 0] == pytest.approx(F[:, 0].min()) and flow.F[:, 1].min() == pytest.approx(F[:, 1].min())


def test_archive_keeps_non_dominated_unique_points_and_its_extremes():
    archive = Archive(capacity=3)
    X = np.eye(6, dtype=bool)
    F = np.array([[0, 5], [1, 4], [1, 4], [2, 2], [3, 1], [3, 3]], dtype=float)  # row 2 duplicate, row 5 dominated
    archive.add(X, F)
    assert archive.F.tolist() == [[0, 5], [2, 2], [3, 1]]  # (1, 4) is the most crowded of the four
    archive.add(np.ones((1, 6), bool), np.array([[-1.0, 0.0]]))  # dominates everything
    assert archive.F.tolist() == [[-1, 0]] and archive.X.all()


def test_unknown_solver_and_bad_settings_are_errors():
    with pytest.raises(ValueError, match="nsga2"):
        build_solver("tabu")
    with pytest.raises(ValueError, match="max_evals"):
        SolverSettings(pop_size=50, max_evals=10)


@pytest.mark.parametrize("name", sorted(set(SOLVERS) - {"exact"}))  # exact: ~3 s CPU here, checked on tiny ones
def test_no_front_point_is_dominated_at_24_units(name):
    # 24 is not a power of two: float variances of equal Σ n_l² used to differ in the last bit, and fronts kept
    # points with the same histogram spread but less importance. Compare on the integer Σ n_l² here.
    problem = lntk_like_problem(np.random.default_rng(3), 8, 24, correlated=True)  # B = 25
    front = build_solver(name).solve(problem, 0, SolverSettings(pop_size=40, max_evals=2000))
    squares, gain = square_sum(front.X, 24), -front.F[:, 0]  # (K,) int, (K,)
    np.testing.assert_array_equal(front.F[:, 1], variance_from_squares(squares, problem.budgets.sum(), 24))
    dominated = [(a, b) for a in range(len(gain)) for b in range(len(gain))
                 if squares[b] <= squares[a] and gain[b] >= gain[a] and (squares[b], gain[b]) != (squares[a], gain[a])]
    assert dominated == [] and len(set(squares.tolist())) == len(squares)


# 3 clients x 3 units, budgets 1, 2, 2 (B = 5), dyadic scores (sums exact in float). By hand:
#   max importance: client 0 {0}, 1 {0, 1}, 2 {0, 1}: 0.75 + 1.75 + 1.25 = 3.75, n = (3, 2, 0), Σn² = 13;
#   Σn² = 11, n = (3, 1, 1): all on unit 0 (2.5) + client 1 / 2 on units 1 / 2 (0.75 either way) = 3.25;
#   Σn² = 9 (the flattest, n a permutation of (2, 2, 1)): client 0 {0}, 1 {0, 1}, 2 {1, 2}: 3.0.
# Variance = (3 Σn² − 25) / 9. The middle point lies below the segment of the other two (3.25 < 3.375):
# unsupported, so `flow` cannot see it and `exact` must.
HAND = SelectionProblem([[0.75, 0.0, 0.0], [1.0, 0.75, 0.25], [0.75, 0.5, 0.0]], [1, 2, 2])
HAND_FRONT = [(3.75, 14 / 9), (3.25, 8 / 9), (3.0, 2 / 9)]


def test_exact_front_of_the_hand_example_has_its_unsupported_point():
    exact = build_solver("exact").solve(HAND)
    flow = build_solver("flow").solve(HAND)
    np.testing.assert_allclose(np.column_stack([-exact.F[:, 0], exact.F[:, 1]]), HAND_FRONT, atol=1e-12)
    np.testing.assert_allclose(np.column_stack([-flow.F[:, 0], flow.F[:, 1]]), [HAND_FRONT[0], HAND_FRONT[2]],
                               atol=1e-12)
    assert (exact.masks(HAND).sum(axis=2) == HAND.budgets).all()


def _brute_force_front(problem):
    X = _enumerate(problem)
    F = evaluate(X, problem)
    keep = non_dominated_unique(F)
    return sorted(zip(np.round(-F[keep, 0], 9), square_sum(X[keep], problem.num_units)))


@pytest.mark.parametrize("seed", range(6))
def test_exact_and_flow_extremes_equal_brute_force(seed):
    # Random tiny instances with quarter scores (exact ties) and, for even seeds, an all-zero client.
    rng = np.random.default_rng(seed)
    N, L = 3, 5
    scores = np.round(rng.dirichlet(np.ones(L) * 0.5, N) * 4) / 4
    scores[0] *= seed % 2
    problem = SelectionProblem(scores, rng.integers(1, L, N))
    expected = _brute_force_front(problem)
    exact = build_solver("exact").solve(problem)
    assert sorted(zip(np.round(-exact.F[:, 0], 9), square_sum(exact.X, L))) == expected
    flow = build_solver("flow").solve(problem)  # lexicographic extremes: max importance, then flattest; and reverse
    flow_points = sorted(zip(np.round(-flow.F[:, 0], 9), square_sum(flow.X, L)))
    assert flow_points[0] == expected[0] and flow_points[-1] == expected[-1] and set(flow_points) <= set(expected)


def test_exact_solver_time_limit_raises():
    problem = lntk_like_problem(np.random.default_rng(0), 10, 32, correlated=True)
    with pytest.raises(TimeoutError, match="time limit"):
        ExactSolver(time_limit=0.0).solve(problem)
