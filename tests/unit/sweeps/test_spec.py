"""Sweep files: parsing, --set overrides, grid expansion and validation; bad keys exit 2 naming the field."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from f3ocus.cli import main
from f3ocus.config.schema import ConfigError
from f3ocus.sweeps.spec import (describe, load_sweep, override_text, parse_override, trial_config,
                                validate_trials, validation_points)

ROOT = Path(__file__).resolve().parents[3]
SMOKE = ROOT / "configs/sweeps/smoke_2x2x2.yaml"
BASE = ROOT / "configs/smoke/cpu_tiny.yaml"


def _write(tmp_path, data, name="sweep.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"base": str(BASE), **data}))
    return path


def test_smoke_sweep_is_2x2x2_and_every_trial_validates():
    spec = load_sweep(SMOKE)
    assert spec.name == "smoke_2x2x2" and spec.base == BASE
    assert spec.num_trials == 8
    assert {s.key: s.values for s in spec.spaces} == {"selection.solver": ("nsga2", "sa"),
                                                       "model.family": ("llava", "vilt"), "seed": (0, 1)}
    checked = validate_trials(spec)
    assert len(checked) == 8
    families = {(values["model.family"], cfg.model.family, cfg.selection.solver) for values, cfg in checked}
    assert len(families) == 4
    for values, cfg in checked:  # `set:` applies to every trial, space values override it
        assert cfg.federation.rounds == 1 and cfg.selection.method == "f3ocus"
        assert cfg.seed == values["seed"] and cfg.selection.solver == values["selection.solver"]


def test_every_sweep_file_in_configs_validates():
    paths = sorted((ROOT / "configs/sweeps").glob("*.yaml"))
    assert len(paths) >= 2
    for path in paths:
        assert validate_trials(load_sweep(path))


def test_nested_and_dotted_keys_and_scheduler_forms(tmp_path):
    path = _write(tmp_path, {"set": {"federation": {"rounds": 2}, "data.samples_per_client": 30},
                             "grid": {"selection": {"solver": ["nsga2", "sa"]}},
                             "choice": {"federation.lr": [0.001, 0.01]},
                             "loguniform": {"federation.weight_decay": [1e-5, 1e-3]},
                             "scheduler": "asha", "num_samples": 3})
    spec = load_sweep(path)
    assert spec.fixed == {"federation.rounds": 2, "data.samples_per_client": 30}
    assert [(s.kind, s.key) for s in spec.spaces] == [("grid", "selection.solver"), ("choice", "federation.lr"),
                                                      ("loguniform", "federation.weight_decay")]
    assert spec.num_trials == 2 * 3
    assert spec.options.scheduler.type == "asha" and spec.options.scheduler.grace_period == 1
    assert spec.name == "sweep" and spec.experiment == "sweep"
    # grid x choice x both ends of the range
    points = list(validation_points(spec))
    assert len(points) == 2 * 2 * 2
    assert {p["federation.weight_decay"] for p in points} == {1e-5, 1e-3}


def test_set_overrides_address_the_sweep_file(tmp_path):
    path = _write(tmp_path, {"grid": {"seed": [0, 1]}, "scheduler": "asha"})
    spec = load_sweep(path, ["max_concurrent_trials=3", "set.federation.rounds=4", "grid.seed=[0, 1, 2]",
                             "scheduler.grace_period=2", "trial_resources.driver.num_cpus=0.5"])
    assert spec.options.max_concurrent_trials == 3 and spec.fixed == {"federation.rounds": 4}
    assert spec.spaces[0].values == (0, 1, 2)
    assert spec.options.scheduler.type == "asha" and spec.options.scheduler.grace_period == 2
    assert spec.options.trial_resources.driver.num_cpus == 0.5


def test_trial_config_round_trips_values_of_any_type():
    spec = load_sweep(SMOKE)
    cfg = trial_config(spec, {"federation.lr": 1e-5, "federation.budgets": [1, 1, 2], "model.family": "vilt"},
                       run_name="t-1", experiment="e")
    assert cfg.federation.lr == 1e-5 and cfg.federation.budgets == (1, 1, 2)
    assert cfg.tracking.run_name == "t-1" and cfg.tracking.experiment == "e"
    for value in ("1e-5", "yes", 0.5, None, True, [1, 2], {"num_cpus": 1}):
        key, back = parse_override(override_text("k", value))
        assert key == "k" and back == value and type(back) is type(value)
    assert describe({"model.family": "vilt", "seed": 1}) == "model.family=vilt, seed=1"


@pytest.mark.parametrize("data, field", [
    ({"grid": {"seed": [0]}, "shceduler": "asha"}, "shceduler"),
    ({"federation": {"rounds": 2}}, "federation"),
    ({"grid": {"selection.solverr": ["sa"]}}, "grid.selection.solverr"),
    ({"set": {"federation.not_a_key": 1}}, "set.federation.not_a_key"),
    ({"grid": {"model.family": ["llava", "gpt5"]}}, "grid.model.family"),
    ({"choice": {"selection.solver": ["sa", "annealing"]}}, "choice.selection.solver"),
    ({"grid": {"seed": []}}, "grid.seed"),
    ({"grid": {"seed": 3}}, "grid.seed"),
    ({"uniform": {"federation.lr": [0.1, 0.01]}}, "uniform.federation.lr"),
    ({"loguniform": {"federation.lr": [0, 0.01]}}, "loguniform.federation.lr"),
    ({"set": {"seed": 0}, "grid": {"seed": [1, 2]}}, "grid.seed"),
    ({"grid": {"tracking.output_dir": ["a", "b"]}}, "grid.tracking.output_dir"),
    ({"set": {"tracking.experiment": "x"}}, "set.tracking.experiment"),
    ({"scheduler": {"type": "asha", "grace_perod": 2}}, "scheduler.grace_perod"),
    ({"scheduler": "hyperband"}, "scheduler.type"),
    ({"metric": "eval/accuracy"}, "metric"),
    ({"max_concurrent_trials": 0}, "max_concurrent_trials"),
    ({"trial_resources": {"strategy": "PACKED"}}, "trial_resources.strategy"),
    ({"grid": {"federation.engine": ["ray", "lokal"]}}, "grid.federation.engine"),
    ({"grid": {"federation.budgets": [2, 99]}}, "grid.federation.budgets"),
    ({"name": "has space"}, "name"),
])
def test_bad_sweep_files_name_the_field(tmp_path, data, field):
    with pytest.raises(ConfigError) as error:
        validate_trials(load_sweep(_write(tmp_path, data)))
    assert error.value.field == field, error.value


def test_local_engine_trials_and_the_reuse_actors_default(tmp_path):
    # null reuse_actors: on only when every trial runs in its own process (local engine); explicit wins.
    path = _write(tmp_path, {"grid": {"federation.engine": ["ray", "local"]}})
    spec = load_sweep(path)
    checked = validate_trials(spec)
    engines = [cfg.federation.engine for _, cfg in checked]
    assert engines == ["ray", "local"] and spec.options.reuse_actors is None
    assert not spec.reuses_actors([cfg for _, cfg in checked])
    assert spec.reuses_actors([cfg for _, cfg in checked if cfg.federation.engine == "local"])
    assert not load_sweep(path, ["reuse_actors=false"]).reuses_actors([checked[1][1]])
    assert load_sweep(path, ["reuse_actors=true"]).reuses_actors([checked[0][1]])


def test_cross_section_problem_names_the_trial(tmp_path):
    # 9 units in tiny LLaVA, 6 in tiny ViLT: budget 7 only fails for the ViLT trials.
    path = _write(tmp_path, {"set": {"federation.budgets": 7}, "grid": {"model.family": ["llava", "vilt"]}})
    with pytest.raises(ConfigError) as error:
        validate_trials(load_sweep(path))
    assert error.value.field == "federation.budgets" and "model.family=vilt" in str(error.value)


def test_missing_base_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError) as error:
        load_sweep(_write(tmp_path, {"base": "nope.yaml"}))
    assert error.value.field == "base"
    bad = tmp_path / "bad.yaml"
    bad.write_text("grid: [unclosed")
    with pytest.raises(ConfigError) as error:
        load_sweep(bad)
    assert error.value.field == "sweep"
    with pytest.raises(ConfigError) as error:
        load_sweep(SMOKE, ["federation.rounds=3"])
    assert "set.federation" in error.value.message  # points at the right spelling


def test_cli_exits_2_on_a_bad_sweep_before_ray(tmp_path, capsys):
    code = main(["sweep", str(SMOKE), "--set", "grid.selection.solverr=[sa]"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("config error: grid.selection.solverr: unknown key (did you mean 'solver'?)")
    assert main(["sweep", str(SMOKE), "--check"]) == 0
    assert "8 trial(s)" in capsys.readouterr().out


def test_cli_subprocess_no_traceback():
    result = subprocess.run([sys.executable, "-m", "f3ocus.cli", "sweep", str(SMOKE), "--set", "schedular=asha"],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith("config error: schedular: unknown sweep key (did you mean 'scheduler'?)")
    assert "Traceback" not in result.stderr + result.stdout and "ray" not in result.stdout.lower()
