"""The round loop: the one place that runs a federation's rounds, whatever engine drives it.

`run_rounds` is the outer loop of the paper's Algorithm 1 (docs/METHOD.md §4): the initial evaluation
(round 0, unless a resumed run is past it), then `run_round(t)` for every round t not completed yet, then
the run's summary. The body of a round (score -> select -> train -> aggregate -> evaluate -> checkpoint ->
log) is `Coordinator.run_round`. The engines differ only in the `RoundRunner` they pass and in what they do
after each round (`after_round`):

- in process (`Coordinator.run`, `f3ocus.federated.local_engine`): the `Coordinator` itself;
- on Ray (`f3ocus.federated.ray_engine`): the driver's handle on a coordinator actor, which shows a live
  progress line while each round runs.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

from f3ocus.federated.records import RoundRecord


class RoundRunner(Protocol):
    """The coordinator's calls the round loop makes (a `Coordinator`, or a handle on a coordinator actor)."""

    def needs_initial_evaluation(self) -> bool: ...

    def evaluate_initial(self) -> RoundRecord: ...

    def next_round(self) -> int: ...

    def run_round(self, round_idx: int) -> RoundRecord: ...

    def finish(self) -> dict[str, Any]: ...


def run_rounds(coordinator: RoundRunner, rounds: int,
               after_round: Callable[[RoundRecord], None] | None = None) -> dict[str, Any]:
    """Round 0 (when not done yet), every remaining round up to `rounds`, then the run's summary.

    Args:
        coordinator: runs each round; its checkpoint decides where the loop starts (`next_round`).
        rounds: the last round, `federation.rounds`.
        after_round: called with each round's record (round 0 included) once the round is checkpointed
            and logged; an exception it raises ends the loop (the caller decides what happens to the run).

    Returns:
        The coordinator's summary of the run in its JSON form (`Coordinator.finish`).
    """
    if coordinator.needs_initial_evaluation():
        record = coordinator.evaluate_initial()
        if after_round is not None:
            after_round(record)
    for round_idx in range(coordinator.next_round(), rounds + 1):
        record = coordinator.run_round(round_idx)
        if after_round is not None:
            after_round(record)
    return coordinator.finish()


__all__ = ["RoundRunner", "run_rounds"]
