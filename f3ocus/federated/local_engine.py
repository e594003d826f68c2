"""Run a federation in this process (`federation.engine: local`): one `LocalPool` worker, the coordinator
called directly, no Ray start-up. The same config and seed give the same figures as the Ray engine
(tests/integration/test_local_ray.py).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from f3ocus.config.schema import ExperimentConfig
from f3ocus.federated.coordinator import Coordinator
from f3ocus.federated.pool import LocalPool
from f3ocus.federated.progress import format_round
from f3ocus.federated.records import RoundRecord
from f3ocus.federated.rounds import run_rounds
from f3ocus.federated.state import FederationState
from f3ocus.prepared import Prepared, make_logger, worker_spec

OnRound = Callable[[RoundRecord, dict[str, Any]], None]


def run_local(cfg: ExperimentConfig, prepared: Prepared, resume: FederationState | None,
              show: Callable[[str], None], on_round: OnRound | None = None) -> dict[str, Any]:
    """Run every remaining round in this process; return the coordinator's summary.

    Shows one summary line per trained round (none for round 0) and calls `on_round(record, run_info)`
    after every round, round 0 included. If `on_round` raises (a scheduler stopping the trial), the MLflow run
    is closed KILLED and the worker stopped, as on the Ray engine, and the exception propagates.
    """
    coordinator = Coordinator(cfg, prepared.federation, str(prepared.run_dir),
                              make_pool=functools.partial(LocalPool, worker_spec(cfg, prepared),
                                                          retries=cfg.federation.client_retries),
                              make_logger=functools.partial(make_logger, cfg, prepared), resume=resume)
    run_info = {**coordinator.run_info(), "coordinator_node": "local"}

    def after_round(record: RoundRecord) -> None:
        if record.round > 0:
            show(format_round(record, coordinator.progress()))
        if on_round:
            try:
                on_round(record, run_info)
            except BaseException:  # noqa: BLE001 - includes the SystemExit a Tune trial stop raises in report()
                coordinator.abort("KILLED")  # as the Ray engine: the caller stopped the run; its checkpoint stays
                raise

    return run_rounds(coordinator, cfg.federation.rounds, after_round)


__all__ = ["run_local"]
