"""MLflow backend: one run per experiment, flat dot-key params, per-round metrics, JSON artifacts.

Tracking URI: `tracking.tracking_uri`, else $MLFLOW_TRACKING_URI, else sqlite at
`<output_dir>/mlflow.db` (never the file store, which MLflow 3 refuses). New experiments get their
artifact location under `<output_dir>/mlartifacts` so nothing lands in the current directory.

Tracking faults never stop training. Once the run exists, every MLflow call that fails (server down,
sqlite locked, artifact store unwritable) is appended to a buffer, in memory and, with `buffer_path`, as
JSON lines on disk (`<run_dir>/mlflow_buffer.jsonl`; artifacts are stored by file path), and later calls
and `close` flush the buffer first, in order, so metrics reach MLflow in their original order with
their original steps and timestamps. While MLflow is down a new attempt is made at most every
`retry_seconds` (each failed attempt can block: sqlite waits 20 s on a lock, HTTP waits for its timeout).
One warning line is printed per outage, and `close` says how many records it flushed or left buffered;
`replay_buffer` (the `f3ocus mlflow-replay BUFFER` command) sends what was left once MLflow is back. A call MLflow rejects for good (changing a logged param, a deleted run, an artifact file that no
longer exists) is dropped with a warning instead of blocking the queue.

HTTP tracking servers: MLflow retries a failed request with exponential backoff for minutes by default,
which would stall a round. Unless $MLFLOW_HTTP_REQUEST_MAX_RETRIES / $MLFLOW_HTTP_REQUEST_TIMEOUT are
set, this logger's calls run with `HTTP_MAX_RETRIES` retries and an `HTTP_TIMEOUT`-second timeout.
The run's creation (`__init__`) is not buffered: MLflow unreachable at the start raises there, before
any training.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

# MLflow rejects param values longer than this; longer ones are truncated with a marker.
_MAX_PARAM_CHARS = 6000
_PARAM_BATCH = 100
_METRIC_BATCH = 500
RETRY_SECONDS = 30.0  # least time between two attempts to reach MLflow during an outage
HTTP_MAX_RETRIES = 2  # used unless $MLFLOW_HTTP_REQUEST_MAX_RETRIES is set
HTTP_TIMEOUT = 20  # seconds, used unless $MLFLOW_HTTP_REQUEST_TIMEOUT is set
BUFFER_FILE = "mlflow_buffer.jsonl"
# MLflow error codes that no retry can fix: the record is dropped (with a warning), not re-buffered.
PERMANENT_ERROR_CODES = frozenset({"INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST",
                                   "INVALID_STATE", "BAD_REQUEST"})
# Loggers that print a full traceback for every failed store call; our one warning per outage replaces them.
_NOISY_LOGGERS = ("mlflow.store.db.utils", "mlflow.utils.rest_utils", "urllib3.connectionpool")


def resolve_tracking_uri(configured: str | None, output_dir: Path) -> str:
    """The URI the run logs to: config, then $MLFLOW_TRACKING_URI, then a sqlite DB in `output_dir`."""
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{output_dir.resolve()}/mlflow.db"


class MlflowLogger:
    """Owns one MLflow run through an explicit `MlflowClient` (no global active-run state).

    Args:
        tracking_uri, experiment, run_name, artifact_root, tags, run_id: where and which run (a given
            `run_id` reopens that run).
        buffer_path: the on-disk buffer of failed calls (JSON lines), e.g. `<run_dir>/mlflow_buffer.jsonl`;
            None keeps the buffer in memory only (lost if the process dies during an outage).
        retry_seconds: least time between two attempts to reach MLflow while it is down.
        warn: where the outage / flush lines go (default: one line on stderr).
        client: an `MlflowClient`-like object to use instead of `MlflowClient(tracking_uri)` (tests).
    """

    def __init__(self, tracking_uri: str, experiment: str, run_name: str, artifact_root: Path,
                 tags: Mapping[str, str] | None = None, run_id: str | None = None, *,
                 buffer_path: Path | None = None, retry_seconds: float = RETRY_SECONDS,
                 warn: Callable[[str], None] | None = None, client: Any = None):
        from mlflow.tracking import MlflowClient

        # Table creation/migration chatter from a fresh sqlite store is noise in the run's output.
        for name in ("mlflow.store.db.utils", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self.tracking_uri = tracking_uri
        self.buffer_path = Path(buffer_path) if buffer_path is not None else None
        self.retry_seconds = retry_seconds
        self._warn = warn or _print_warning
        self._pending: collections.deque[dict[str, Any]] = collections.deque()
        self._lock = threading.RLock()
        self._down_since: float | None = None  # monotonic time of the first failure of the current outage
        self._next_attempt = 0.0
        self._last_error = ""
        self._buffer_file_ok = True
        self.flushed = 0  # buffered records that later reached MLflow
        self.dropped = 0  # records MLflow rejected for good
        self.outages = 0
        self._client = client if client is not None else MlflowClient(tracking_uri)
        with self._quiet_http():
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
        self._pending.extend(self._read_buffer())  # a previous process's leftovers for this run go first

    # ------------------------------------------------------------------------------------ the logger role
    def log_params(self, params: Mapping[str, Any]) -> None:
        items = [[str(key), _param_text(value)] for key, value in params.items()]
        for start in range(0, len(items), _PARAM_BATCH):
            self._submit({"op": "params", "params": items[start:start + _PARAM_BATCH]})

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        items = [[str(key), float(value), now, int(step)] for key, value in metrics.items()]
        for start in range(0, len(items), _METRIC_BATCH):
            self._submit({"op": "metrics", "metrics": items[start:start + _METRIC_BATCH]})

    def log_dict(self, data: Any, artifact_file: str) -> None:
        self._submit({"op": "dict", "data": data, "artifact_file": artifact_file})

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self._submit({"op": "artifact", "path": str(Path(path).resolve()), "artifact_path": artifact_path})

    def close(self, status: str = "FINISHED") -> dict[str, int]:
        """Flush the buffer (whatever `retry_seconds` says), end the run, report; never raises.

        Returns:
            {"flushed": buffered records that reached MLflow over the run, "buffered": records still
            only in the buffer, "dropped": records MLflow rejected}.
        """
        with self._lock:
            self._submit({"op": "terminate", "status": status}, force=True)
            report = {"flushed": self.flushed, "buffered": len(self._pending), "dropped": self.dropped}
            where = f" in {self.buffer_path}" if self.buffer_path is not None else " (in memory: lost on exit)"
            if self._pending:
                replay = (f"; send them later with: f3ocus mlflow-replay {self.buffer_path}"
                          if self.buffer_path is not None else "")
                self._warn(f"mlflow: {len(self._pending)} record(s) of run {self.run_id} remain buffered{where} "
                           f"(MLflow still unreachable: {self._last_error}){replay}")
            elif self.flushed or self.outages:
                self._warn(f"mlflow: all {self.flushed} buffered record(s) of run {self.run_id} were flushed"
                           + (f", {self.dropped} rejected record(s) dropped" if self.dropped else ""))
            return report

    @property
    def pending(self) -> int:
        """Records waiting in the buffer."""
        return len(self._pending)

    # ------------------------------------------------------------------------------------------ buffering
    def _submit(self, record: dict[str, Any], force: bool = False) -> None:
        """Send `record` after everything buffered before it; buffer it if that cannot happen now."""
        with self._lock:
            if self._pending and not self._flush(force):
                self._enqueue(record)
                return
            attempt = time.monotonic()
            try:
                self._send(record)
            except Exception as error:  # noqa: BLE001 - tracking must not stop training
                if _permanent(error):
                    self._drop(record, error)
                    return
                self._enqueue(record)
                self._failed(error, attempt)
                return
            self._recovered()

    def _flush(self, force: bool) -> bool:
        """Send buffered records in order; True when the buffer is empty afterwards."""
        if not force and time.monotonic() < self._next_attempt:
            return False
        sent = 0
        try:
            while self._pending:
                record = self._pending[0]
                attempt = time.monotonic()
                try:
                    self._send(record)
                except Exception as error:  # noqa: BLE001
                    if not _permanent(error):
                        self._failed(error, attempt)
                        return False
                    self._drop(record, error)
                else:
                    self.flushed += 1
                    sent += 1
                self._pending.popleft()
        finally:
            if sent or not self._pending:
                self._rewrite_buffer()
        self._recovered()
        return True

    def _send(self, record: dict[str, Any]) -> None:
        with self._quiet_http():
            _send_record(self._client, record, self.run_id)

    def _enqueue(self, record: dict[str, Any]) -> None:
        stored = {**record, "run_id": self.run_id, "tracking_uri": self.tracking_uri}
        try:
            line = json.dumps(stored, default=_jsonable)
        except (TypeError, ValueError) as error:  # e.g. a circular structure in log_dict data
            self._pending.append(stored)
            self._warn(f"mlflow: a {record['op']} record cannot be written to the buffer file ({error}); "
                       f"kept in memory")
            return
        self._pending.append(json.loads(line))  # a copy: later changes to the caller's data do not leak in
        if self.buffer_path is None or not self._buffer_file_ok:
            return
        try:
            self.buffer_path.parent.mkdir(parents=True, exist_ok=True)
            with self.buffer_path.open("a", encoding="utf-8") as handle:
                handle.write(line + "\n")
        except OSError as error:
            self._buffer_file_ok = False
            self._warn(f"mlflow: cannot write the buffer file {self.buffer_path} ({error}); buffering in memory")

    def _rewrite_buffer(self) -> None:
        if self.buffer_path is None or not self._buffer_file_ok:
            return
        try:
            if not self._pending:
                self.buffer_path.unlink(missing_ok=True)
                return
            partial = self.buffer_path.with_suffix(".tmp")
            partial.write_text("".join(json.dumps(record, default=_jsonable) + "\n" for record in self._pending))
            partial.replace(self.buffer_path)
        except (OSError, TypeError, ValueError) as error:
            self._buffer_file_ok = False
            self._warn(f"mlflow: cannot write the buffer file {self.buffer_path} ({error}); buffering in memory")

    def _read_buffer(self) -> list[dict[str, Any]]:
        if self.buffer_path is None or not self.buffer_path.is_file():
            return []
        records = _read_jsonl(self.buffer_path)  # each record names its own run
        if records:
            self._warn(f"mlflow: {len(records)} record(s) left in {self.buffer_path} by an earlier process "
                       f"will be sent first")
        return records

    def _failed(self, error: Exception, attempt: float) -> None:
        """A call that started at monotonic time `attempt` failed: schedule the next try, warn once per outage."""
        self._last_error = _one_line(error)
        self._next_attempt = time.monotonic() + self.retry_seconds
        if self._down_since is None:
            self._down_since = attempt
            self.outages += 1
            where = self.buffer_path if self.buffer_path is not None else "memory"
            self._warn(f"mlflow: cannot log to {self.tracking_uri} ({self._last_error}); training continues, "
                       f"records are buffered in {where} and retried every {self.retry_seconds:g} s")

    def _recovered(self) -> None:
        if self._down_since is not None and not self._pending:
            seconds = time.monotonic() - self._down_since
            self._down_since = None
            self._next_attempt = 0.0
            self._warn(f"mlflow: reachable again after {seconds:.0f} s; buffered records flushed "
                       f"({self.flushed} so far)")

    def _drop(self, record: dict[str, Any], error: Exception) -> None:
        self.dropped += 1
        self._warn(f"mlflow: dropped a {record['op']} record that MLflow rejects for good: {_one_line(error)}")

    @contextlib.contextmanager
    def _quiet_http(self) -> Iterator[None]:
        """Bounded HTTP retries/timeout for our calls (unless the user set them), no per-failure tracebacks."""
        saved_env: dict[str, str | None] = {}
        if self.tracking_uri.startswith(("http://", "https://")):
            for name, value in (("MLFLOW_HTTP_REQUEST_MAX_RETRIES", HTTP_MAX_RETRIES),
                                ("MLFLOW_HTTP_REQUEST_TIMEOUT", HTTP_TIMEOUT)):
                if name not in os.environ:
                    saved_env[name] = None
                    os.environ[name] = str(value)
        loggers = [logging.getLogger(name) for name in _NOISY_LOGGERS]
        levels = [logger.level for logger in loggers]
        for logger in loggers:
            logger.setLevel(logging.CRITICAL)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)
            for name in saved_env:
                os.environ.pop(name, None)


def replay_buffer(buffer_path: str | Path, tracking_uri: str | None = None) -> int:
    """Send the records of a buffer file left by a run (MLflow was down at its end); returns how many.

    Records go to their own run id at `tracking_uri` (default: the URI stored with each record). Sent
    records leave the file (removed when empty); on a failure the rest stays and the error propagates.
    """
    from mlflow.tracking import MlflowClient

    path = Path(buffer_path)
    records = _read_jsonl(path) if path.is_file() else []
    clients: dict[str, Any] = {}
    sent = 0
    while records:
        uri = tracking_uri or records[0]["tracking_uri"]
        client = clients.setdefault(uri, MlflowClient(uri))
        _send_record(client, records[0], records[0]["run_id"])
        records.pop(0)
        sent += 1
        if records:
            path.write_text("".join(json.dumps(record) + "\n" for record in records))
        else:
            path.unlink(missing_ok=True)
    return sent


def _send_record(client: Any, record: dict[str, Any], default_run_id: str | None) -> None:
    """One buffered record -> one MLflow client call."""
    from mlflow.entities import Metric, Param

    run_id = record.get("run_id", default_run_id)
    op = record["op"]
    if op == "metrics":
        client.log_batch(run_id, metrics=[Metric(k, v, t, s) for k, v, t, s in record["metrics"]])
    elif op == "params":
        client.log_batch(run_id, params=[Param(k, v) for k, v in record["params"]])
    elif op == "dict":
        client.log_dict(run_id, record["data"], record["artifact_file"])
    elif op == "artifact":
        if not Path(record["path"]).exists():
            raise FileNotFoundError(f"artifact file {record['path']} no longer exists")
        client.log_artifact(run_id, record["path"], record["artifact_path"])
    elif op == "terminate":
        client.set_terminated(run_id, record["status"])
    else:
        raise ValueError(f"unknown buffered operation {op!r}")


def _permanent(error: Exception) -> bool:
    """True for errors no retry fixes (MLflow's client errors, a vanished artifact file, our own bugs)."""
    from mlflow.exceptions import MlflowException

    if isinstance(error, MlflowException):
        return error.error_code in PERMANENT_ERROR_CODES
    return isinstance(error, (FileNotFoundError, TypeError, ValueError, KeyError, AttributeError))


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut by a crash mid-write
        if isinstance(record, dict) and "op" in record:
            records.append(record)
    return records


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return value.tolist()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:300] if text else ''}"


def _print_warning(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _param_text(value: Any) -> str:
    text = str(value)
    return text if len(text) <= _MAX_PARAM_CHARS else text[:_MAX_PARAM_CHARS - 12] + "…[truncated]"
