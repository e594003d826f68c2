"""The in-process engine runs the F3OCUS selector with LNTK scores end to end (no Ray)."""

import pytest

from f3ocus.config import load_config
from f3ocus.experiment import run_experiment

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("unit_mode", ["layer", "adapter"])
def test_f3ocus_selection_with_lntk_scores_respects_budgets(tmp_path, unit_mode):
    cfg = load_config("configs/smoke/cpu_tiny.yaml", [
        f"tracking.output_dir={tmp_path}", "tracking.mlflow=false", "federation.engine=local",
        "federation.rounds=1", "data.samples_per_client=30", "selection.method=f3ocus",
        "selection.scorer=lntk", "selection.max_evals=2000", f"model.unit_mode={unit_mode}"])
    result = run_experiment(cfg, show=lambda _: None)
    selected = result["history"][1]["selected"]
    assert [len(selected[c]) for c in ("bloodmnist", "dermamnist", "pathmnist")] == [1, 2, 3]
    assert result["bytes_up_total"] > 0
    assert len(list(tmp_path.glob("*/checkpoint.safetensors"))) == 1


# Every solver of the server step, alternating unit modes (LNTK in both modes is covered above).
@pytest.mark.parametrize("solver,unit_mode", [("nsga2", "layer"), ("abc", "adapter"), ("aco", "layer"),
                                              ("sa", "adapter"), ("mopso", "layer"), ("flow", "adapter"),
                                              ("exact", "layer")])
def test_every_solver_runs_a_round_within_budgets(tmp_path_factory, solver, unit_mode):
    shared = tmp_path_factory.getbasetemp() / "solvers"  # one prepared dataset for all solvers
    cfg = load_config("configs/smoke/cpu_tiny.yaml", [
        f"tracking.output_dir={shared}", "tracking.mlflow=false", "federation.engine=local",
        "federation.rounds=1", "data.samples_per_client=30", "selection.method=f3ocus",
        "selection.scorer=grad_norm", f"selection.solver={solver}", "selection.max_evals=1000",
        "selection.pop_size=20", f"model.unit_mode={unit_mode}", f"tracking.run_name={solver}"])
    result = run_experiment(cfg, show=lambda _: None)
    record = result["history"][1]
    assert [len(record["selected"][c]) for c in ("bloodmnist", "dermamnist", "pathmnist")] == [1, 2, 3]
    assert record["selection"]["front_size"] >= 1
    assert record["selection"]["importance"] > 0


def test_a_run_stopped_by_its_round_callback_ends_killed_in_mlflow(tmp_path):
    # Prepare: a one-round local run with MLflow on; the callback stops it after round 1, as a Tune stop does.
    from mlflow.tracking import MlflowClient

    store = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = load_config("configs/smoke/cpu_tiny.yaml", [
        f"tracking.output_dir={tmp_path}", "tracking.mlflow=true", f"tracking.tracking_uri={store}",
        "federation.engine=local", "federation.rounds=2", "data.samples_per_client=30",
        "selection.method=first_k"])
    seen = []

    def stop_after_round_1(record, run_info):
        seen.append((record.round, run_info["mlflow_run_id"]))
        if record.round == 1:
            raise SystemExit(0)

    # Execute
    with pytest.raises(SystemExit):
        run_experiment(cfg, show=lambda _: None, on_round=stop_after_round_1)

    # Assert: rounds 0 and 1 ran, round 2 did not; the run is closed KILLED, with round 1's checkpoint kept.
    assert [r for r, _ in seen] == [0, 1]
    run = MlflowClient(store).get_run(seen[0][1])
    assert run.info.status == "KILLED"
    assert len(list(tmp_path.glob("*/checkpoint.safetensors"))) == 1
