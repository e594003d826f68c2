"""The end-of-run summary a person reads: per-client accuracy table, MLflow run id, the UI command."""

from __future__ import annotations

from typing import Any, Callable
from urllib.parse import urlparse


def print_summary(result: dict[str, Any], show: Callable[[str], None] = print) -> None:
    """Print the per-client table (final accuracy vs the majority-answer baseline) and how to open MLflow.

    With multi-label clients (F1-scored, docs/METHOD.md §5 T4-T6) two more columns give their micro-F1 and the
    majority baseline's (the most frequent train label set), and a last line the unified score. With client
    state (FedDAT) a last column gives each client's score with its own state (`personal`).
    """
    final, baseline = result["final"], result["majority_baseline"]
    width = max([len("client"), *map(len, final["per_client"])])
    f1s = "f1" in final
    head, rule = (f"  {'f1':>8}  {'maj. f1':>8}", f"  {'-' * 8}  {'-' * 8}") if f1s else ("", "")
    personal = "personal" in final
    if personal:
        head, rule = head + f"  {'personal':>8}", rule + f"  {'-' * 8}"
    show("")
    show(f"{'client':<{width}}  {'n_test':>6}  {'accuracy':>8}  {'majority':>8}{head}")
    show(f"{'-' * width}  {'-' * 6}  {'-' * 8}  {'-' * 8}{rule}")
    for client, values in sorted(final["per_client"].items()):
        cells = _f1_cells(values.get("f1"), baseline, client) if f1s else ""
        cells += f"  {values['personal']['score']:>8.3f}" if personal and "personal" in values else ""
        show(f"{client:<{width}}  {values['n']:>6d}  {values['accuracy']:>8.3f}  "
             f"{baseline['per_client'][client]:>8.3f}{cells}")
    cells = f"  {final['f1']:>8.3f}  {baseline.get('f1', float('nan')):>8.3f}" if f1s else ""
    cells += f"  {final['personal']['score']:>8.3f}" if personal else ""
    show(f"{'mean':<{width}}  {'':>6}  {final['accuracy']:>8.3f}  {baseline['accuracy']:>8.3f}{cells}")
    if f1s:
        show(f"score (accuracy of VQA clients, F1 of multi-label clients): {final['score']:.3f}  "
             f"majority {baseline.get('score', float('nan')):.3f}")
    show("")
    show(f"rounds: {result['rounds']}  upload: {result['bytes_up_total'] / 1e6:.2f} MB  "
         f"time: {result.get('seconds', 0):.0f}s  results: {result.get('run_dir', '?')}/result.json")
    if str(result.get("mlflow_run_id")).startswith("pending-"):  # mlflow_logger.LOCAL_RUN_PREFIX
        show(f"MLflow run not created yet (MLflow was unreachable): send its buffered records with "
             f"f3ocus mlflow-replay {result.get('run_dir', '?')}/mlflow_buffer.jsonl")
    elif result.get("mlflow_run_id"):
        show(f"MLflow run id: {result['mlflow_run_id']}")
        show(f"open the MLflow UI: {mlflow_ui_command(result['tracking_uri'])}")
        show(f"  then browse http://127.0.0.1:5000/#/experiments/{result['mlflow_experiment_id']}"
             f"/runs/{result['mlflow_run_id']}")


def _f1_cells(f1: float | None, baseline: dict[str, Any], client: str) -> str:
    """The f1 / majority-f1 cells of one client's row ("-" for a VQA client)."""
    if f1 is None:
        return f"  {'-':>8}  {'-':>8}"
    return f"  {f1:>8.3f}  {baseline.get('per_client_f1', {}).get(client, float('nan')):>8.3f}"


def mlflow_ui_command(tracking_uri: str) -> str:
    """The exact command that serves `tracking_uri` in the MLflow UI on 127.0.0.1:5000."""
    if urlparse(tracking_uri).scheme in ("http", "https"):
        return f"open {tracking_uri} (the tracking server is the UI)"
    return f".venv/bin/mlflow ui --backend-store-uri {tracking_uri} --host 127.0.0.1 --port 5000"
