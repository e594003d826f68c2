"""The round loop (`run_rounds`) on a scripted runner, and the per-round counters (`RoundTally`)."""

import pytest

from f3ocus.federated.messages import EvalReport, WorkerError
from f3ocus.federated.round_tally import RoundTally
from f3ocus.federated.rounds import run_rounds


class ScriptedRunner:
    """Records the loop's calls; `done` rounds are completed already (a resumed run when > 0)."""

    def __init__(self, done: int = -1):
        self.done = done
        self.calls: list[str] = []

    def needs_initial_evaluation(self) -> bool:
        return self.done < 0

    def evaluate_initial(self) -> dict:
        self.calls.append("evaluate_initial")
        self.done = 0
        return {"round": 0}

    def next_round(self) -> int:
        return self.done + 1

    def run_round(self, round_idx: int) -> dict:
        self.calls.append(f"run_round({round_idx})")
        self.done = round_idx
        return {"round": round_idx}

    def finish(self) -> dict:
        self.calls.append("finish")
        return {"rounds": self.done}


def test_a_fresh_run_evaluates_first_then_every_round_then_finishes():
    # Prepare
    runner, seen = ScriptedRunner(), []
    # Execute
    summary = run_rounds(runner, 3, lambda record: seen.append(record["round"]))
    # Assert
    assert runner.calls == ["evaluate_initial", "run_round(1)", "run_round(2)", "run_round(3)", "finish"]
    assert seen == [0, 1, 2, 3] and summary == {"rounds": 3}


def test_a_resumed_run_starts_after_its_last_completed_round():
    runner = ScriptedRunner(done=2)
    assert run_rounds(runner, 4) == {"rounds": 4}
    assert runner.calls == ["run_round(3)", "run_round(4)", "finish"]


def test_an_after_round_that_raises_ends_the_loop_without_finishing():
    runner = ScriptedRunner()

    def stop(record):
        if record["round"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_rounds(runner, 3, stop)
    assert runner.calls == ["evaluate_initial", "run_round(1)"]


def test_the_tally_counts_failures_retries_and_worker_seconds_per_phase():
    # Prepare
    tally = RoundTally()
    replies = [EvalReport("c0", 0.5, 0.1, 4, 2.0), WorkerError("c1", "RuntimeError: boom")]
    # Execute
    tally.add_worker_seconds("evaluate", replies)
    tally.note_failures("evaluate", replies)
    tally.note_retry("c1", "evaluate: lost actor")
    tally.lap("evaluate")
    # Assert
    assert tally.worker_seconds == {"evaluate": 2.0}
    assert set(tally.phase_seconds) == {"evaluate"} and tally.phase_seconds["evaluate"] >= 0.0
    assert tally.fault_details(["c1"]) == {"failure_reasons": {"c1": "evaluate: RuntimeError: boom"},
                                          "retries": {"c1": 1}, "retry_reasons": {"c1": ["evaluate: lost actor"]},
                                          "actors_replaced": 0}
