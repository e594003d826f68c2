"""Config loading: fragments, overrides, types, and field-naming errors (no torch, no Ray)."""

import pytest

from f3ocus.config import ConfigError, flatten, load_config, to_dict


def _write(path, text):
    path.write_text(text)
    return path


def test_fragments_merge_and_overrides_win(tmp_path):
    (tmp_path / "frag").mkdir()
    _write(tmp_path / "frag/model.yaml", "model: {family: vilt, unit_mode: adapter}\n")
    config = _write(tmp_path / "exp.yaml", "defaults: [frag/model.yaml]\nname: x\nmodel: {unit_mode: layer}\n")
    cfg = load_config(config, ["federation.budgets=[1, 2]", "federation.lr=0.01", "seed=3"])
    assert cfg.model.family == "vilt" and cfg.model.unit_mode == "layer"
    assert cfg.federation.budgets == (1, 2) and cfg.federation.lr == 0.01 and cfg.seed == 3


def test_round_trip_through_plain_data(tmp_path):
    cfg = load_config(_write(tmp_path / "e.yaml", "federation: {budgets: 3}\n"))
    flat = flatten(to_dict(cfg))
    assert flat["federation.budgets"] == 3 and flat["model.lora.r"] == 8


@pytest.mark.parametrize("text, overrides, field, words", [
    ("federation: {budget: 2}\n", [], "federation.budget", "did you mean 'budgets'"),
    ("modle: {}\n", [], "modle", "unknown key"),
    ("federation: {rounds: two}\n", [], "federation.rounds", "integer"),
    ("federation: {rounds: 0}\n", [], "federation.rounds", ">= 1"),
    ("federation: {budgets: [2, 0]}\n", [], "federation.budgets[1]", ">= 1"),
    ("model: {unit_mode: blocks}\n", [], "model.unit_mode", "'layer'"),
    ("model: {lora: {r: 0}}\n", [], "model.lora.r", ">= 1"),
    ("data: {partition: {scheme: dirichlet}}\n", [], "data.partition.num_clients", "num_clients"),
    ("", ["federation.worker_resources.num_gpus=-1"], "federation.worker_resources.num_gpus", ">= 0"),
    ("", ["nonsense"], "--set", "key=value"),
    ("- a list\n", [], "config", "mapping"),
])
def test_errors_name_the_field(tmp_path, text, overrides, field, words):
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path / "e.yaml", text), overrides)
    assert caught.value.field == field
    assert words in str(caught.value)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="YAML"):
        load_config(_write(tmp_path / "bad.yaml", "a: [1, 2\n"))


def test_bool_is_not_an_int(tmp_path):
    with pytest.raises(ConfigError, match="integer"):
        load_config(_write(tmp_path / "e.yaml", "seed: true\n"))


@pytest.mark.parametrize("text, overrides, field", [
    ("federation: {lr: .inf}\n", [], "federation.lr"),
    ("federation: {weight_decay: -.inf}\n", [], "federation.weight_decay"),
    ("model: {lora: {dropout: .nan}}\n", [], "model.lora.dropout"),
    ("data: {test_fraction: .NaN}\n", [], "data.test_fraction"),
    ("selection: {decision_weight: 1.0e+999}\n", [], "selection.decision_weight"),  # beyond the float range
    ("", ["federation.worker_resources.num_gpus=.inf"], "federation.worker_resources.num_gpus"),
    ("", ["data.partition.alpha=.nan"], "data.partition.alpha"),
])
def test_a_non_finite_number_anywhere_is_refused_by_name(tmp_path, text, overrides, field):
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path / "e.yaml", text), overrides)
    assert caught.value.field == field and "must be a finite number" in caught.value.message


def test_validate_exits_2_on_a_non_finite_number(tmp_path, capsys):
    from f3ocus.cli import main

    assert main(["validate", str(_write(tmp_path / "e.yaml", "federation: {lr: .inf}\n"))]) == 2
    assert capsys.readouterr().err == "config error: federation.lr: must be a finite number, got inf\n"
