"""Experiment tracking: the logger role, its MLflow backend, and metric-name constants."""

from f3ocus.tracking.base import MetricLogger, NullLogger
from f3ocus.tracking.mlflow_logger import MlflowLogger, resolve_tracking_uri

__all__ = ["MetricLogger", "NullLogger", "MlflowLogger", "resolve_tracking_uri"]
