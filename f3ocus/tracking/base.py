"""The logger role. Only the coordinator writes; workers return metrics inside their replies.

A logger must not stop training on a tracking fault: once its run exists, a failing backend call is
buffered and retried (see `f3ocus.tracking.mlflow_logger.MlflowLogger`), never raised to the caller.
`close` may return a small report (`{"flushed", "buffered", "dropped"}` record counts) or None.
`log_metrics(..., timestamp_ms)` stamps the records with a given time: the coordinator sends a round's
records again, identical, after a resume, and an identical record is stored once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Protocol


class MetricLogger(Protocol):
    """`run_id`, `experiment_id`: where the run's records go (None: not known, or no tracking).
    `logged_steps(key)`: the steps at which metric `key` is logged already; None when the logger cannot tell."""

    run_id: str | None
    experiment_id: str | None

    def logged_steps(self, key: str) -> set[int] | None: ...

    def log_params(self, params: Mapping[str, Any]) -> None: ...

    def log_metrics(self, metrics: Mapping[str, float], step: int, timestamp_ms: int | None = None) -> None: ...

    def log_dict(self, data: Any, artifact_file: str) -> None: ...

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None: ...

    def close(self, status: str = "FINISHED") -> dict[str, int] | None: ...


class NullLogger:
    """Logs nothing (tracking.mlflow: false); the run's own JSON files are still written by the driver."""

    run_id: str | None = None
    experiment_id: str | None = None

    def logged_steps(self, key: str) -> set[int] | None:
        return None  # nothing is logged anywhere to ask

    def log_params(self, params: Mapping[str, Any]) -> None:
        pass

    def log_metrics(self, metrics: Mapping[str, float], step: int, timestamp_ms: int | None = None) -> None:
        pass

    def log_dict(self, data: Any, artifact_file: str) -> None:
        pass

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        pass

    def close(self, status: str = "FINISHED") -> None:
        pass
