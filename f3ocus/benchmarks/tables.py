"""Tables A and B of `f3ocus bench paper`, from the cells' summaries (pure functions, no I/O).

Table A (the paper's main table): one row per layer-selection method, one column per task x model, each entry
the final score mean +- std over seeds (x100; accuracy for VQA tasks, micro-F1 for multi-label tasks, and
for a mixed task the mean over clients of each client's own metric), and the row mean over columns.
Table B (efficiency): per PEFT baseline and F3OCUS on one task and model: upload per client per round (Mbit),
compute per client per round (GFLOP, counted), trainable parameters per client per round, the score of
every client and the mean — each averaged over seeds (and over clients and rounds for the per-client figures) —
and, for methods whose clients keep state (FedDAT), the mean score with each client's own state ("–" otherwise).
std is the sample standard deviation (ddof=1) over seeds; one seed gives std 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from f3ocus.benchmarks.methods import METHODS


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """(mean, sample std) of `values`; std 0 for one value; (nan, nan) for none."""
    if not values:
        return math.nan, math.nan
    array = np.asarray(values, dtype=np.float64)
    return float(array.mean()), float(array.std(ddof=1)) if array.size > 1 else 0.0


def table_a(cells: Sequence[Mapping[str, Any]], methods: Sequence[str], columns: Sequence[tuple[str, str]]
            ) -> dict[str, Any]:
    """Scores per (method, (task, model)) over seeds, and each method's mean over the columns it has.

    Args:
        cells: cell summaries with keys task, model, method, seed, status, score (fraction in [0, 1]).
        methods: row order; columns: (task, model) column order.

    Returns:
        {"columns": [...], "rows": [{"method", "label", "cells": [{"mean", "std", "n"}], "row_mean"}]},
        values x100; the row mean is nan unless every column has at least one seed.
    """
    scores: dict[tuple[str, str, str], list[float]] = {}
    for cell in cells:
        if cell.get("status") == "ok":
            scores.setdefault((cell["method"], cell["task"], cell["model"]), []).append(100.0 * cell["score"])
    rows = []
    for method in methods:
        entries = []
        for task, model in columns:
            values = scores.get((method, task, model), [])
            mean, std = mean_std(values)
            entries.append({"mean": mean, "std": std, "n": len(values)})
        means = [entry["mean"] for entry in entries]
        row_mean = float(np.mean(means)) if means and not any(math.isnan(m) for m in means) else math.nan
        rows.append({"method": method, "label": METHODS[method].label if method in METHODS else method,
                     "cells": entries, "row_mean": row_mean})
    return {"columns": [f"{task.upper()} {model}" for task, model in columns], "rows": rows,
            "majority": _majority(cells, columns)}


def _majority(cells: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str]]) -> list[float]:
    """Per column: the untrained majority-answer baseline x100 (mean over seeds; it depends on the data only)."""
    out = []
    for task, model in columns:
        by_seed = {cell["seed"]: cell["majority_score"] for cell in cells if cell.get("status") == "ok"
                   and cell["task"] == task and cell["model"] == model and cell.get("majority_score") is not None}
        out.append(100.0 * float(np.mean(list(by_seed.values()))) if by_seed else math.nan)
    return out


def table_b(cells: Sequence[Mapping[str, Any]], methods: Sequence[str], task: str, model: str) -> dict[str, Any]:
    """Efficiency and per-client scores of `methods` on one task and model, averaged over seeds."""
    rows = []
    clients: list[str] = []
    for method in methods:
        runs = [cell for cell in cells if cell.get("status") == "ok" and cell["method"] == method
                and cell["task"] == task and cell["model"] == model]
        if not runs:
            continue
        clients = clients or sorted(runs[0]["per_client"])
        per_client = {client: mean_std([100.0 * run["per_client"][client] for run in runs])[0] for client in clients}
        gflops = [run["gflop_per_client_round"] for run in runs if run.get("gflop_per_client_round") is not None]
        rows.append({
            "method": method, "label": METHODS[method].label if method in METHODS else method, "seeds": len(runs),
            "upload_mbit": mean_std([run["upload_mbit_per_client_round"] for run in runs])[0],
            "gflop": mean_std(gflops)[0],
            "trainable_params": mean_std([run["trainable_params_per_client_round"] for run in runs])[0],
            "per_client": per_client,
            "score": mean_std([100.0 * run["score"] for run in runs]),
            "personal_score": mean_std([100.0 * run["personal_score"] for run in runs
                                        if run.get("personal_score") is not None]),
        })
    return {"task": task, "model": model, "clients": clients, "rows": rows}


def ranking(table: Mapping[str, Any]) -> list[tuple[str, float]]:
    """(label, row mean) of Table A's complete rows, best first — the ordering the paper's headline states."""
    rows = [(row["label"], row["row_mean"]) for row in table["rows"] if not math.isnan(row["row_mean"])]
    return sorted(rows, key=lambda item: -item[1])


def markdown_a(table: Mapping[str, Any]) -> str:
    """Table A as GitHub markdown: `mean ± std` per column, then the row mean."""
    lines = ["| Method | " + " | ".join(table["columns"]) + " | Mean |",
             "|---|" + "---:|" * (len(table["columns"]) + 1)]
    for row in table["rows"]:
        entries = [_pm(entry["mean"], entry["std"]) for entry in row["cells"]]
        lines.append(f"| {row['label']} | " + " | ".join(entries) + f" | {_num(row['row_mean'])} |")
    majority = table.get("majority", [])
    if majority and not all(math.isnan(value) for value in majority):
        mean = float(np.mean(majority)) if not any(math.isnan(value) for value in majority) else math.nan
        lines.append("| *Majority answer, no training* | " + " | ".join(_num(value) for value in majority)
                     + f" | {_num(mean)} |")
    return "\n".join(lines)


def markdown_b(table: Mapping[str, Any]) -> str:
    """Table B as GitHub markdown."""
    clients = table["clients"]
    lines = ["| Method | Upload (Mbit/client/round) | GFLOP/client/round | Trainable params/client/round | "
             + " | ".join(clients) + " | Mean | Mean, own state |",
             "|---|---:|---:|---:|" + "---:|" * (len(clients) + 2)]
    for row in table["rows"]:
        lines.append(f"| {row['label']} | {_num(row['upload_mbit'], 3)} | {_num(row['gflop'], 3)} | "
                     f"{_count(row['trainable_params'])} | "
                     + " | ".join(_num(row["per_client"][client]) for client in clients)
                     + f" | {_pm(*row['score'])} | {_pm(*row.get('personal_score', (math.nan, math.nan)))} |")
    return "\n".join(lines)


def _pm(mean: float, std: float) -> str:
    return "–" if math.isnan(mean) else f"{mean:.1f} ± {std:.1f}"


def _num(value: float, digits: int = 1) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _count(value: float) -> str:
    if value is None or math.isnan(value):
        return "–"
    return f"{value / 1e6:.3f} M" if value >= 1e5 else f"{value:,.0f}"
