"""MLflow down or locked mid-run does not stop training: failed calls are buffered on disk, flushed in order
later (metrics keep their steps), one warning per outage, and `close` reports what was flushed or left."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import TEMPORARILY_UNAVAILABLE
from mlflow.tracking import MlflowClient

from f3ocus.cli import main
from f3ocus.tracking.mlflow_logger import MlflowLogger, replay_buffer


class FlakyClient:
    """A real `MlflowClient` whose next `failures` calls raise what a locked sqlite store raises."""

    def __init__(self, inner: MlflowClient):
        self.inner, self.failures, self.calls = inner, 0, 0

    def __getattr__(self, name):
        method = getattr(self.inner, name)

        def call(*args, **kwargs):
            self.calls += 1
            if self.failures > 0:
                self.failures -= 1
                raise MlflowException("(sqlite3.OperationalError) database is locked",
                                      error_code=TEMPORARILY_UNAVAILABLE)
            return method(*args, **kwargs)
        return call


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One sqlite store for the module (creating its tables takes seconds); every test opens its own run."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"
    MlflowClient(uri).search_experiments()
    return uri


def _logger(tmp_path: Path, uri: str, client=None, retry_seconds: float = 0.0):
    warnings: list[str] = []
    logger = MlflowLogger(uri, "faults", "run", tmp_path / "mlartifacts", client=client,
                          buffer_path=tmp_path / "run" / "mlflow_buffer.jsonl", retry_seconds=retry_seconds,
                          warn=warnings.append)
    return logger, warnings


def _history(uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in sorted(MlflowClient(uri).get_metric_history(run_id, key),
                                              key=lambda m: (m.timestamp, m.step))]


def test_locked_store_mid_run_loses_nothing_and_keeps_order(tmp_path: Path, store: str) -> None:
    # Prepare
    flaky = FlakyClient(MlflowClient(store))
    logger, warnings = _logger(tmp_path, store, client=flaky)
    logger.log_params({"a.b": 1})
    buffer = tmp_path / "run" / "mlflow_buffer.jsonl"
    # Execute: rounds 0-2 fine, then 7 failing calls (rounds 3..5 and their retries), then MLflow is back.
    for step in range(10):
        if step == 3:
            flaky.failures = 7
        logger.log_metrics({"eval/acc": step / 10, "train/loss": 1.0 - step / 10}, step)
        if step == 3:
            logger.log_dict({"round": step}, "selection/round_003.json")
            assert buffer.is_file()
            lines = [json.loads(line) for line in buffer.read_text().splitlines()]
            assert [line["op"] for line in lines] == ["metrics", "dict"]
            assert lines[0]["metrics"][0][3] == 3 and lines[0]["run_id"] == logger.run_id
    report = logger.close()
    # Assert
    assert report == {"flushed": report["flushed"], "buffered": 0, "dropped": 0} and report["flushed"] >= 2
    assert not buffer.exists()
    assert _history(store, logger.run_id, "eval/acc") == [(step, step / 10) for step in range(10)]
    assert _history(store, logger.run_id, "train/loss") == [(step, 1.0 - step / 10) for step in range(10)]
    run = MlflowClient(store).get_run(logger.run_id)
    assert run.info.status == "FINISHED" and run.data.params == {"a.b": "1"}
    assert "round_003.json" in [a.path.split("/")[-1] for a in MlflowClient(store).list_artifacts(logger.run_id,
                                                                                                  "selection")]
    outage = [w for w in warnings if "cannot log to" in w]
    assert len(outage) == 1 and "database is locked" in outage[0] and "training continues" in outage[0]
    assert any("reachable again" in w for w in warnings)
    assert "were flushed" in warnings[-1]


def test_two_outages_warn_twice(tmp_path: Path, store: str) -> None:
    flaky = FlakyClient(MlflowClient(store))
    logger, warnings = _logger(tmp_path, store, client=flaky)
    for step in range(8):
        if step in (1, 5):
            flaky.failures = 2
        logger.log_metrics({"m": float(step)}, step)
    logger.close()
    assert sum("cannot log to" in w for w in warnings) == 2 and logger.outages == 2
    assert _history(store, logger.run_id, "m") == [(step, float(step)) for step in range(8)]


def test_no_hammering_while_down(tmp_path: Path, store: str) -> None:
    flaky = FlakyClient(MlflowClient(store))
    logger, _ = _logger(tmp_path, store, client=flaky, retry_seconds=3600)
    calls = flaky.calls
    flaky.failures = 10**6
    for step in range(20):
        logger.log_metrics({"m": float(step)}, step)
    assert flaky.calls - calls == 1  # one attempt, then buffered until retry_seconds pass
    assert logger.pending == 20
    flaky.failures = 0
    assert logger.close()["buffered"] == 0  # close retries whatever retry_seconds says
    assert [step for step, _ in _history(store, logger.run_id, "m")] == list(range(20))


def test_down_at_close_leaves_a_buffer_that_replays(tmp_path: Path, store: str) -> None:
    # Prepare
    flaky = FlakyClient(MlflowClient(store))
    logger, warnings = _logger(tmp_path, store, client=flaky)
    artifact = tmp_path / "run" / "summary.txt"
    artifact.parent.mkdir(parents=True, exist_ok=True)
    artifact.write_text("hello")
    flaky.failures = 10**6
    # Execute
    for step in range(3):
        logger.log_metrics({"m": float(step)}, step)
    logger.log_artifact(artifact, "extra")
    report = logger.close("FINISHED")  # must not raise
    # Assert
    buffer = tmp_path / "run" / "mlflow_buffer.jsonl"
    assert report == {"flushed": 0, "buffered": 5, "dropped": 0}
    ops = [json.loads(line)["op"] for line in buffer.read_text().splitlines()]
    assert ops == ["metrics", "metrics", "metrics", "artifact", "terminate"]
    assert json.loads(buffer.read_text().splitlines()[3])["path"] == str(artifact.resolve())
    assert "5 record(s)" in warnings[-1] and str(buffer) in warnings[-1] and "remain buffered" in warnings[-1]
    assert f"f3ocus mlflow-replay {buffer}" in warnings[-1]
    assert main(["mlflow-replay", str(buffer)]) == 0
    assert not buffer.exists()
    assert _history(store, logger.run_id, "m") == [(0, 0.0), (1, 1.0), (2, 2.0)]
    assert MlflowClient(store).get_run(logger.run_id).info.status == "FINISHED"
    assert [a.path for a in MlflowClient(store).list_artifacts(logger.run_id, "extra")] == ["extra/summary.txt"]


def test_a_rejected_record_is_dropped_not_blocking(tmp_path: Path, store: str) -> None:
    logger, warnings = _logger(tmp_path, store)
    logger.log_params({"p": 1})
    logger.log_params({"p": 2})  # MLflow refuses to change a logged param: INVALID_PARAMETER_VALUE
    logger.log_metrics({"m": 1.0}, 1)
    assert logger.close() == {"flushed": 0, "buffered": 0, "dropped": 1}
    assert any("dropped a params record" in w for w in warnings)
    assert _history(store, logger.run_id, "m") == [(1, 1.0)]


def test_unreachable_tracking_server_then_back(tmp_path: Path, store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # MLflow's HTTP client retries with exponential backoff for minutes by default; the logger bounds it
    # (HTTP_MAX_RETRIES / HTTP_TIMEOUT) unless these are set, and here they are set to fail at once.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    logger, warnings = _logger(tmp_path, store)
    working = logger._client
    logger._client, logger.tracking_uri = MlflowClient("http://127.0.0.1:1"), "http://127.0.0.1:1"  # closed port
    start = time.perf_counter()
    for step in range(5):
        logger.log_metrics({"eval/acc": step / 10}, step)
    assert time.perf_counter() - start < 10
    assert logger.pending == 5
    outage = [w for w in warnings if "cannot log to http://127.0.0.1:1" in w]
    assert len(outage) == 1 and "training continues" in outage[0]
    logger._client, logger.tracking_uri = working, store  # the server is back
    for step in range(5, 8):
        logger.log_metrics({"eval/acc": step / 10}, step)
    assert logger.close()["buffered"] == 0
    assert _history(store, logger.run_id, "eval/acc") == [(step, step / 10) for step in range(8)]


def test_bounded_http_retries_unless_the_user_set_them(tmp_path: Path, store: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "7")
    logger, _ = _logger(tmp_path, store)
    logger.tracking_uri = "http://tracking.example:5000"
    seen = {}

    class Probe:
        def log_batch(self, *args, **kwargs):
            import os
            seen.update(retries=os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES"),
                        timeout=os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT"))

    logger._client = Probe()
    logger.log_metrics({"m": 1.0}, 0)
    assert seen == {"retries": "2", "timeout": "7"}
    import os
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ  # restored after the call


def test_a_non_mlflow_error_at_close_does_not_raise(tmp_path: Path, store: str) -> None:
    logger, warnings = _logger(tmp_path, store)

    class Broken:
        def set_terminated(self, *args, **kwargs):
            raise ConnectionError("connection reset by peer")

    logger._client = Broken()
    assert logger.close() == {"flushed": 0, "buffered": 1, "dropped": 0}
    assert "remain buffered" in warnings[-1]


def test_replay_while_still_down_keeps_the_buffer(tmp_path: Path, store: str, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    flaky = FlakyClient(MlflowClient(store))
    logger, _ = _logger(tmp_path, store, client=flaky)
    flaky.failures = 10**6
    logger.log_metrics({"m": 1.0}, 1)
    logger.log_metrics({"m": 2.0}, 2)
    logger.close()
    buffer = tmp_path / "run" / "mlflow_buffer.jsonl"
    assert main(["mlflow-replay", str(buffer), "--tracking-uri", "http://127.0.0.1:1"]) == 1
    assert "mlflow error: " in capsys.readouterr().err
    assert len(buffer.read_text().splitlines()) == 3  # nothing lost
    assert replay_buffer(buffer) == 3
    assert _history(store, logger.run_id, "m") == [(1, 1.0), (2, 2.0)]


# ------------------------------------------------------------------------------- MLflow down when the run starts
def _late_logger(tmp_path: Path, uri: str, client, run_id: str | None = None):
    warnings: list[str] = []
    logger = MlflowLogger(uri, "late", "run", tmp_path / "mlartifacts", tags={"f3ocus.model": "llava"},
                          run_id=run_id, client=client, buffer_path=tmp_path / "run" / "mlflow_buffer.jsonl",
                          retry_seconds=0.0, warn=warnings.append, create_later=True)
    return logger, warnings


def _runs(uri: str, experiment: str = "late") -> list:
    found = MlflowClient(uri).get_experiment_by_name(experiment)
    return [] if found is None else MlflowClient(uri).search_runs([found.experiment_id])


def test_down_at_start_the_run_goes_on_and_is_created_and_filled_when_mlflow_is_back(tmp_path: Path,
                                                                                      store: str) -> None:
    # Prepare: every call fails while the run starts and for rounds 0-1
    flaky = FlakyClient(MlflowClient(store))
    flaky.failures = 10**6
    before = len(_runs(store))
    # Execute
    logger, warnings = _late_logger(tmp_path, store, flaky)
    local_id = logger.run_id
    logger.log_params({"a.b": 1})
    for step in range(2):
        logger.log_metrics({"eval/acc": step / 10}, step)
    buffer = tmp_path / "run" / "mlflow_buffer.jsonl"
    ops = [json.loads(line)["op"] for line in buffer.read_text().splitlines()]
    flaky.failures = 0  # MLflow is back
    logger.log_metrics({"eval/acc": 0.2}, 2)
    report = logger.close()
    # Assert
    assert local_id.startswith("pending-") and ops == ["create_run", "params", "metrics", "metrics"]
    assert logger.run_id != local_id and report == {"flushed": 4, "buffered": 0, "dropped": 0}
    assert len(_runs(store)) == before + 1
    run = MlflowClient(store).get_run(logger.run_id)
    assert run.data.tags["f3ocus.local_run_id"] == local_id and run.data.tags["f3ocus.model"] == "llava"
    assert run.data.params == {"a.b": "1"} and run.info.status == "FINISHED" and run.info.run_name == "run"
    assert logger.experiment_id == run.info.experiment_id
    assert _history(store, logger.run_id, "eval/acc") == [(0, 0.0), (1, 0.1), (2, 0.2)]
    assert "cannot create the run at" in warnings[0] and "training continues" in warnings[0]
    assert f"f3ocus mlflow-replay {buffer}" in warnings[0]
    assert any(f"created run {logger.run_id}" in w for w in warnings) and not buffer.exists()


def test_down_for_the_whole_run_then_replay_creates_it_once(tmp_path: Path, store: str) -> None:
    # Prepare
    flaky = FlakyClient(MlflowClient(store))
    flaky.failures = 10**6
    logger, warnings = _late_logger(tmp_path, store, flaky)
    logger.log_metrics({"m": 1.0}, 0)
    logger.log_metrics({"m": 2.0}, 1)
    assert logger.close()["buffered"] == 4  # create_run, 2 x metrics, terminate
    buffer = tmp_path / "run" / "mlflow_buffer.jsonl"
    before = len(_runs(store))
    # Execute
    assert replay_buffer(buffer) == 4
    # Assert
    [run] = [r for r in _runs(store) if r.data.tags.get("f3ocus.local_run_id") == logger.run_id]
    assert len(_runs(store)) == before + 1 and run.info.status == "FINISHED"
    assert _history(store, run.info.run_id, "m") == [(0, 1.0), (1, 2.0)]
    # A resumed run that still knows only the local id finds that run (no second one) and logs into it.
    resumed, _ = _late_logger(tmp_path, store, MlflowClient(store), run_id=logger.run_id)
    resumed.log_metrics({"m": 3.0}, 2)
    resumed.close()
    assert resumed.run_id == run.info.run_id and len(_runs(store)) == before + 1
    assert _history(store, run.info.run_id, "m") == [(0, 1.0), (1, 2.0), (2, 3.0)]


def test_a_replay_cut_after_creating_the_run_does_not_create_it_twice(tmp_path: Path, store: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    flaky = FlakyClient(MlflowClient(store))
    flaky.failures = 10**6
    logger, _ = _late_logger(tmp_path, store, flaky)
    logger.log_metrics({"m": 1.0}, 0)
    logger.close()
    buffer = tmp_path / "run" / "mlflow_buffer.jsonl"
    saved = buffer.read_text()
    before = len(_runs(store))
    assert replay_buffer(buffer) == 3
    buffer.write_text(saved)  # as if the replay had been killed before it rewrote the buffer
    assert replay_buffer(buffer) == 3
    assert len(_runs(store)) == before + 1


def test_metrics_sent_again_identically_are_stored_once(tmp_path: Path, store: str) -> None:
    # What a resumed coordinator relies on when it re-sends its last round's records.
    logger, _ = _logger(tmp_path, store)
    for _ in range(3):
        logger.log_metrics({"eval/acc": 0.5, "eval/loss": 1.25}, 4, timestamp_ms=1_700_000_000_123)
    logger.close()
    assert _history(store, logger.run_id, "eval/acc") == [(4, 0.5)]
    assert _history(store, logger.run_id, "eval/loss") == [(4, 1.25)]


def test_logged_steps_counts_the_store_and_the_buffer_and_says_when_it_cannot_tell(tmp_path: Path,
                                                                                   store: str) -> None:
    flaky = FlakyClient(MlflowClient(store))
    logger, _ = _logger(tmp_path, store, client=flaky, retry_seconds=3600)
    logger.log_metrics({"eval/acc": 0.1, "other": 1.0}, 0)
    flaky.failures = 1
    logger.log_metrics({"eval/acc": 0.2}, 1)  # buffered
    logger.log_metrics({"other": 2.0}, 2)  # buffered
    assert logger.logged_steps("eval/acc") == {0, 1}
    flaky.failures = 1
    assert logger.logged_steps("eval/acc") is None
    logger.close()
