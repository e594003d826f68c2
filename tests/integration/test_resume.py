"""`f3ocus run` SIGKILLed mid-round, then `f3ocus run --resume RUN_DIR`, ends exactly where an uninterrupted run
with the same config and seed ends: same final and per-round metrics, one MLflow run with every step once."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from f3ocus.config import load_config
from f3ocus.experiment import run_experiment
from f3ocus.federated.state import CHECKPOINT, FederationState

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
F3OCUS = Path(sys.executable).parent / "f3ocus"
ROUNDS = 4


def _overrides(output_dir, run_name, engine="local"):
    return [f"tracking.output_dir={output_dir}", f"tracking.run_name={run_name}", "data.samples_per_client=40",
            f"federation.engine={engine}", f"federation.rounds={ROUNDS}"]


@pytest.mark.parametrize("engine", ["local", pytest.param("ray", marks=[pytest.mark.ray, pytest.mark.slow])])
def test_sigkill_mid_round_then_resume_matches_an_uninterrupted_run(tmp_path, cache_env, engine):
    # The reference, in this process on the local engine (identical to Ray's, see test_local_ray); it also
    # builds the data store the two commands below reuse.
    reference = run_experiment(load_config("configs/smoke/cpu_tiny.yaml", _overrides(tmp_path, "reference")),
                               show=lambda _: None)

    # 1. `f3ocus run` in its own process group; SIGKILL the group once round 2 is checkpointed (round 3 runs).
    command = [str(F3OCUS), "run", "configs/smoke/cpu_tiny.yaml"]
    for override in _overrides(tmp_path, "killed", engine):
        command += ["--set", override]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    driver = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, start_new_session=True)
    output = []
    try:
        for line in driver.stdout:  # the round line is printed after the round's checkpoint is written
            output.append(line)
            if line.startswith(f"round 2/{ROUNDS}:"):
                os.killpg(driver.pid, signal.SIGKILL)
                break
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=60)
    assert driver.returncode == -signal.SIGKILL, "".join(output)
    [run_dir] = tmp_path.glob("killed-*")
    assert FederationState.load(run_dir / CHECKPOINT).round_idx == 2  # killed during round 3
    assert not (run_dir / "result.json").exists()

    # 2. Resume: the run dir's own config, rounds 3 and 4, into the same MLflow run.
    resumed = subprocess.run([str(F3OCUS), "run", "--resume", str(run_dir)], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "resuming after round 2" in resumed.stdout
    assert f"round 3/{ROUNDS}:" in resumed.stdout and f"round 1/{ROUNDS}:" not in resumed.stdout
    result = json.loads((run_dir / "result.json").read_text())

    # Exactly the uninterrupted run's numbers.
    assert result["rounds"] == ROUNDS
    assert result["final"]["accuracy"] == reference["final"]["accuracy"]
    assert result["final"]["per_client"] == reference["final"]["per_client"]
    assert [r["round"] for r in result["history"]] == list(range(ROUNDS + 1))
    for got, want in zip(result["history"], reference["history"]):
        assert (got["accuracy"], got["per_client"], got["selected"]) == (want["accuracy"], want["per_client"],
                                                                          want["selected"]), got["round"]
    state, reference_state = (FederationState.load(Path(d) / CHECKPOINT) for d in (run_dir, reference["run_dir"]))
    assert all(state.tensors[name].equal(tensor) for name, tensor in reference_state.tensors.items())

    # One MLflow run: every step logged once, finished.
    client = MlflowClient(result["tracking_uri"])
    assert result["mlflow_run_id"] == state.mlflow_run_id
    assert client.get_run(result["mlflow_run_id"]).info.status == "FINISHED"
    accuracy = client.get_metric_history(result["mlflow_run_id"], "eval/acc")
    assert sorted(m.step for m in accuracy) == list(range(ROUNDS + 1))
    assert {m.step: m.value for m in accuracy}[ROUNDS] == reference["final"]["accuracy"]
