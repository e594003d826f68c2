"""`f3ocus bench study`: the protocol's grid and its statistics (hand-computed values)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math

import numpy as np
import pytest

from f3ocus.benchmarks import grid, study
from f3ocus.config import to_dict
from f3ocus.config.schema import ConfigError

TRACKING = {"experiment": "t", "output_dir": "/tmp/f3ocus-study-test", "mlflow": False}


def _cell(scores: list[float], distinct: list[int] | None = None, units: int = 4) -> dict:
    return {"score_per_round": scores, "score": scores[-1], "majority_score": 0.2,
            "distinct_units_per_round": distinct or [], "num_units": units}


def test_metric_is_the_mean_of_the_last_five_rounds_after_round_zero() -> None:
    cell = _cell([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])

    assert study.cell_metric(cell) == pytest.approx(100 * (0.3 + 0.4 + 0.5 + 0.6 + 0.7) / 5)
    assert study.cell_metric(_cell([0.9, 0.5, 0.7])) == pytest.approx(60.0)  # fewer rounds: all of them


def test_paired_contrast_pairs_by_task_model_seed_and_computes_mean_ci_wilcoxon() -> None:
    cells = {}
    for seed, (a, b) in enumerate([(0.50, 0.40), (0.60, 0.55), (0.45, 0.45), (0.70, 0.50)]):
        cells[f"t1.vilt12.f3ocus.s{seed}"] = _cell([0.0, a])
        cells[f"t1.vilt12.lntk_only.s{seed}"] = _cell([0.0, b])
    cells["t2.vilt12.f3ocus.s0"] = _cell([0.0, 0.9])  # no partner: not a pair

    result = study.paired_contrast(cells, "f3ocus", "lntk_only", resamples=2000)

    assert result["n"] == 4
    assert result["mean"] == pytest.approx((10 + 5 + 0 + 20) / 4)
    assert result["sd"] == pytest.approx(float(np.std([10, 5, 0, 20], ddof=1)))
    assert (result["wins"], result["losses"], result["ties"]) == (3, 0, 1)
    assert 0 <= result["ci"][0] <= result["mean"] <= result["ci"][1] <= 20
    # Signed-rank on the non-zero differences (5, 10, 20): all positive, exact two-sided p = 2 / 2**3.
    assert result["wilcoxon_p"] == pytest.approx(0.25)


def test_paired_contrast_with_no_pairs_is_nan_not_an_error() -> None:
    result = study.paired_contrast({"t1.vilt12.f3ocus.s0": _cell([0, 1])}, "f3ocus", "lntk_only")

    assert result["n"] == 0 and math.isnan(result["mean"])


def test_seeds_needed_meets_the_half_width() -> None:
    # sd 3 points, 4 settings: (1.96 * 3 / 1.5)^2 = 15.37 pairs -> 4 seeds per setting (16 pairs).
    assert study.seeds_needed(3.0, settings=4) == 4
    assert 1.96 * 3.0 / math.sqrt(4 * 4) <= 1.5 < 1.96 * 3.0 / math.sqrt(4 * 3)


def test_coverage_flags_pairs_where_lntk_only_covered_every_unit_half_the_rounds() -> None:
    cells = {"t1.vilt12.lntk_only.s0": _cell([0, 1, 1, 1, 1], distinct=[4, 4, 3, 2], units=4),
             "t1.vilt12.lntk_only.s1": _cell([0, 1, 1, 1, 1], distinct=[4, 3, 3, 2], units=4)}

    cover = study.coverage(cells)

    assert cover["t1.vilt12.s0"]["flagged"] and cover["t1.vilt12.s0"]["full_rounds"] == 2
    assert not cover["t1.vilt12.s1"]["flagged"]
    assert cover["t1.vilt12.s1"]["mean_distinct"] == pytest.approx(3.0)


def test_settings_keep_coverage_scarce() -> None:
    for setting in study.SETTINGS:
        units = study.NUM_UNITS[setting.model]
        assert len(setting.budgets) == 8
        assert max(setting.budgets) <= units // 4 and sum(setting.budgets) == units


def test_study_cells_give_each_row_its_seeds_and_fix_the_protocol() -> None:
    cells = study.study_cells(tracking=TRACKING)
    seeds = {name: {cell.seed for cell in cells if cell.method == name} for name in study.STUDY_METHODS}

    assert seeds["f3ocus"] == seeds["lntk_only"] == set(range(study.SEEDS["primary"]))
    assert seeds["random"] == set(range(study.SEEDS["secondary"]))
    assert seeds["full_ft"] == set(range(study.SEEDS["references"]))
    tiers = [0 if c.method in study.PRIMARY else 1 if c.method in study.REFERENCES else 2 for c in cells]
    assert tiers == sorted(tiers)  # the primary contrast's pairs first: an interrupted study still has them
    cell = next(c for c in cells if c.id == "t1.llava24.f3ocus_pw.s0")
    assert cell.config.selection.decision == "pseudo_weights" and cell.config.model.selectable == ("language",)
    assert cell.config.federation.budgets == (6, 1, 4, 2, 5, 1, 3, 2)
    assert cell.config.data.validation_fraction == 0.2 and cell.config.data.evaluate_on == "test"


def test_choose_cells_score_full_fine_tuning_on_validation_rows_only() -> None:
    cells = study.choose_cells(tracking=TRACKING)

    assert len(cells) == sum(len(study.CANDIDATES[setting.task]) for setting in study.SETTINGS)
    assert {cell.config.data.evaluate_on for cell in cells} == {"validation"}
    assert {cell.config.selection.method for cell in cells} == {"full"}
    t2 = [cell for cell in cells if cell.task == "t2"]
    assert {cell.config.model.checkpoint for cell in t2} == {"foundation-med"}
    assert {cell.config.federation.head_lr for cell in t2} == {None, 0.01}


def test_resumed_grids_keep_cells_finished_before_a_key_with_its_old_default_was_added() -> None:
    cell = study.study_cells(tracking=TRACKING, methods=["lntk_only"], seeds=1)[0]
    changed = dataclasses.replace(cell, config=dataclasses.replace(
        cell.config, federation=dataclasses.replace(cell.config.federation, head_lr=0.01)))
    payload = to_dict(cell.config)
    payload["tracking"] = {}
    for section, key in grid.ADDED_LATER:
        del payload[section][key]

    assert cell.config_hash == hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]
    assert changed.config_hash != cell.config_hash


def test_unknown_study_method_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as error:
        study.study_cells(methods=["f3ocuss"], tracking=TRACKING)
    assert error.value.field == "--methods"


def test_choose_report_picks_per_task_the_best_mean_and_breaks_ties_towards_fewer_epochs() -> None:
    cells = {}
    for setting in study.SETTINGS:
        for index, _ in enumerate(study.CANDIDATES[setting.task]):
            value = 0.5 if index in (0, 2) else 0.4  # candidates 0 and 2 tie (T1: 1 vs 2 epochs; T2: head lr)
            cells[f"{setting.task}.{setting.model}.c{index}.s0"] = _cell([0.0] + [value] * 5)

    report = study.choose_report(cells)

    assert report["picks"]["t1"]["candidate"] == 0 and report["picks"]["t2"]["candidate"] == 0
    # Within 0.1 point of the best is a tie: fewer epochs first, then the smaller learning rate.
    cells.update({key: _cell([0.0] + [0.5009] * 5) for key in cells if ".c1." in key})
    assert study.choose_report(cells)["picks"]["t1"]["candidate"] == 0
    assert report["picks"]["t1"]["margin"] == pytest.approx([30.0, 30.0])


def test_choose_report_leaves_out_a_setting_below_the_bar_under_every_candidate() -> None:
    settings = (*study.SETTINGS, study.Setting("t2", "vilt12", (2, 1, 3, 1, 1, 2, 1, 1)))
    cells = {}
    for setting in settings:
        for index, _ in enumerate(study.CANDIDATES[setting.task]):
            # t2.vilt12 stays at the majority (20) under every candidate; t2.llava24 is best under candidate 3
            value = 0.2 if setting.model == "vilt12" else 0.4 + 0.05 * index
            cells[f"{setting.task}.{setting.model}.c{index}.s0"] = _cell([0.0] + [value] * 5)

    report = study.choose_report(cells, settings)

    assert report["picks"]["t2"]["candidate"] == 3
    assert report["picks"]["t2"]["mean"] == pytest.approx(55.0)  # the mean over the passing setting only
    assert "left out of the study: t2.vilt12" in report["markdown"]


def test_report_and_figures_from_finished_cells(tmp_path) -> None:
    rng = np.random.default_rng(0)
    cells = {}
    for setting in study.SETTINGS[:2]:
        for seed in range(3):
            for name in ("f3ocus", "lntk_only", "random", "full_ft"):
                curve = [0.1] + list(0.3 + 0.02 * np.arange(6) + rng.normal(0, 0.01, 6))
                cells[f"{setting.task}.{setting.model}.{name}.s{seed}"] = _cell(
                    curve, distinct=[5, 6, 5, 6, 6, 6], units=study.NUM_UNITS[setting.model])

    report = study.study_report(cells)
    paths = study.write_figures(cells, tmp_path)

    assert report["contrasts"][0]["n"] == 6 and "F3OCUS − LNTK-only | 6 |" in report["markdown"]
    assert "*Majority answer, no training* | 20.0 | 20.0 |" in report["markdown"]
    assert not any(info["flagged"] for info in report["coverage"].values())
    # The primary contrast per setting: 3 pairs each, and their pooled mean is the overall mean
    by_setting = report["primary_by_setting"]
    assert [by_setting[f"{s.task}.{s.model}"]["n"] for s in study.SETTINGS] == [3, 3, 0]
    pooled = (by_setting["t1.llava24"]["mean"] + by_setting["t1.vilt12"]["mean"]) / 2
    assert pooled == pytest.approx(report["contrasts"][0]["mean"])
    assert "within each setting: t1.llava24 " in report["markdown"]
    assert [path.name for path in paths] == ["study_rounds.png", "study_paired.png"]
    assert all(path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for path in paths)
