"""What the server's selection step leaves behind each round: JSON payload, front figure, unit-rank heatmap.

Pure functions on arrays plus PNG rendering; no MLflow here (the coordinator writes the files into the run
directory and logs them). Figures are drawn on a matplotlib `Figure` with an explicit Agg canvas, never
through pyplot, so no global figure state or GUI backend is involved (the coordinator may be a Ray actor).

Conventions:
- Objectives follow docs/METHOD.md §3 and reuse `f3ocus.selection.objectives`. Importance is computed on
  row-normalised scores (METHOD §2, the same normalisation `F3ocusSelector` solves on), so for the F3OCUS
  selector the chosen mask's importance equals `front_F[chosen, 0]`; variance is the population variance
  (1/L) Σ_l (n_l − n̄)² of the selection histogram.
- Ranks are 1-based, 1 = most important. Ties are broken deterministically towards the lower unit index
  (a stable sort of −score), as `top_k_mask` does, so equal scores rank in unit order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from f3ocus.selection.base import SelectionResult
from f3ocus.selection.f3ocus_selector import normalise_rows, revised_ranking
from f3ocus.selection.objectives import histogram_variance, importance

TIE_BREAK = "equal scores rank in unit order (lower unit index = better rank); stable sort of -score"
# The heatmap figure draws at most this many clients (the first ones); the JSON keeps every client.
# A 1,000-client federation would otherwise ask matplotlib for 1,000 subplots.
MAX_HEATMAP_CLIENTS = 12


# ------------------------------------------------------------------------------------------- numbers
def selection_objectives(masks: np.ndarray, scores: np.ndarray | None) -> dict[str, float | None]:
    """The two F3OCUS objectives (METHOD §3) of one selection.

    Args:
        masks: (N, L) bool selection.
        scores: (N, L) non-negative client scores, or None (rule-based selectors).

    Returns:
        {"importance": Σ_i Σ_l m_il S_il on row-normalised S (None without scores),
         "variance": population variance of the histogram n_l = Σ_i m_il}.
    """
    masks = np.asarray(masks, dtype=bool)  # (N, L)
    X = masks.reshape(1, -1)  # (1, N·L)
    value = None if scores is None else float(importance(X, normalise_rows(scores))[0])
    return {"importance": value, "variance": float(histogram_variance(X, masks.shape[1])[0])}


def unit_ranks(scores: np.ndarray) -> np.ndarray:
    """Each client's rank of every unit by its own score: (N, L) float -> (N, L) int, 1 = highest score.

    Ties: the lower unit index gets the better rank (see the module docstring).
    """
    return _ranks_from_order(np.argsort(-np.asarray(scores, dtype=float), axis=1, kind="stable"))


def revised_unit_ranks(masks: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Rank of every unit in the revised ranking the server sends (chosen units by score, then the rest).

    Args:
        masks: (N, L) bool chosen selection. scores: (N, L).

    Returns:
        (N, L) int, 1 = first; client i's chosen units hold ranks 1..b_i.
    """
    return _ranks_from_order(revised_ranking(np.asarray(masks, dtype=bool), np.asarray(scores, dtype=float)))


def _ranks_from_order(order: np.ndarray) -> np.ndarray:
    """Invert per-row permutations: order (N, L) best-first unit indices -> ranks (N, L), 1-based."""
    ranks = np.empty_like(order)  # (N, L)
    np.put_along_axis(ranks, order, np.arange(1, order.shape[1] + 1)[None, :], axis=1)
    return ranks


# ------------------------------------------------------------------------------------------ payloads
def round_payload(round_idx: int, clients: Sequence[str], units: Sequence[str], masks: np.ndarray,
                  scores: np.ndarray | None, decision: SelectionResult | None = None) -> dict[str, Any]:
    """The JSON-ready record of one round's selection (`selection/round_NNN.json`).

    Args:
        round_idx: the round (1-based). clients: N names. units: L names.
        masks: (N, L) bool, the masks the clients trained. scores: (N, L) or None.
        decision: the selector's result; its front, chosen index and solver cost are reported.

    Returns:
        round, clients, units, scores (N×L list or None), masks (N×L 0/1), front (P×[importance, variance]
        or None when the selector has no front), front_masks (P, 0 without a front), chosen (index or None),
        objectives {importance, variance} of `masks`, distinct_units, n_evals, seconds.
    """
    masks = np.asarray(masks, dtype=bool)  # (N, L)
    has_front = decision is not None and decision.front_F is not None
    return {
        "round": int(round_idx),
        "clients": list(clients),
        "units": list(units),
        "scores": None if scores is None else np.asarray(scores, dtype=float).tolist(),
        "masks": masks.astype(int).tolist(),
        "front": np.asarray(decision.front_F, dtype=float).tolist() if has_front else None,
        "front_masks": 0 if decision is None or decision.front_masks is None else int(len(decision.front_masks)),
        "chosen": None if decision is None or decision.chosen is None else int(decision.chosen),
        "objectives": selection_objectives(masks, scores),
        "distinct_units": int(masks.any(axis=0).sum()),
        "n_evals": 0 if decision is None else int(decision.n_evals),
        "seconds": 0.0 if decision is None else float(decision.seconds),
    }


def round_summary(payload: dict[str, Any]) -> dict[str, Any]:
    """The small part of a payload kept in the round record: importance, variance, front_size (None: no front)."""
    front = payload["front"]
    return {**payload["objectives"], "front_size": None if front is None else len(front)}


def rank_history(payloads: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Every client's unit ranks across the rounds that had scores (`selection/unit_ranks.json`).

    Args:
        payloads: `round_payload` dicts (any order; same clients and units), e.g. read back from disk.

    Returns:
        None when no round had scores; else {rounds (R,), clients, units, tie_break,
        ranks {client: R×L, rank by the client's own scores}, revised_ranks {client: R×L, rank in the
        server's revised ranking}, trained {client: R×L 0/1}}.
    """
    scored = sorted((p for p in payloads if p.get("scores") is not None), key=lambda p: p["round"])
    if not scored:
        return None
    clients, units = scored[0]["clients"], scored[0]["units"]
    scores = np.array([p["scores"] for p in scored], dtype=float)  # (R, N, L)
    masks = np.array([p["masks"] for p in scored], dtype=bool)  # (R, N, L)
    ranks = np.stack([unit_ranks(s) for s in scores])  # (R, N, L)
    revised = np.stack([revised_unit_ranks(m, s) for m, s in zip(masks, scores)])  # (R, N, L)
    return {
        "rounds": [int(p["round"]) for p in scored], "clients": list(clients), "units": list(units),
        "tie_break": TIE_BREAK,
        "ranks": {c: ranks[:, i].tolist() for i, c in enumerate(clients)},
        "revised_ranks": {c: revised[:, i].tolist() for i, c in enumerate(clients)},
        "trained": {c: masks[:, i].astype(int).tolist() for i, c in enumerate(clients)},
    }


# ------------------------------------------------------------------------------------------- figures
def render_front(path: str | Path, front: np.ndarray, chosen: int | None, round_idx: int) -> Path:
    """Scatter the Pareto front in (importance, variance) with the chosen point highlighted; save as PNG.

    Args:
        path: output .png. front: (P, 2) as (importance, variance), P >= 1. chosen: index into front or None.
        round_idx: shown in the title.

    Returns:
        The written path.
    """
    front = np.asarray(front, dtype=float).reshape(-1, 2)  # (P, 2)
    figure = _figure((5.0, 4.0))
    axes = figure.add_subplot()
    order = np.argsort(front[:, 0], kind="stable")  # (P,) left to right
    axes.plot(front[order, 0], front[order, 1], color="0.7", linewidth=1, zorder=1)
    axes.scatter(front[:, 0], front[:, 1], s=24, color="tab:blue", label=f"front ({len(front)} points)", zorder=2)
    if chosen is not None:
        axes.scatter(front[chosen, 0], front[chosen, 1], s=160, marker="*", color="tab:red", zorder=3,
                     label=f"chosen ({front[chosen, 0]:.3g}, {front[chosen, 1]:.3g})")
    axes.set_xlabel("importance  Σ m·S  (maximised)")
    axes.set_ylabel("histogram variance  (minimised)")
    axes.set_title(f"Pareto front, round {round_idx}")
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize=8)
    return _save(figure, path)


def render_rank_heatmap(path: str | Path, history: dict[str, Any], max_clients: int = MAX_HEATMAP_CLIENTS) -> Path:
    """The paper's Fig. 5: per client, rounds × units coloured by the unit's rank (1 = most important).

    Cells of units the client trained that round carry a dot. One shared colorbar. Only the first
    `max_clients` clients are drawn (the title says so when there are more).

    Args:
        path: output .png. history: a `rank_history` dict. max_clients: most clients drawn.

    Returns:
        The written path.
    """
    units, rounds = history["units"], history["rounds"]
    clients = history["clients"][:max_clients]
    num_cols = min(len(clients), 3)
    num_rows = -(-len(clients) // num_cols)
    width = num_cols * max(3.0, 0.28 * len(units) + 1.0) + 1.0
    height = num_rows * max(2.2, 0.25 * len(rounds) + 1.6)
    figure = _figure((width, height))
    grid = figure.subplots(num_rows, num_cols, squeeze=False)
    image = None
    for axes, client in zip(grid.ravel(), clients):
        ranks = np.asarray(history["ranks"][client])  # (R, L)
        image = axes.imshow(ranks, cmap="viridis_r", vmin=1, vmax=max(len(units), 2), aspect="auto",
                            interpolation="nearest")
        trained_rows, trained_cols = np.nonzero(np.asarray(history["trained"][client], dtype=bool))
        axes.scatter(trained_cols, trained_rows, s=10, color="white", edgecolors="black", linewidths=0.4)
        axes.set_title(client, fontsize=9)
        axes.set_xticks(range(len(units)), units, rotation=90, fontsize=6)
        axes.set_yticks(range(len(rounds)), [str(r) for r in rounds], fontsize=6)
        axes.set_ylabel("round", fontsize=8)
    for axes in grid.ravel()[len(clients):]:
        axes.set_visible(False)
    figure.colorbar(image, ax=grid.ravel().tolist(), label="unit rank (1 = most important)")
    shown = "" if len(clients) == len(history["clients"]) else f", first {len(clients)} of {len(history['clients'])} clients"
    figure.suptitle(f"Unit ranks per client across rounds (dot = trained{shown})", fontsize=10)
    return _save(figure, path)


def _figure(size: tuple[float, float]):
    """A pyplot-free Figure on an Agg canvas (matplotlib imported here: only runs that draw pay for it)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, dpi=100, layout="constrained")
    FigureCanvasAgg(figure)  # attaches itself as figure.canvas
    return figure


def _save(figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path
