"""Selection artifacts: objectives, ranks, payload and figures on hand-computed values (docs/METHOD.md §2-§3)."""

import json

import numpy as np
import pytest

from f3ocus.selection.base import SelectionResult
from f3ocus.tracking.selection_artifacts import (TIE_BREAK, rank_history, render_front, render_rank_heatmap,
                                                 revised_unit_ranks, round_payload, round_summary,
                                                 selection_objectives, unit_ranks)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SCORES = np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])  # rows already sum to 1
MASKS = np.array([[1, 0, 1], [0, 0, 1]], dtype=bool)  # client 0 {u0, u2}, client 1 {u2}


def _assert_png(path):
    data = path.read_bytes()
    assert len(data) > len(PNG_MAGIC) and data[:8] == PNG_MAGIC
    from PIL import Image

    with Image.open(path) as image:
        image.verify()  # raises on a truncated / corrupt file


def test_objectives_of_a_2x3_mask_match_hand_values():
    # Prepare: importance = 0.5 + 0.2 + 0.8 = 1.5. Histogram n = (1, 0, 2), mean 1,
    # population variance ((1-1)² + (0-1)² + (2-1)²) / 3 = 2/3.
    # Execute
    objectives = selection_objectives(MASKS, SCORES)
    # Assert
    assert objectives["importance"] == pytest.approx(1.5)
    assert objectives["variance"] == pytest.approx(2 / 3)


def test_importance_uses_row_normalised_scores_and_is_none_without_scores():
    # Prepare: 10x row 0 and 5x row 1 normalise back to SCORES (METHOD §2), so the importance is unchanged.
    raw = SCORES * np.array([[10.0], [5.0]])
    # Execute
    scaled, unscored = selection_objectives(MASKS, raw), selection_objectives(MASKS, None)
    # Assert
    assert scaled["importance"] == pytest.approx(1.5)
    assert unscored == {"importance": None, "variance": pytest.approx(2 / 3)}


def test_unit_ranks_break_ties_towards_the_lower_unit_index():
    # Prepare: row 0: u1 best, u0 and u2 tie at 0.2 -> u0 ranks before u2. Row 1: u0, u1, u2 tie -> unit order.
    scores = np.array([[0.2, 0.5, 0.2, 0.1], [0.3, 0.3, 0.3, 0.1]])
    # Execute
    ranks = unit_ranks(scores)
    # Assert
    np.testing.assert_array_equal(ranks, [[2, 1, 3, 4], [1, 2, 3, 4]])
    assert "lower unit index" in TIE_BREAK


def test_revised_ranks_put_the_chosen_units_first():
    # Prepare: client 0 chose {u2, u3}: u2 (0.2) then u3 (0.1), then the rest by score: u1 (0.5), u0 (0.2).
    # Client 1 chose {u1}: u1, then u0, u2 (tie, unit order), u3.
    scores = np.array([[0.2, 0.5, 0.2, 0.1], [0.3, 0.3, 0.3, 0.1]])
    masks = np.array([[0, 0, 1, 1], [0, 1, 0, 0]], dtype=bool)
    # Execute
    ranks = revised_unit_ranks(masks, scores)
    # Assert
    np.testing.assert_array_equal(ranks, [[4, 3, 1, 2], [2, 1, 3, 4]])


def test_round_payload_reports_front_choice_objectives_and_cost():
    # Prepare: a 2-point front whose point 0 is MASKS.
    front_masks = np.stack([MASKS, np.array([[1, 1, 0], [0, 0, 1]], dtype=bool)])  # (2, 2, 3)
    decision = SelectionResult(MASKS, front_F=np.array([[1.5, 2 / 3], [1.6, 0.0]]), front_masks=front_masks,
                               chosen=0, n_evals=120, seconds=0.25)
    # Execute
    payload = round_payload(3, ("c0", "c1"), ("u0", "u1", "u2"), MASKS, SCORES, decision)
    # Assert
    assert payload["round"] == 3 and payload["clients"] == ["c0", "c1"] and payload["units"] == ["u0", "u1", "u2"]
    assert payload["scores"] == SCORES.tolist()
    assert payload["masks"] == [[1, 0, 1], [0, 0, 1]]
    np.testing.assert_allclose(payload["front"], [[1.5, 2 / 3], [1.6, 0.0]])
    assert payload["front_masks"] == 2 and payload["chosen"] == 0
    assert payload["objectives"] == {"importance": pytest.approx(1.5), "variance": pytest.approx(2 / 3)}
    assert payload["distinct_units"] == 2  # u0, u2
    assert payload["n_evals"] == 120 and payload["seconds"] == pytest.approx(0.25)
    assert json.loads(json.dumps(payload)) == payload  # plain JSON types only
    assert round_summary(payload) == {"importance": pytest.approx(1.5), "variance": pytest.approx(2 / 3),
                                      "front_size": 2}


def test_round_payload_of_a_rule_based_selector_has_no_front_and_no_importance():
    payload = round_payload(1, ("c0", "c1"), ("u0", "u1", "u2"), MASKS, None, SelectionResult(MASKS))
    assert payload["scores"] is None and payload["front"] is None and payload["chosen"] is None
    assert payload["front_masks"] == 0 and payload["n_evals"] == 0
    assert round_summary(payload) == {"importance": None, "variance": pytest.approx(2 / 3), "front_size": None}


def test_rank_history_orders_rounds_and_skips_unscored_ones():
    # Prepare: rounds given out of order; round 1 has no scores.
    later = round_payload(3, ("c0", "c1"), ("u0", "u1", "u2"), MASKS, SCORES[::-1])
    first = round_payload(2, ("c0", "c1"), ("u0", "u1", "u2"), MASKS, SCORES)
    unscored = round_payload(1, ("c0", "c1"), ("u0", "u1", "u2"), MASKS, None)
    # Execute
    history = rank_history([later, unscored, first])
    # Assert: c0's ranks by its own scores: round 2 (0.5, 0.3, 0.2) -> 1 2 3; round 3 (0.1, 0.1, 0.8) -> 2 3 1.
    assert history["rounds"] == [2, 3]
    assert history["ranks"]["c0"] == [[1, 2, 3], [2, 3, 1]]
    assert history["ranks"]["c1"] == [[2, 3, 1], [1, 2, 3]]
    # c0 trains {u0, u2}: round 2 revised = u0, u2, then u1; round 3 = u2 (0.8), u0 (0.1), then u1.
    assert history["revised_ranks"]["c0"] == [[1, 3, 2], [2, 3, 1]]
    assert history["trained"]["c1"] == [[0, 0, 1], [0, 0, 1]]
    assert rank_history([unscored]) is None


def test_figures_are_valid_non_empty_pngs(tmp_path):
    # Prepare
    history = rank_history([round_payload(r, ("c0", "c1"), ("u0", "u1", "u2"), MASKS, SCORES) for r in (1, 2, 3)])
    # Execute
    front = render_front(tmp_path / "front_round_001.png", np.array([[1.5, 2 / 3], [1.6, 0.0]]), 0, 1)
    single = render_front(tmp_path / "one.png", np.array([[1.5, 0.0]]), None, 2)
    heatmap = render_rank_heatmap(tmp_path / "sub" / "unit_ranks.png", history)
    # Assert
    for path in (front, single, heatmap):
        _assert_png(path)
