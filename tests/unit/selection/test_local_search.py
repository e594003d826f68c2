"""Seeding and the archive's Pareto local search shared by the heuristics (hand example and brute force)."""

import numpy as np

from f3ocus.selection.archive import Archive, SolverSettings
from f3ocus.selection.solvers.local_search import _best_swap_per_level, pareto_local_search, seeded_sample, seeded_start
from f3ocus.selection.objectives import evaluate, square_sum
from f3ocus.selection.problem import SelectionProblem
from f3ocus.selection.solvers.min_cost_flow import supported_front

# The hand example of test_solvers.py: front (3.75, Σn² 13), (3.25, 11: unsupported), (3.0, 9).
HAND = SelectionProblem([[0.75, 0.0, 0.0], [1.0, 0.75, 0.25], [0.75, 0.5, 0.0]], [1, 2, 2])


def test_local_search_from_the_supported_points_finds_the_unsupported_one():
    # Prepare: the archive holds only the two supported points.
    supported, _ = supported_front(HAND)
    archive = Archive(10)
    archive.add(supported, evaluate(supported, HAND))
    assert sorted(square_sum(archive.X, 3).tolist()) == [9, 13]
    # Execute
    spent = pareto_local_search(archive, HAND, max_evals=50)
    # Assert: from (3.75, 13) client 2 moving unit 1 -> 2 gives n = (3, 1, 1), importance 3.25, Σn² 11.
    assert sorted(zip(square_sum(archive.X, 3).tolist(), np.round(-archive.F[:, 0], 12).tolist())) == [
        (9, 3.0), (11, 3.25), (13, 3.75)]
    assert 1 <= spent <= 50


def test_local_search_respects_its_budget():
    rng = np.random.default_rng(0)
    problem = SelectionProblem(rng.dirichlet(np.ones(12), 6), rng.integers(2, 5, 6))
    archive = Archive(50)
    X, _ = seeded_sample(10, problem, rng, max_solves=0)
    archive.add(X, evaluate(X, problem))
    assert pareto_local_search(archive, problem, max_evals=3) <= 3
    assert pareto_local_search(archive, problem, max_evals=0) == 0


def test_best_swap_per_level_matches_brute_force():
    rng = np.random.default_rng(1)
    problem = SelectionProblem(rng.dirichlet(np.ones(6), 4), [1, 2, 3, 2])
    masks = seeded_sample(5, problem, rng, max_solves=0)[0].reshape(5, 4, 6)
    gain, square, who, a, b = _best_swap_per_level(masks, problem)
    expected = {}
    for member, mask in enumerate(masks):
        counts = mask.sum(axis=0)
        for client in range(4):
            for unit_a in np.flatnonzero(mask[client]):
                for unit_b in np.flatnonzero(~mask[client]):
                    key = (member, 2 * (counts[unit_b] - counts[unit_a]) + 2)
                    value = problem.scores[client, unit_b] - problem.scores[client, unit_a]
                    expected[key] = max(expected.get(key, -np.inf), value)
    assert {(int(m), int(q)): g for m, q, g in zip(who[:, 0], square, gain)} == expected
    # each reported move is real: applying it changes importance and Σn² by the reported amounts
    for g, q, (member, client), unit_a, unit_b in zip(gain, square, who, a, b):
        moved = masks[member].copy()
        assert moved[client, unit_a] and not moved[client, unit_b]
        moved[client, unit_a], moved[client, unit_b] = False, True
        before, after = evaluate(masks[member].reshape(1, -1), problem)[0], evaluate(moved.reshape(1, -1), problem)[0]
        assert np.isclose(before[0] - after[0], g)
        assert square_sum(moved.reshape(1, -1), 6)[0] - square_sum(masks[member].reshape(1, -1), 6)[0] == q


def test_seeded_start_splits_the_budget():
    settings = SolverSettings(pop_size=10, max_evals=100)
    X, spent, own = seeded_start(HAND, settings, np.random.default_rng(0), seeding=True, local_search=0.2)
    assert X.shape == (10, 9) and (X.reshape(10, 3, 3).sum(axis=2) == HAND.budgets).all()
    assert 2 <= spent <= 10 and own % 10 == 0 and 10 <= own <= 100 - spent - 20
    # the supported points come first, then the top-b_i mask
    supported, _ = supported_front(HAND)
    assert np.array_equal(X[:len(supported)], supported)
    _, none_spent, own_plain = seeded_start(HAND, settings, np.random.default_rng(0), seeding=False, local_search=0.0)
    assert none_spent == 0 and own_plain == 100
