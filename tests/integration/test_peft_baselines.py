"""The paper's PEFT baselines (a unit mode + the `full` selector) run end to end through the local engine."""

import pytest

from f3ocus.config import load_config
from f3ocus.experiment import run_experiment

pytestmark = pytest.mark.integration


# layer = full fine-tuning, adapter = LoRA on all units; llava's bias mode has units owning 0 tensors.
@pytest.mark.parametrize("unit_mode", ["layer", "adapter", "bottleneck", "layernorm", "bias", "prompt"])
def test_peft_baseline_trains_every_unit_and_uploads_them_all(tmp_path_factory, unit_mode):
    shared = tmp_path_factory.getbasetemp() / "peft"  # one prepared dataset for all modes
    cfg = load_config("configs/smoke/cpu_tiny.yaml", [
        f"tracking.output_dir={shared}", "tracking.mlflow=false", "federation.engine=local",
        "federation.rounds=1", "data.samples_per_client=30", "selection.method=full",
        f"model.unit_mode={unit_mode}", f"tracking.run_name={unit_mode}"])

    result = run_experiment(cfg, show=lambda _: None)

    record = result["history"][1]
    sizes = result["unit_num_parameters"]
    expected_bytes = 4 * (sum(sizes[unit] for unit in result["units"]) + sizes["head"])  # float32 upload
    assert all(selected == result["units"] for selected in record["selected"].values())
    assert set(record["bytes_up_per_client"].values()) == {expected_bytes}
    assert record["failed_clients"] == [] and record["train_loss"] == record["train_loss"]  # not nan
