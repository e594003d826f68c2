"""Every YAML under configs/ loads and validates; every config error exits 2 naming the field, no traceback."""

import subprocess
import sys
from pathlib import Path

import pytest

from f3ocus.config import load_config
from f3ocus.config.validate import validate

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS = sorted((ROOT / "configs").glob("experiments/*.yaml")) + sorted((ROOT / "configs").glob("smoke/*.yaml"))


def test_every_experiment_config_validates():
    assert len(EXPERIMENTS) >= 2  # quickstart + smoke at least
    for path in EXPERIMENTS:
        validate(load_config(path))


def test_every_fragment_is_valid_yaml_of_known_sections():
    sweeps = ROOT / "configs" / "sweeps"  # sweep files, checked by tests/unit/sweeps/test_spec.py
    fragments = [p for p in (ROOT / "configs").rglob("*.yaml") if p not in EXPERIMENTS and sweeps not in p.parents]
    assert fragments
    for path in fragments:
        load_config(path)  # a fragment alone must bind to the schema (unknown keys fail)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "f3ocus.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


@pytest.mark.parametrize("overrides, field", [
    (["federation.not_a_key=1"], "federation.not_a_key"),
    (["model.family=gpt5"], "model.family"),
    (["selection.method=best"], "selection.method"),
    (["federation.budgets=99"], "federation.budgets"),
    (["federation.budgets=[1, 99, 1]"], "federation.budgets[1]"),
    (["data.path=/no/such/folder"], "data.path"),
    (["model.checkpoint=/no/such/checkpoint"], "model.checkpoint"),
])
def test_run_rejects_bad_configs_before_ray_starts(overrides, field):
    args = ["run", "configs/smoke/cpu_tiny.yaml"]
    for override in overrides:
        args += ["--set", override]
    result = _cli(*args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"config error: {field}:"), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "ray" not in result.stdout.lower()  # failed before any actor or Ray start


def test_budget_list_length_must_match_clients():
    result = _cli("validate", "configs/smoke/cpu_tiny.yaml", "--set", "federation.budgets=[1, 1]")
    assert result.returncode == 2 and "federation.budgets: lists 2 budgets for 3 clients" in result.stderr
