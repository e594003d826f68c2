"""FedDAT (`--method feddat`) end to end: on the local engine and on a real Ray instance (2 client actors), the
same numbers; personal and global scores per client in result.json and MLflow; client state on disk, counted
apart from the upload. The resume-after-SIGKILL case runs in test_resume.py (parametrised with feddat)."""

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from f3ocus.benchmarks.methods import METHODS
from f3ocus.config import load_config
from f3ocus.experiment import run_experiment
from f3ocus.federated.client_state import CLIENT_STATE_DIR, client_folder
from f3ocus.federated.state import CHECKPOINT, FederationState

pytestmark = pytest.mark.integration

FEDDAT = [f"{key}={value}" for key, value in METHODS["feddat"].overrides.items()]


def _config(tmp_path, engine):
    return load_config("configs/smoke/cpu_tiny.yaml", FEDDAT + [
        f"tracking.output_dir={tmp_path}", f"tracking.run_name=feddat-{engine}", "data.samples_per_client=30",
        f"federation.engine={engine}"])


def _check(result):
    clients = ("bloodmnist", "dermamnist", "pathmnist")
    final = result["final"]
    assert set(final["personal"]) == {"accuracy", "loss", "score"}
    for client in clients:  # each client scored with the global model and with its own state
        assert set(final["per_client"][client]["personal"]) == {"accuracy", "loss", "score"}
    trained = result["history"][1]
    assert trained["state_bytes"] > 0 and set(trained["state_bytes_up_per_client"]) == set(clients)
    state_size = trained["state_bytes_up_per_client"]["pathmnist"]
    # full selection: every unit's shared adapter + head goes up; the personal adapters (the same shape) never do
    sizes = result["unit_num_parameters"]
    assert trained["bytes_up_per_client"]["pathmnist"] == 4 * (sum(sizes[u] for u in result["units"]) + sizes["head"])
    assert state_size == 4 * sum(sizes[u] for u in result["units"])
    state = FederationState.load(f"{result['run_dir']}/{CHECKPOINT}")
    assert sorted(state.client_states) == list(clients) and all(r == 2 for r, _ in state.client_states.values())
    for client in clients:
        assert (Path(result["run_dir"]) / CLIENT_STATE_DIR / client_folder(client) / "000002.safetensors").is_file()
    run = MlflowClient(result["tracking_uri"]).get_run(result["mlflow_run_id"])
    for key in ("eval/personal_acc", "eval/personal_score", "comm/state_bytes", "client/pathmnist/personal_acc",
                "client/pathmnist/personal_score", "client/pathmnist/acc"):
        assert key in run.data.metrics, key
    assert run.data.metrics["comm/state_bytes"] == result["history"][-1]["state_bytes"]
    return state


@pytest.mark.ray
def test_feddat_on_the_local_engine_and_on_ray_gives_the_same_numbers(tmp_path, cache_env):
    local = run_experiment(_config(tmp_path, "local"), show=lambda _: None)
    local_state = _check(local)
    ray = run_experiment(_config(tmp_path, "ray"), show=lambda _: None)
    ray_state = _check(ray)
    assert ray["final"] == local["final"]  # global and personal scores alike
    assert {c: digest for c, (_, digest) in ray_state.client_states.items()} == \
        {c: digest for c, (_, digest) in local_state.client_states.items()}  # byte-identical personal adapters
