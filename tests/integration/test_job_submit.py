"""A real local Ray cluster (`ray start --head` on 127.0.0.1) receives ray_jobs/run_experiment.py through
`ray job submit`; afterwards the test finds the MLflow run and its metrics. The cluster is always stopped."""

import os
import shutil
import subprocess
import tempfile
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.integration.conftest import free_ports

pytestmark = [pytest.mark.ray, pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.fixture
def ray_cluster():
    port, dashboard = free_ports(2)
    # Ray's unix sockets live under --temp-dir and must fit in 107 bytes: pytest's tmp_path is too long.
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    # The job's `python` is resolved on the cluster's PATH: make it this venv's interpreter.
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    env["PATH"] = f"{BIN}:{env['PATH']}"
    start = [str(BIN / "ray"), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
             "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard), "--num-cpus", "2",
             "--temp-dir", temp_dir, "--disable-usage-stats"]
    started = subprocess.run(start, env=env, capture_output=True, text=True, timeout=180)
    try:
        assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]
        yield f"http://127.0.0.1:{dashboard}"
    finally:
        subprocess.run([str(BIN / "ray"), "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_job_submit_runs_an_experiment_and_logs_to_mlflow(cache_env, ray_cluster, tmp_path):
    output = tmp_path / "runs"
    submit = [str(BIN / "ray"), "job", "submit", "--address", ray_cluster, "--working-dir", str(ROOT),
              "--runtime-env-json", '{"excludes": [".venv", "runs", ".git", "tests"]}', "--",
              "python", "ray_jobs/run_experiment.py", "configs/smoke/cpu_tiny.yaml",
              "--set", f"tracking.output_dir={output}", "--set", "data.samples_per_client=40",
              "--set", "federation.rounds=1"]
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    job = subprocess.run(submit, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    assert "MLflow run id:" in job.stdout

    client = MlflowClient(f"sqlite:///{output}/mlflow.db")
    [experiment] = [e for e in client.search_experiments() if e.name == "smoke"]
    [run] = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "eval/acc")] == [0, 1]
    assert run.info.run_id in job.stdout
