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

The run's creation: by default `__init__` creates the run and raises if MLflow is unreachable. With
`create_later=True` (a federated run's logger) creation is itself a buffered record: the logger starts with
a local run id (`pending-<hex>`, see `is_local_run_id`), every record names that id, and when the
`create_run` record goes through (a later call, `close`, or `f3ocus mlflow-replay`) the run is created in
its experiment with the original start time and the tag `f3ocus.local_run_id`, and the records that follow
are sent to it. Creation finds an existing run with that tag before creating one, so a record sent twice
(a kill after the run was created, a resume with the local id still in the checkpoint) never makes a second
run. A resumed run (`run_id` given, real or local) is reopened without any call that could fail.
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
import uuid
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
LOCAL_RUN_PREFIX = "pending-"  # a run id given before MLflow created the run (create_later)
LOCAL_RUN_TAG = "f3ocus.local_run_id"
# Loggers that print a full traceback for every failed store call; our one warning per outage replaces them.
_NOISY_LOGGERS = ("mlflow.store.db.utils", "mlflow.utils.rest_utils", "urllib3.connectionpool")


def is_local_run_id(run_id: str | None) -> bool:
    """True for the placeholder id of a run MLflow has not created yet (it was unreachable)."""
    return bool(run_id) and run_id.startswith(LOCAL_RUN_PREFIX)


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
        create_later: MLflow unreachable at the start does not raise: the run is created when it is back
            (see the module docstring). Without it `__init__` raises as MLflow does.
    """

    def __init__(self, tracking_uri: str, experiment: str, run_name: str, artifact_root: Path,
                 tags: Mapping[str, str] | None = None, run_id: str | None = None, *,
                 buffer_path: Path | None = None, retry_seconds: float = RETRY_SECONDS,
                 warn: Callable[[str], None] | None = None, client: Any = None, create_later: bool = False):
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
        self.experiment_id: str | None = None
        self._aliases: dict[str, str] = {}  # local run id -> the id MLflow gave the run
        self._client = client
        location = artifact_root.resolve().as_uri() if "://" not in tracking_uri or \
            tracking_uri.startswith("sqlite") else None
        if not create_later:
            with self._quiet_http():
                self.experiment_id = _experiment_id(self._connect(), experiment, location)
                if run_id is None:
                    run_id = self._connect().create_run(self.experiment_id, run_name=run_name,
                                                        tags=dict(tags or {})).info.run_id
        self.run_id = run_id or f"{LOCAL_RUN_PREFIX}{uuid.uuid4().hex}"
        self._pending.extend(self._read_buffer())  # a previous process's leftovers for this run go first
        if create_later and is_local_run_id(self.run_id) and not any(
                record["op"] == "create_run" and record.get("run_id") == self.run_id for record in self._pending):
            self._create({"op": "create_run", "run_id": self.run_id, "tracking_uri": tracking_uri,
                          "experiment": experiment, "artifact_location": location, "run_name": run_name,
                          "tags": dict(tags or {}), "start_ms": int(time.time() * 1000)})

    # ------------------------------------------------------------------------------------ the logger role
    def log_params(self, params: Mapping[str, Any]) -> None:
        items = [[str(key), _param_text(value)] for key, value in params.items()]
        for start in range(0, len(items), _PARAM_BATCH):
            self._submit({"op": "params", "params": items[start:start + _PARAM_BATCH]})

    def log_metrics(self, metrics: Mapping[str, float], step: int, timestamp_ms: int | None = None) -> None:
        """Metrics at `step`, stamped `timestamp_ms` (default: now). Records sent again with the same
        timestamp and values are stored once by MLflow (a resumed run re-sends its last round's)."""
        now = int(time.time() * 1000) if timestamp_ms is None else int(timestamp_ms)
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
            if self.experiment_id is None and not self._pending:  # a resumed run: ask which experiment
                with contextlib.suppress(Exception), self._quiet_http():
                    self.experiment_id = self._connect().get_run(self.run_id).info.experiment_id
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

    def logged_steps(self, key: str) -> set[int] | None:
        """The steps at which metric `key` is logged or waiting in the buffer; None when MLflow cannot be asked."""
        with self._lock:
            steps = {int(item[3]) for record in self._pending if record["op"] == "metrics"
                     for item in record["metrics"] if item[0] == key}
            if is_local_run_id(self.run_id):
                return steps  # no run yet: only the buffer can hold its metrics
            try:
                with self._quiet_http():
                    history = self._connect().get_metric_history(self.run_id, key)
            except Exception:  # noqa: BLE001 - unreachable: the caller cannot know
                return None
            return steps | {int(metric.step) for metric in history}

    @property
    def pending(self) -> int:
        """Records waiting in the buffer."""
        return len(self._pending)

    # ------------------------------------------------------------------------------------------ buffering
    def _create(self, record: dict[str, Any]) -> None:
        """Create the run now, or put the `create_run` record first in the buffer (before any leftovers,
        which name the same local run id)."""
        attempt = time.monotonic()
        try:
            self._send(record)
            return
        except Exception as error:  # noqa: BLE001 - tracking must not stop training
            if _permanent(error):
                self._drop(record, error)
                return
            self._pending.appendleft(record)
            self._failed(error, attempt)
        self._rewrite_buffer()

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
            created = _send_record(self._connect(), record, self._aliases, self.run_id)
        if created is not None:  # the run exists now: later records and the run id name it
            if record["run_id"] == self.run_id:
                self.run_id, self.experiment_id = created
            if self._down_since is not None:
                self._warn(f"mlflow: created run {created[0]} (known as {record['run_id']} while MLflow was "
                           f"unreachable)")
            for pending in self._pending:
                if pending.get("run_id") == record["run_id"]:
                    pending["run_id"] = created[0]

    def _connect(self) -> Any:
        """The MLflow client, made on first use (making one opens the store, which can fail like any call)."""
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(self.tracking_uri)
        return self._client

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
            self.buffer_path.parent.mkdir(parents=True, exist_ok=True)
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
            creating = bool(self._pending) and self._pending[0]["op"] == "create_run"
            self._warn(f"mlflow: cannot {'create the run at' if creating else 'log to'} {self.tracking_uri} "
                       f"({self._last_error}); training continues, records are buffered in {where} and retried "
                       f"every {self.retry_seconds:g} s"
                       + (f"; the run is created when MLflow is back, or by: f3ocus mlflow-replay {where}"
                          if creating and self.buffer_path is not None else ""))

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

    Records go to their own run id at `tracking_uri` (default: the URI stored with each record); a
    `create_run` record (MLflow was down when the run started) creates the run, or finds it by its local id
    tag, and the records after it go to that run. Sent records leave the file (removed when empty); on a
    failure the rest stays, naming the created run, and the error propagates.
    """
    from mlflow.tracking import MlflowClient

    path = Path(buffer_path)
    records = _read_jsonl(path) if path.is_file() else []
    clients: dict[str, Any] = {}
    aliases: dict[str, str] = {}
    sent = 0
    while records:
        uri = tracking_uri or records[0]["tracking_uri"]
        client = clients.setdefault(uri, MlflowClient(uri))
        _send_record(client, records[0], aliases, records[0].get("run_id"))
        records.pop(0)
        sent += 1
        for record in records:
            record["run_id"] = aliases.get(record.get("run_id"), record.get("run_id"))
        if records:
            path.write_text("".join(json.dumps(record) + "\n" for record in records))
        else:
            path.unlink(missing_ok=True)
    return sent


def _send_record(client: Any, record: dict[str, Any], aliases: dict[str, str],
                 default_run_id: str | None) -> tuple[str, str] | None:
    """One buffered record -> one MLflow client call; a `create_run` record returns (run id, experiment id)
    and adds its local id -> run id to `aliases`, through which every record's run id is read."""
    from mlflow.entities import Metric, Param

    run_id = record.get("run_id", default_run_id)
    run_id = aliases.get(run_id, run_id)
    op = record["op"]
    if op == "create_run":
        created = _find_or_create_run(client, record)
        aliases[record["run_id"]] = created[0]
        return created
    if is_local_run_id(run_id):
        raise ValueError(f"run {run_id} was never created (its create_run record is not in this buffer)")
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
    return None


def _experiment_id(client: Any, name: str, artifact_location: str | None) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    return client.create_experiment(name, artifact_location=artifact_location)


def _find_or_create_run(client: Any, record: dict[str, Any]) -> tuple[str, str]:
    """The run of a `create_run` record: the one already tagged with its local id, else a new one."""
    experiment_id = _experiment_id(client, record["experiment"], record["artifact_location"])
    found = client.search_runs([experiment_id], filter_string=f"tags.`{LOCAL_RUN_TAG}` = '{record['run_id']}'",
                               max_results=1)
    if found:
        return found[0].info.run_id, experiment_id
    run = client.create_run(experiment_id, start_time=record["start_ms"], run_name=record["run_name"],
                            tags={**record["tags"], LOCAL_RUN_TAG: record["run_id"]})
    return run.info.run_id, experiment_id


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
