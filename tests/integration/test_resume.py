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


@pytest.mark.parametrize("engine, method", [("local", None), pytest.param("ray", None, marks=[pytest.mark.ray,
                                                                                              pytest.mark.slow]),
                                            ("local", "feddat")])
def test_sigkill_mid_round_then_resume_matches_an_uninterrupted_run(tmp_path, cache_env, engine, method):
    from f3ocus.benchmarks.methods import METHODS

    # The reference, in this process on the local engine (identical to Ray's, see test_local_ray); it also
    # builds the data store the two commands below reuse. FedDAT: its clients' own states must resume too.
    method_overrides = [f"{k}={v}" for k, v in METHODS[method].overrides.items()] if method else []
    reference = run_experiment(load_config("configs/smoke/cpu_tiny.yaml",
                                           method_overrides + _overrides(tmp_path, "reference")), show=lambda _: None)

    # 1. `f3ocus run` in its own process group; SIGKILL the group once round 2 is checkpointed (round 3 runs).
    command = [str(F3OCUS), "run", "configs/smoke/cpu_tiny.yaml"] + (["--method", method] if method else [])
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
    # Every client's own state (FedDAT's personal adapters): byte-identical (same sha256), as are the personal scores
    assert state.client_states == reference_state.client_states and (bool(state.client_states) == bool(method))

    # One MLflow run: every step logged once, finished.
    client = MlflowClient(result["tracking_uri"])
    assert result["mlflow_run_id"] == state.mlflow_run_id
    assert client.get_run(result["mlflow_run_id"]).info.status == "FINISHED"
    accuracy = client.get_metric_history(result["mlflow_run_id"], "eval/acc")
    assert sorted(m.step for m in accuracy) == list(range(ROUNDS + 1))
    assert {m.step: m.value for m in accuracy}[ROUNDS] == reference["final"]["accuracy"]


# ----------------------------------------------------------------------------- resumes that cannot be fooled
CPU_TINY = "configs/smoke/cpu_tiny.yaml"


class Killed(BaseException):
    """Stands for a SIGKILL at a chosen point: nothing after it runs in that process's coordinator."""


def _run_dir_with_checkpoint(tmp_path: Path, overrides: list[str], **identity) -> Path:
    """A run dir as `f3ocus run` leaves it after round 1 (config.yaml + checkpoint), without running it."""
    import yaml

    from f3ocus.config.load import to_dict
    from f3ocus.config.validate import validate

    cfg = load_config(CPU_TINY, overrides)
    run_dir = tmp_path / "runs" / "crafted"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    import torch
    FederationState(1, {"w": torch.ones(3)}, [{"round": 0}, {"round": 1}], None,
                    identity={"config": to_dict(cfg), "units": validate(cfg), **identity}).save(run_dir / CHECKPOINT)
    return run_dir


def _resume(run_dir: Path, *overrides: str) -> list[str]:
    command = ["run", "--resume", str(run_dir)]
    for override in overrides:
        command += ["--set", override]
    return command


def test_refusals_exit_2_with_one_line_before_ray_and_touch_no_checkpoint(tmp_path, cache_env, capsys):
    import hashlib
    import pickle

    import ray

    from f3ocus.cli import main
    from f3ocus.federated.checkpoint import LEGACY_CHECKPOINT

    # Prepare
    run_dir = _run_dir_with_checkpoint(tmp_path, [f"tracking.output_dir={tmp_path / 'runs'}"])
    checkpoint = run_dir / CHECKPOINT
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()

    def refused(command: list[str]) -> str:
        assert main(command) == 2
        out, err = capsys.readouterr()
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        return err

    # A config that changes the computation: every differing key named, and what may change listed.
    err = refused(_resume(run_dir, "seed=1", "model.unit_mode=adapter", "federation.lr=0.01",
                          "federation.rounds=9", "tracking.experiment=elsewhere"))
    assert err.startswith("config error: --resume: ") and str(checkpoint) in err
    assert "seed (0 -> 1)" in err and "model.unit_mode ('layer' -> 'adapter')" in err
    assert "federation.lr (0.001 -> 0.01)" in err and "rounds (" not in err and "experiment (" not in err
    assert "may change only name, federation.rounds" in err and "tracking" in err
    # A non-finite number.
    err = refused(_resume(run_dir, "federation.lr=.inf"))
    assert err == "config error: federation.lr: must be a finite number, got inf\n"
    # Unusable checkpoints: corrupted (no previous one to fall back to), empty, another program's file.
    raw = bytearray(checkpoint.read_bytes())
    raw[-2] ^= 0xFF
    checkpoint.write_bytes(bytes(raw))
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    err = refused(_resume(run_dir))
    assert err == f"checkpoint error: {checkpoint}: checksum mismatch: the file changed after it was written " \
                  f"(corrupted)\n"
    assert hashlib.sha256(checkpoint.read_bytes()).hexdigest() == digest
    checkpoint.write_bytes(b"")
    assert refused(_resume(run_dir)) == f"checkpoint error: {checkpoint}: empty file (0 bytes): the write that " \
                                         f"made it never finished\n"
    assert checkpoint.read_bytes() == b""
    # An old pickle-based checkpoint.pt holding a payload: refused, never unpickled.
    checkpoint.unlink()
    marker = tmp_path / "pwned.txt"
    (run_dir / LEGACY_CHECKPOINT).write_bytes(pickle.dumps(_Planted(marker)))
    err = refused(_resume(run_dir))
    assert err.startswith(f"checkpoint error: {run_dir / LEGACY_CHECKPOINT}: a pickle-based checkpoint of an older")
    assert not marker.exists()
    # All of it before any data was built or Ray started.
    assert not (tmp_path / "runs" / "datasets").exists() and not ray.is_initialized()


class _Planted:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def test_a_resume_with_other_clients_or_answers_is_refused_before_ray(tmp_path, cache_env, capsys):
    import ray

    from f3ocus.cli import main

    # The config matches; the data the checkpoint was trained on does not (another client, another answer set).
    run_dir = _run_dir_with_checkpoint(tmp_path, [f"tracking.output_dir={tmp_path / 'runs'}"],
                                       clients=["bloodmnist", "dermamnist", "octmnist"], answers=["no", "yes"])
    assert main(_resume(run_dir)) == 2
    err = capsys.readouterr().err
    assert err.startswith("config error: --resume: ") and len(err.strip().splitlines()) == 1
    assert "clients (3 -> 3; missing now: ['octmnist']; new: ['pathmnist'])" in err
    assert "answers (2 -> " in err and not ray.is_initialized()


def test_a_kill_between_checkpoint_and_log_neither_loses_nor_doubles_a_round(tmp_path, cache_env, monkeypatch):
    from f3ocus.tracking.mlflow_logger import MlflowLogger

    # Prepare: kill once just before round 1's metrics go out, once just after round 2's went out.
    cfg = load_config(CPU_TINY, _overrides(tmp_path, "killed")[:-1] + ["federation.rounds=3"])
    plan: dict[str, int] = {"before": 1}
    send = MlflowLogger.log_metrics

    def log_metrics(self, metrics, step, timestamp_ms=None):
        if "eval/acc" in metrics:
            [run_dir] = tmp_path.glob("killed-*")
            assert FederationState.load(run_dir / CHECKPOINT).round_idx == step  # the checkpoint went first
            if plan.get("before") == step:
                raise Killed
        send(self, metrics, step, timestamp_ms)
        if "eval/acc" in metrics and plan.get("after") == step:
            raise Killed

    monkeypatch.setattr(MlflowLogger, "log_metrics", log_metrics)
    # Execute
    with pytest.raises(Killed):
        run_experiment(cfg, show=lambda _: None)
    [run_dir] = tmp_path.glob("killed-*")
    plan = {"after": 2}
    with pytest.raises(Killed):
        run_experiment(cfg, show=lambda _: None, resume_dir=run_dir)
    plan = {}
    result = run_experiment(cfg, show=lambda _: None, resume_dir=run_dir)
    # Assert: one MLflow run; every round's metrics exactly once, with the values the result holds
    client = MlflowClient(result["tracking_uri"])
    assert len(client.search_runs([client.get_run(result["mlflow_run_id"]).info.experiment_id])) == 1
    for key, field, rounds in (("eval/acc", "accuracy", range(4)), ("round/seconds", "seconds", range(4))):
        logged = sorted((m.step, m.value) for m in client.get_metric_history(result["mlflow_run_id"], key))
        assert logged == [(r, result["history"][r][field]) for r in rounds], key


def test_a_corrupted_latest_checkpoint_falls_back_and_ends_where_an_uninterrupted_run_ends(tmp_path, cache_env,
                                                                                            capsys):
    from f3ocus.cli import main
    from f3ocus.federated.checkpoint import PREVIOUS_CHECKPOINT, SET_ASIDE_CHECKPOINT

    # Prepare: a finished 2-round run whose latest checkpoint then rots
    cfg = load_config(CPU_TINY, _overrides(tmp_path, "rot")[:-1] + ["federation.rounds=2"])
    reference = run_experiment(cfg, show=lambda _: None)
    run_dir = Path(reference["run_dir"])
    reference_state = FederationState.load(run_dir / CHECKPOINT)
    raw = bytearray((run_dir / CHECKPOINT).read_bytes())
    raw[len(raw) // 2] ^= 0x01
    (run_dir / CHECKPOINT).write_bytes(bytes(raw))
    # Execute
    assert main(["run", "--resume", str(run_dir)]) == 0
    # Assert: said so, redid round 2 from round 1, same numbers, logged once; the rotten file kept aside
    out = capsys.readouterr().out
    assert f"checkpoint: {run_dir / CHECKPOINT} is unusable: checksum mismatch" in out
    assert f"resuming from the previous round's checkpoint {PREVIOUS_CHECKPOINT} (round 1)" in out
    assert "resuming after round 1" in out and "round 2/2:" in out
    result = json.loads((run_dir / "result.json").read_text())
    assert result["final"] == reference["final"]
    state = FederationState.load(run_dir / CHECKPOINT)
    assert state.round_idx == 2 and all(state.tensors[n].equal(t) for n, t in reference_state.tensors.items())
    assert (run_dir / SET_ASIDE_CHECKPOINT).read_bytes() == bytes(raw)
    client = MlflowClient(result["tracking_uri"])
    for key in ("eval/acc", "round/seconds"):
        logged = sorted((m.step, m.value) for m in client.get_metric_history(result["mlflow_run_id"], key))
        assert [step for step, _ in logged] == [0, 1, 2], key
    assert logged[-1][1] == reference["history"][2]["seconds"]  # the first attempt's records stay
    assert FederationState.load(run_dir / CHECKPOINT).last_log is None  # a later resume sends no second copy


def test_mlflow_down_when_the_run_starts_then_replayed_then_resumed(tmp_path, cache_env, monkeypatch, capsys):
    from f3ocus.cli import main
    from tests.integration.conftest import free_port

    # Prepare: a tracking server that is not there
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    down = f"http://127.0.0.1:{free_port()}"
    cfg = load_config(CPU_TINY, _overrides(tmp_path, "late")[:-1] + ["federation.rounds=1",
                                                                     f"tracking.tracking_uri={down}"])
    # Execute: the run goes on
    result = run_experiment(cfg, show=lambda _: None)
    # Assert
    run_dir = Path(result["run_dir"])
    buffer = run_dir / "mlflow_buffer.jsonl"
    local_id = result["mlflow_run_id"]
    assert local_id.startswith("pending-") and result["rounds"] == 1
    assert FederationState.load(run_dir / CHECKPOINT).mlflow_run_id == local_id
    assert json.loads(buffer.read_text().splitlines()[0])["op"] == "create_run"
    assert "cannot create the run at" in capsys.readouterr().err
    # Execute: MLflow is reachable (here: a sqlite store) -> replay creates the run and fills it
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(store)
    experiment_id = client.create_experiment("smoke", artifact_location=(tmp_path / "art").as_uri())
    assert main(["mlflow-replay", str(buffer), "--tracking-uri", store]) == 0
    [run] = client.search_runs([experiment_id])
    assert run.data.tags["f3ocus.local_run_id"] == local_id and run.info.status == "FINISHED"
    assert run.data.params["federation.rounds"] == "1"
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "eval/acc")) == [0, 1]
    # Execute: resume for one more round against the store (tracking keys may change on resume)
    resumed = run_experiment(load_config(CPU_TINY, _overrides(tmp_path, "late")[:-1] + [
        "federation.rounds=2", f"tracking.tracking_uri={store}"]), show=lambda _: None, resume_dir=run_dir)
    # Assert: the same run (found by its local id), every round once
    assert resumed["mlflow_run_id"] == run.info.run_id and len(client.search_runs([experiment_id])) == 1
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "eval/acc")) == [0, 1, 2]
    assert FederationState.load(run_dir / CHECKPOINT).mlflow_run_id == run.info.run_id
