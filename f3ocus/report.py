"""The end-of-run summary a person reads: per-client accuracy table, MLflow run id, the UI command."""

from __future__ import annotations

from typing import Any, Callable
from urllib.parse import urlparse


def print_summary(result: dict[str, Any], show: Callable[[str], None] = print) -> None:
    """Print the per-client table (final accuracy vs the majority-answer baseline) and how to open MLflow."""
    final, baseline = result["final"], result["majority_baseline"]
    width = max([len("client"), *map(len, final["per_client"])])
    show("")
    show(f"{'client':<{width}}  {'n_test':>6}  {'accuracy':>8}  {'majority':>8}")
    show(f"{'-' * width}  {'-' * 6}  {'-' * 8}  {'-' * 8}")
    for client, values in sorted(final["per_client"].items()):
        show(f"{client:<{width}}  {values['n']:>6d}  {values['accuracy']:>8.3f}  "
             f"{baseline['per_client'][client]:>8.3f}")
    show(f"{'mean':<{width}}  {'':>6}  {final['accuracy']:>8.3f}  {baseline['accuracy']:>8.3f}")
    show("")
    show(f"rounds: {result['rounds']}  upload: {result['bytes_up_total'] / 1e6:.2f} MB  "
         f"time: {result.get('seconds', 0):.0f}s  results: {result.get('run_dir', '?')}/result.json")
    if result.get("mlflow_run_id"):
        show(f"MLflow run id: {result['mlflow_run_id']}")
        show(f"open the MLflow UI: {mlflow_ui_command(result['tracking_uri'])}")
        show(f"  then browse http://127.0.0.1:5000/#/experiments/{result['mlflow_experiment_id']}"
             f"/runs/{result['mlflow_run_id']}")


def mlflow_ui_command(tracking_uri: str) -> str:
    """The exact command that serves `tracking_uri` in the MLflow UI on 127.0.0.1:5000."""
    if urlparse(tracking_uri).scheme in ("http", "https"):
        return f"open {tracking_uri} (the tracking server is the UI)"
    return f".venv/bin/mlflow ui --backend-store-uri {tracking_uri} --host 127.0.0.1 --port 5000"
