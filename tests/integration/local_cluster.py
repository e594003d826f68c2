"""A real Ray cluster of one or more `ray start --block` nodes on 127.0.0.1, owned by one test.

Each node runs in the foreground (`--block`) in its own process group, so stopping the cluster signals
exactly the processes this test started (SIGTERM, then SIGKILL after a grace period) and never another
Ray instance on the machine (`ray stop` would end every Ray on it). Every port a node opens is picked
free, and each node has its own short `--temp-dir` (Ray's unix sockets must fit in 107 bytes).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from f3ocus.sweeps.tracking import wait_for_http
from tests.integration.conftest import free_ports

BIN = Path(sys.executable).parent
STARTUP_TIMEOUT_S = 240


def cluster_env() -> dict[str, str]:
    """This environment for the cluster and its jobs: this venv's `python` first, no $RAY_ADDRESS."""
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    env["PATH"] = f"{BIN}:{env['PATH']}"
    return env


class LocalCluster:
    """`with LocalCluster() as cluster: cluster.start_head(...); cluster.add_node(...)`; stopped on exit."""

    def __init__(self) -> None:
        self.env = cluster_env()
        self.gcs_address: str | None = None
        self.dashboard_url: str | None = None
        self._nodes: list[tuple[subprocess.Popen, Path, Path]] = []  # process, temp dir, log

    def __enter__(self) -> "LocalCluster":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start_head(self, num_cpus: int, resources: dict | None = None, dashboard: bool = True) -> None:
        port, dashboard_port, client_port = free_ports(3)
        args = ["--head", "--port", str(port), "--ray-client-server-port", str(client_port)]
        if dashboard:
            args += ["--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard_port)]
        else:
            args += ["--include-dashboard", "false"]
        self._start(args, num_cpus, resources)
        self.gcs_address = f"127.0.0.1:{port}"
        if dashboard:
            self.dashboard_url = f"http://127.0.0.1:{dashboard_port}"
            self._wait_for_dashboard()

    def add_node(self, num_cpus: int, resources: dict | None = None) -> None:
        assert self.gcs_address, "start the head first"
        self._start(["--address", self.gcs_address], num_cpus, resources)

    def stop(self) -> None:
        for process, temp_dir, _log in reversed(self._nodes):
            _stop_group(process)
            shutil.rmtree(temp_dir, ignore_errors=True)
        self._nodes.clear()

    def logs(self) -> str:
        """The tail of every node's `ray start` output (for assertion messages)."""
        return "\n".join(log.read_text(errors="replace")[-2000:] for _, _, log in self._nodes if log.exists())

    def _start(self, args: list[str], num_cpus: int, resources: dict | None) -> None:
        temp_dir = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
        log = temp_dir.with_suffix(".log")
        ports = free_ports(6)  # reserved together: two components never get one port
        command = [str(BIN / "ray"), "start", "--block", *args, "--node-ip-address", "127.0.0.1",
                   "--num-cpus", str(num_cpus), "--resources", json.dumps(resources or {}),
                   "--object-store-memory", str(200 * 1024 * 1024), "--temp-dir", str(temp_dir),
                   "--disable-usage-stats", "--node-manager-port", str(ports[0]),
                   "--object-manager-port", str(ports[1]), "--metrics-export-port", str(ports[2]),
                   "--dashboard-agent-listen-port", str(ports[3]),
                   "--dashboard-agent-grpc-port", str(ports[4]), "--runtime-env-agent-port", str(ports[5])]
        with open(log, "wb") as out:
            process = subprocess.Popen(command, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        self._nodes.append((process, temp_dir, log))
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while "Ray runtime started" not in log.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"ray start failed ({process.returncode}):\n{tail}")
            time.sleep(0.5)

    def _wait_for_dashboard(self) -> None:
        if not wait_for_http(f"{self.dashboard_url}/api/version", timeout=STARTUP_TIMEOUT_S, interval=1):
            raise RuntimeError(f"the dashboard at {self.dashboard_url} did not come up:\n{self.logs()}")


def _stop_group(process: subprocess.Popen) -> None:
    """SIGTERM the node's process group (`ray start --block` shuts its node down), SIGKILL what is left."""
    for sig, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.killpg(process.pid, 0)  # anything left in the group?
            except ProcessLookupError:
                process.poll()
                return
            process.poll()
            time.sleep(0.5)
