"""`f3ocus report`: one MLflow experiment -> one self-contained HTML dashboard.

Reads MLflow only (`collect`: runs, params, metric histories, artifacts through `MlflowClient`) and writes
a single HTML file (`render_html`: inline CSS, JS and data; opens without network access) with the
methods × tasks table (mean ± std over seeds), accuracy and upload per round, per-client unit-rank
heatmaps, Pareto fronts with the chosen points, and a sweep's parallel coordinates (nested runs).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from f3ocus.dashboard.collect import collect
from f3ocus.dashboard.render import render_html

DEFAULT_OUTPUT_DIR = "runs"


def default_tracking_uri() -> str:
    """$MLFLOW_TRACKING_URI, else the runs' default store `runs/mlflow.db` (as `f3ocus run` resolves it)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(DEFAULT_OUTPUT_DIR).resolve()}/mlflow.db"


def default_output(experiment: str) -> Path:
    return Path(DEFAULT_OUTPUT_DIR) / f"report-{re.sub(r'[^A-Za-z0-9._-]+', '_', experiment)}.html"


def write_report(experiment: str, tracking_uri: str | None = None, out: str | Path | None = None) -> tuple[Path, dict[str, Any]]:
    """Collect `experiment` from MLflow and write the dashboard; returns (path, collected data)."""
    data = collect(experiment, tracking_uri or default_tracking_uri())
    path = Path(out) if out is not None else default_output(experiment)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render_html(data), encoding="utf-8")
    tmp.replace(path)
    return path, data


__all__ = ["collect", "render_html", "write_report", "default_tracking_uri"]
