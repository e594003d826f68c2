"""What one round counts while it runs: phase wall seconds, workers' compute seconds, failures, retries.

The coordinator starts a fresh `RoundTally` for every round (round 0 included) and the round's record
reads it (`f3ocus.federated.records`): `phase_seconds` (wall seconds per phase, `lap`) and
`worker_seconds` (the workers' own compute seconds per phase, summed over replies) differ by dispatch,
transfer and waiting; `failures` and `retries` give the reasons next to the record's `failed_clients`;
`state_bytes` counts client state moved between coordinator and workers, both ways.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from f3ocus.federated.messages import WorkerError


@dataclass
class RoundTally:
    """One round's counters; see the module docstring."""

    phase_seconds: dict[str, float] = field(default_factory=dict)
    worker_seconds: dict[str, float] = field(default_factory=dict)
    failures: dict[str, list[str]] = field(default_factory=dict)  # client -> "phase: reason" of each failure
    retries: dict[str, list[str]] = field(default_factory=dict)  # client -> "phase: reason" of each retried attempt
    actors_replaced: int = 0
    state_bytes: int = 0
    _last_lap: float = field(default_factory=time.perf_counter, repr=False)

    def lap(self, phase: str) -> None:
        """Close `phase`: the wall seconds since the previous lap (or the tally's start) are added to it."""
        now = time.perf_counter()
        self.phase_seconds[phase] = self.phase_seconds.get(phase, 0.0) + now - self._last_lap
        self._last_lap = now

    def add_worker_seconds(self, phase: str, replies: Sequence[Any]) -> None:
        """Add the compute seconds the workers report in their replies to `phase` (failed replies: none)."""
        compute = sum(getattr(reply, "seconds", 0.0) for reply in replies if not isinstance(reply, WorkerError))
        self.worker_seconds[phase] = self.worker_seconds.get(phase, 0.0) + compute

    def note_failures(self, phase: str, replies: Sequence[Any]) -> None:
        """Record the reason of every failed reply (`WorkerError`) of `phase`."""
        for reply in replies:
            if isinstance(reply, WorkerError):
                self.note_failure(reply.client, f"{phase}: {reply.message}")

    def note_failure(self, client: str, reason: str) -> None:
        self.failures.setdefault(client, []).append(reason)

    def note_retry(self, client: str, reason: str) -> None:
        self.retries.setdefault(client, []).append(reason)

    def fault_details(self, failed_clients: Sequence[str]) -> dict[str, Any]:
        """Why clients failed and what the pool retried, for the record next to its `failed_clients`."""
        return {"failure_reasons": {c: "; ".join(self.failures.get(c, ())) for c in failed_clients},
                "retries": {client: len(reasons) for client, reasons in sorted(self.retries.items())},
                "retry_reasons": dict(sorted(self.retries.items())),
                "actors_replaced": self.actors_replaced}


__all__ = ["RoundTally"]
