"""What the driver prepares before any actor starts, and what both engines build from it.

`f3ocus.experiment` fills a `Prepared` (run dir, data store, model cache, federation facts, tracking URI);
the engines (`f3ocus.federated.local_engine`, `f3ocus.federated.ray_engine`) turn it into the client
workers' `WorkerSpec` (`worker_spec`) and the coordinator's logger (`make_logger`). `OFFLINE_ENV` is the
environment a run sets for itself and its actors. This module sits below both the experiment and the
engines, so neither imports the other's module for these; it imports nothing heavy at module level, so
the environment can be set before the hub libraries are imported.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from f3ocus.config.load import flatten, to_dict
from f3ocus.config.schema import ExperimentConfig

if TYPE_CHECKING:
    from f3ocus.federated.state import Federation
    from f3ocus.federated.worker import WorkerSpec
    from f3ocus.tracking.base import MetricLogger

# Set for the run and passed to every actor (local Ray workers inherit it; a cluster gets it in the job's
# runtime env): no hub access, and no library progress bars (a client actor's "Loading weights" bar would
# reach the driver's console through Ray's log forwarding).
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "RAY_AUTH_MODE": "disabled",
               "TOKENIZERS_PARALLELISM": "false", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
               "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}


@dataclass(frozen=True)
class Prepared:
    """What the driver built before any actor starts."""

    run_dir: Path
    store_dir: Path
    model_cache_dir: str | None
    federation: Federation | None  # None only for a worker built outside a run (`f3ocus.benchmarks.paper`)
    tracking_uri: str | None
    bad_rows: dict[str, Any] = field(default_factory=dict)  # rows skipped under data.on_bad_row: skip
    run_tags: dict[str, str] = field(default_factory=dict)  # extra MLflow tags (a sweep's parent run id, trial id)


def worker_spec(cfg: ExperimentConfig, prepared: Prepared) -> WorkerSpec:
    """What every client worker of the run is built from (config, data store, model cache, threads)."""
    from f3ocus.federated.worker import WorkerSpec

    return WorkerSpec(cfg, str(prepared.store_dir), prepared.model_cache_dir,
                      num_threads=max(1, int(cfg.federation.worker_resources.num_cpus)))


def make_logger(cfg: ExperimentConfig, prepared: Prepared, run_id: str | None = None) -> MetricLogger:
    """The coordinator's logger factory: MLflow (params, tags, config artifacts) or nothing.

    With `run_id` (a resumed run) it reopens that MLflow run and logs no params again (MLflow forbids
    changing a logged param; the resumed run's config is the one already logged). MLflow unreachable when
    the run starts does not stop it: the run is created later from the buffer (`create_later`).
    """
    from f3ocus.tracking import MlflowLogger, NullLogger, names

    if prepared.tracking_uri is None:
        return NullLogger()
    output_dir = Path(cfg.tracking.output_dir).expanduser().resolve()
    logger = MlflowLogger(prepared.tracking_uri, cfg.tracking.experiment, prepared.run_dir.name,
                          output_dir / "mlartifacts",
                          tags={"f3ocus.git_sha": git_sha(), "f3ocus.run_dir": str(prepared.run_dir),
                                "f3ocus.selector": cfg.selection.method, "f3ocus.model": cfg.model.family,
                                **prepared.run_tags},
                          run_id=run_id, buffer_path=prepared.run_dir / "mlflow_buffer.jsonl", create_later=True)
    if run_id is not None:
        return logger
    resolved = to_dict(cfg)
    logger.log_params({**flatten(resolved), "federation.clients": ",".join(prepared.federation.clients),
                       "federation.resolved_budgets": list(prepared.federation.budgets)})
    logger.log_dict(resolved, "config/resolved.yaml")
    by_reason = prepared.bad_rows.get("by_reason", {})
    logger.log_metrics({names.DATA_SKIPPED_ROWS: prepared.bad_rows.get("total", 0),
                        **{f"{names.DATA_SKIPPED_ROWS}/{reason}": count for reason, count in by_reason.items()}}, step=0)
    if prepared.bad_rows.get("total"):
        logger.log_dict(prepared.bad_rows, "data/bad_rows.json")
    return logger


def git_sha() -> str:
    """The commit of this checkout (an MLflow tag of every run and sweep), or "unknown"."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).parent).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


__all__ = ["OFFLINE_ENV", "Prepared", "worker_spec", "make_logger", "git_sha"]
