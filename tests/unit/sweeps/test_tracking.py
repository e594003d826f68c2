"""Sweep tracking: the local tracking server, parent/child runs through it, the children's final statuses;
the `f3ocus mlflow-server` command line; a round record as the result a trial reports to Tune."""

import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from f3ocus.cli import main
from f3ocus.federated import records
from f3ocus.sweeps import tracking
from f3ocus.sweeps.trainable import round_result
from tests.unit.federated.record_factory import make_record


@pytest.mark.slow  # starting `mlflow server` takes 10-30 s on 2 busy cores
def test_server_in_front_of_sqlite_parent_and_children(tmp_path):
    store = f"sqlite:///{tmp_path}/mlflow.db"
    experiment_id = tracking.ensure_experiment(store, "sweep", tmp_path / "mlartifacts")
    assert MlflowClient(store).get_experiment(experiment_id).artifact_location.startswith("file://")
    with tracking.MlflowServer(store, tmp_path / "mlartifacts", tmp_path / "server.log") as server:
        sweep_file = tmp_path / "s.yaml"
        sweep_file.write_text("name: s\n")
        parent = tracking.open_parent(server.uri, "sweep", "s-1", tmp_path / "mlartifacts", tags={"f3ocus.sweep": "s"},
                                      params={"sweep.num_samples": 1}, sweep_file=sweep_file,
                                      resolved={"name": "s"}, buffer_path=tmp_path / "buffer.jsonl")
        client = MlflowClient(server.uri)
        done, open_ = (client.create_run(experiment_id, tags={tracking.PARENT_TAG: parent.run_id}) for _ in range(2))
        client.set_terminated(done.info.run_id, "FINISHED")
        statuses = tracking.close_children(server.uri, experiment_id, parent.run_id, lambda run_id: "KILLED",
                                           warn=lambda _: None)
        parent.close()
        process = server._process
    assert server._process is None and process.returncode is not None  # stopped at the end of the block
    assert not (tmp_path / "buffer.jsonl").exists()  # nothing had to be buffered
    assert statuses == {done.info.run_id: "FINISHED", open_.info.run_id: "KILLED"}
    local = MlflowClient(store)  # everything went through the server into the SQLite store
    assert local.get_run(parent.run_id).data.tags[tracking.ROLE_TAG] == "parent"
    assert local.get_run(open_.info.run_id).info.status == "KILLED"
    assert {a.path for a in local.list_artifacts(parent.run_id, "sweep")} == {"sweep/s.yaml", "sweep/resolved.yaml"}


def test_mlflow_server_command(monkeypatch, tmp_path, capsys):
    seen = {}

    class Server:  # what `mlflow-server` runs in the foreground until it exits
        def __init__(self, command, **options):
            seen["command"], seen["options"] = command, options

        def wait(self):
            return 0

    monkeypatch.setattr(subprocess, "Popen", Server)
    assert main(["mlflow-server", "--port", "5123", "--backend-store-uri", f"sqlite:///{tmp_path}/db/m.db",
                 "--artifacts-destination", str(tmp_path / "art")]) == 0
    command = seen["command"]
    assert command[:4] == [sys.executable, "-m", "mlflow", "server"]
    assert command[command.index("--host") + 1] == "127.0.0.1" and command[command.index("--port") + 1] == "5123"
    assert command[command.index("--workers") + 1] == "1" and seen["options"]["start_new_session"]
    assert (tmp_path / "db").is_dir() and (tmp_path / "art").is_dir()
    assert "http://127.0.0.1:5123" in capsys.readouterr().out


def test_round_result_is_flat_with_mlflow_metric_names():
    record = make_record(round=2, accuracy=0.5, loss=1.5, score=0.5, bytes_up=10, bytes_down=20, seconds=3.0,
                         failed_clients=["a"], train_loss=None)
    result = round_result(record, {"mlflow_run_id": "r1", "coordinator_node": "n0", "client_nodes": ["n0", "n1"]})
    # Every record has a score, so every report has eval/score; train/loss only for a round with training.
    assert result == {"round": 2, "eval/acc": 0.5, "eval/loss": 1.5, "comm/bytes_up": 10, "comm/bytes_down": 20,
                      "round/seconds": 3.0, "fed/failed_clients": 1, "mlflow_run_id": "r1",
                      "coordinator_node": "n0", "client_nodes": '["n0", "n1"]', "eval/score": 0.5}
    assert list(result)[-1] == "eval/score"  # after where the run lives, as Tune always had it
    # The values are those MLflow gets for the same names (one mapping, `records.round_metrics`).
    logged = records.round_metrics(record)
    assert all(result[key] == logged[key] for key in result if "/" in key)
