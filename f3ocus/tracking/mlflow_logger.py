"""MLflow backend: one run per experiment, flat dot-key params, per-round metrics, JSON artifacts.

Tracking URI: `tracking.tracking_uri`, else $MLFLOW_TRACKING_URI, else sqlite at
`<output_dir>/mlflow.db` (never the file store, which MLflow 3 refuses). New experiments get their
artifact location under `<output_dir>/mlartifacts` so nothing lands in the current directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

# MLflow rejects param values longer than this; longer ones are truncated with a marker.
_MAX_PARAM_CHARS = 6000


def resolve_tracking_uri(configured: str | None, output_dir: Path) -> str:
    """The URI the run logs to: config, then $MLFLOW_TRACKING_URI, then a sqlite DB in `output_dir`."""
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{output_dir.resolve()}/mlflow.db"


class MlflowLogger:
    """Owns one MLflow run through an explicit `MlflowClient` (no global active-run state)."""

    def __init__(self, tracking_uri: str, experiment: str, run_name: str, artifact_root: Path,
                 tags: Mapping[str, str] | None = None, run_id: str | None = None):
        import logging

        from mlflow.tracking import MlflowClient

        # Table creation/migration chatter from a fresh sqlite store is noise in the run's output.
        for name in ("mlflow.store.db.utils", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self.tracking_uri = tracking_uri
        self._client = MlflowClient(tracking_uri)
        found = self._client.get_experiment_by_name(experiment)
        if found is None:
            location = artifact_root.resolve().as_uri() if "://" not in tracking_uri or \
                tracking_uri.startswith("sqlite") else None
            self.experiment_id = self._client.create_experiment(experiment, artifact_location=location)
        else:
            self.experiment_id = found.experiment_id
        if run_id is None:
            run = self._client.create_run(self.experiment_id, run_name=run_name, tags=dict(tags or {}))
            run_id = run.info.run_id
        self.run_id = run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(key, _param_text(value)) for key, value in params.items()]
        for start in range(0, len(items), 100):
            self._client.log_batch(self.run_id, params=items[start:start + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(key, float(value), now, step) for key, value in metrics.items()]
        for start in range(0, len(items), 500):
            self._client.log_batch(self.run_id, metrics=items[start:start + 500])

    def log_dict(self, data: Any, artifact_file: str) -> None:
        self._client.log_dict(self.run_id, data, artifact_file)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self._client.log_artifact(self.run_id, str(path), artifact_path)

    def close(self, status: str = "FINISHED") -> None:
        self._client.set_terminated(self.run_id, status)


def _param_text(value: Any) -> str:
    text = str(value)
    return text if len(text) <= _MAX_PARAM_CHARS else text[:_MAX_PARAM_CHARS - 12] + "…[truncated]"
