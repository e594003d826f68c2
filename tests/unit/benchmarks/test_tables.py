"""Tables A and B of `f3ocus bench paper` against hand-computed values."""

import math

import pytest

from f3ocus.benchmarks import tables
from f3ocus.benchmarks.grid import PROFILES
from f3ocus.benchmarks.methods import METHODS, PEFT_METHODS, SELECTION_METHODS


def _cell(method, task, model, seed, score, **extra):
    return {"method": method, "task": task, "model": model, "seed": seed, "status": "ok", "score": score, **extra}


def test_mean_std_is_sample_std_and_zero_for_one_value():
    assert tables.mean_std([0.5]) == (0.5, 0.0)
    mean, std = tables.mean_std([1.0, 2.0, 4.0])
    assert mean == pytest.approx(7 / 3)
    assert std == pytest.approx(math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2))
    assert all(math.isnan(value) for value in tables.mean_std([]))


def test_table_a_means_stds_and_row_mean_by_hand():
    cells = [_cell("f3ocus", "t1", "vilt", 0, 0.60, majority_score=0.2), _cell("f3ocus", "t1", "vilt", 1, 0.70,
                                                                           majority_score=0.3),
             _cell("f3ocus", "t4", "vilt", 0, 0.40), _cell("f3ocus", "t4", "vilt", 1, 0.50),
             _cell("snip", "t1", "vilt", 0, 0.55), {**_cell("snip", "t4", "vilt", 0, 0.9), "status": "failed"}]
    table = tables.table_a(cells, ["f3ocus", "snip"], [("t1", "vilt"), ("t4", "vilt")])
    assert table["columns"] == ["T1 vilt", "T4 vilt"]
    f3ocus, snip = table["rows"]
    assert f3ocus["cells"][0]["mean"] == pytest.approx(65.0)
    assert f3ocus["cells"][0]["std"] == pytest.approx(math.sqrt(50.0))  # (5^2 + 5^2) / (2 - 1)
    assert f3ocus["row_mean"] == pytest.approx((65.0 + 45.0) / 2)
    assert snip["cells"][0] == {"mean": pytest.approx(55.0), "std": 0.0, "n": 1}
    assert snip["cells"][1]["n"] == 0 and math.isnan(snip["row_mean"])  # a failed cell is not a result
    assert tables.ranking(table) == [("F3OCUS", pytest.approx(55.0))]  # SNIP's row is incomplete
    text = tables.markdown_a(table)
    assert "| F3OCUS | 65.0 ± 7.1 | 45.0 ± 7.1 | 55.0 |" in text
    assert "| SNIP | 55.0 ± 0.0 | – | – |" in text
    assert table["majority"][0] == pytest.approx(25.0)  # (0.2 + 0.3) / 2 over seeds
    assert "| *Majority answer, no training* | 25.0 | – | – |" in text


def test_table_b_averages_efficiency_and_per_client_scores_over_seeds():
    runs = [_cell("lora_all", "t1", "blip", seed, score, per_client={"a": a, "b": b},
                  upload_mbit_per_client_round=up, gflop_per_client_round=flop, trainable_params_per_client_round=p)
            for seed, score, a, b, up, flop, p in [(0, 0.5, 0.4, 0.6, 2.0, 1.0, 1000.0),
                                                   (1, 0.7, 0.6, 0.8, 4.0, 3.0, 3000.0)]]
    table = tables.table_b(runs, ["full_ft", "lora_all"], "t1", "blip")
    assert table["clients"] == ["a", "b"]
    (row,) = table["rows"]  # full_ft has no cell: no row
    assert row["upload_mbit"] == pytest.approx(3.0) and row["gflop"] == pytest.approx(2.0)
    assert row["trainable_params"] == pytest.approx(2000.0)
    assert row["per_client"] == {"a": pytest.approx(50.0), "b": pytest.approx(70.0)}
    assert row["score"][0] == pytest.approx(60.0)
    assert "| LoRA (all units) | 3.000 | 2.000 | 2,000 | 50.0 | 70.0 | 60.0 ± 14.1 | – |" in tables.markdown_b(table)


def test_table_b_gives_the_own_state_score_of_methods_with_client_state():
    runs = [_cell("feddat", "t1", "blip", seed, 0.5, per_client={"a": 0.5}, upload_mbit_per_client_round=1.0,
                  gflop_per_client_round=2.0, trainable_params_per_client_round=10.0, personal_score=own)
            for seed, own in [(0, 0.6), (1, 0.8)]]
    table = tables.table_b(runs, ["feddat"], "t1", "blip")
    assert table["rows"][0]["personal_score"] == (pytest.approx(70.0), pytest.approx(14.142, rel=1e-3))
    assert "| FedDAT | 1.000 | 2.000 | 10 | 50.0 | 50.0 ± 0.0 | 70.0 ± 14.1 |" in tables.markdown_b(table)


def test_method_table_covers_the_papers_baselines_and_profiles_name_known_methods():
    labels = {method.label for method in SELECTION_METHODS}
    for name in ("Federated Dropout", "Last-K", "Magnitude", "FishMask", "GradFlow", "GraSP", "SNIP", "RGN",
                 "SynFlow", "FedSelect", "SPT", "LNTK-only", "Random", "F3OCUS"):
        assert name in labels
    modes = {method.overrides["model.unit_mode"] for method in PEFT_METHODS}
    assert modes == {"layer", "bottleneck", "adapter", "layernorm", "bias", "prompt", "dual_adapter"}
    assert "FedDAT" in {method.label for method in PEFT_METHODS}
    for profile in PROFILES.values():
        assert set(profile.methods) <= set(METHODS)


@pytest.mark.parametrize("method,expected", [
    ("snip", "layer mode), task easy_vqa_domains, selection top_k (scorer snip)"),
    ("lora_all", "adapter mode), task easy_vqa_domains, selection full"),
    ("feddat", "dual_adapter mode), task easy_vqa_domains, selection full"),
])
def test_run_and_validate_take_a_paper_method_by_name(capsys, method, expected):
    from f3ocus.cli import main

    assert main(["validate", "configs/tasks/t1_domain.yaml", "--method", method, "--set", "model.family=vilt"]) == 0
    assert expected in capsys.readouterr().out
    assert main(["validate", "configs/tasks/t1_domain.yaml", "--method", "nosuch"]) == 2
    assert "config error: --method: unknown method 'nosuch'" in capsys.readouterr().err


@pytest.mark.parametrize("overrides, field", [
    (["--method", "feddat", "--set", "model.unit_mode=bottleneck"], "config error: model.unit_mode: must be 'dual_adapter'"),
    (["--set", "model.unit_mode=dual_adapter"], "config error: federation.local_objective: must be 'feddat'"),
    (["--method", "feddat", "--set", "federation.distill_temperature=0"],
     "config error: federation.distill_temperature: must be > 0"),
])
def test_feddat_and_the_dual_adapter_mode_go_together(capsys, overrides, field):
    from f3ocus.cli import main

    assert main(["validate", "configs/tasks/t1_domain.yaml", "--set", "model.family=vilt", *overrides]) == 2
    err = capsys.readouterr().err
    assert err.startswith(field) and len(err.strip().splitlines()) == 1 and "Traceback" not in err
