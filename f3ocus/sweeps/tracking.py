"""MLflow for sweeps: the tracking server, the parent run, and the children's final statuses.

One parent run per sweep (tags, the sweep file as an artifact, at the end the best trial's metrics and
`sweep/trials.json`); each trial's own run is a child of it through the `mlflow.parentRunId` tag, which
is what nests runs in the MLflow UI. Children are written by their trial's coordinator (the experiment's
usual logger), so concurrent trials are concurrent writers: SQLite would lock, so they must log through
a tracking server. `f3ocus mlflow-server` starts one on 127.0.0.1; a sweep given a `sqlite:` URI with
`max_concurrent_trials > 1` starts its own (`MlflowServer`, on a free loopback port) and stops it at the end.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Mapping

SWEEP_TAG = "f3ocus.sweep"  # the sweep's name, on the parent and on every child
ROLE_TAG = "f3ocus.sweep.role"  # "parent" or "trial"
TRIAL_TAG = "f3ocus.sweep.trial_id"  # Tune's trial id (children)
VALUES_TAG = "f3ocus.sweep.values"  # the trial's space values, `key=value, ...` (children)
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own nesting tag
STARTUP_TIMEOUT_S = 180.0


def server_command(backend_store_uri: str, artifacts_destination: Path, *, host: str = "127.0.0.1",
                   port: int = 5000, workers: int = 1) -> list[str]:
    """The `mlflow server` command line (this interpreter's mlflow). One worker: SQLite has one writer."""
    return [sys.executable, "-m", "mlflow", "server", "--host", host, "--port", str(port),
            "--backend-store-uri", backend_store_uri,
            "--artifacts-destination", str(Path(artifacts_destination).expanduser().resolve()),
            "--workers", str(workers)]


class MlflowServer:
    """An `mlflow server` child process on 127.0.0.1 for the length of a `with` block.

    Args:
        backend_store_uri: e.g. `sqlite:////abs/runs/mlflow.db`.
        artifacts_destination: where proxied artifact uploads go (experiments created beforehand with a
            file artifact location keep writing there directly).
        log_path: the server's stdout and stderr.
        port: None picks a free loopback port.
    """

    def __init__(self, backend_store_uri: str, artifacts_destination: Path, log_path: Path,
                 port: int | None = None):
        self.port = port or free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self._command = server_command(backend_store_uri, artifacts_destination, port=self.port)
        self._log_path = log_path
        self._process: subprocess.Popen | None = None

    def __enter__(self) -> "MlflowServer":
        self.start()
        try:
            self.wait()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Launch the server and return at once (`wait` blocks until it answers)."""
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._log_path, "ab") as log:
            # Its own process group: stopping it also stops the web worker it forks. On Linux it also
            # gets SIGTERM if this process dies first, so a killed sweep does not leave it running.
            self._process = subprocess.Popen(self._command, stdout=log, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, start_new_session=True,
                                             preexec_fn=die_with_parent)

    def wait(self) -> None:
        wait_until_up(self.uri, self._process, self._log_path)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            stop_group(process)


def stop_group(process: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM the process group led by `process` (`mlflow server` and its web worker), SIGKILL what
    outlives `grace` seconds. (`mlflow server` ignores SIGINT, so Ctrl-C alone would leave it running.)"""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            process.poll()  # reap the leader so the group can empty
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            continue
        break
    process.poll()


def wait_until_up(uri: str, process: subprocess.Popen | None = None, log_path: Path | None = None,
                  timeout: float = STARTUP_TIMEOUT_S) -> None:
    """Poll `<uri>/health` until the server answers; fail early if its process exits."""
    def check_alive() -> None:
        if process is not None and process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-1500:] if log_path and log_path.exists() else ""
            raise RuntimeError(f"mlflow server exited with code {process.returncode}:\n{tail}")

    if not wait_for_http(f"{uri}/health", timeout=timeout, check_alive=check_alive):
        raise RuntimeError(f"mlflow server at {uri} did not answer within {timeout:.0f} s (log: {log_path})")


def wait_for_http(url: str, *, timeout: float, interval: float = 0.5,
                  check_alive: Callable[[], None] | None = None) -> bool:
    """Poll `url` until it answers HTTP 200 (True) or `timeout` seconds pass (False).

    `check_alive` runs before every attempt and may raise to stop waiting early (a server process that died).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check_alive is not None:
            check_alive()
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(interval)
    return False


def die_with_parent() -> None:
    """In the child before exec: ask Linux for SIGTERM when the parent exits (no-op elsewhere)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ensure_experiment(tracking_uri: str, name: str, artifact_root: Path) -> str:
    """The id of experiment `name`, created with a file artifact location under `artifact_root` when
    `tracking_uri` is a local store (so `mlflow ui` on the same database finds the artifacts)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    local = tracking_uri.startswith("sqlite") or "://" not in tracking_uri
    return client.create_experiment(name, artifact_location=artifact_root.resolve().as_uri() if local else None)


def open_parent(tracking_uri: str, experiment: str, run_name: str, artifact_root: Path, *,
                tags: Mapping[str, str], params: Mapping[str, Any], sweep_file: Path, resolved: Any,
                buffer_path: Path):
    """Create the sweep's parent run: tags, params, the sweep file and its resolved form as artifacts."""
    from f3ocus.tracking import MlflowLogger

    logger = MlflowLogger(tracking_uri, experiment, run_name, artifact_root,
                          tags={ROLE_TAG: "parent", **tags}, buffer_path=buffer_path)
    logger.log_params(params)
    logger.log_artifact(sweep_file, "sweep")
    logger.log_dict(resolved, "sweep/resolved.yaml")
    return logger


def close_children(tracking_uri: str, experiment_id: str, parent_run_id: str,
                   status_of: Callable[[str], str], warn: Callable[[str], None] = print) -> dict[str, str]:
    """Terminate children of `parent_run_id` still RUNNING after the sweep (a trial stopped early or that
    failed before its coordinator closed the run): `status_of(run_id)` says KILLED or FAILED.

    Returns {run_id: status} of every child, as they are afterwards.
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    children = client.search_runs([experiment_id], filter_string=f"tags.{PARENT_TAG} = '{parent_run_id}'",
                                  max_results=10000)
    statuses = {}
    for run in children:
        status = run.info.status
        if status == "RUNNING":
            status = status_of(run.info.run_id)
            try:
                client.set_terminated(run.info.run_id, status)
                warn(f"mlflow: trial run {run.info.run_id} was left open by its trial; marked {status}")
            except Exception as error:  # noqa: BLE001 - a status is cosmetic; the sweep result stands
                warn(f"mlflow: could not mark run {run.info.run_id} {status}: {error}")
        statuses[run.info.run_id] = status
    return statuses
