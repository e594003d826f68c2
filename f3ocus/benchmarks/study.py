"""`f3ocus bench study`: the comparison that can tell layer-selection methods apart (protocol: docs/STUDY.md).

    f3ocus bench study --choose [--jobs 2]        # step 1: the schedule, chosen on validation rows by full FT
    f3ocus bench study [--seeds K] [--methods a,b] [--jobs 2] [--figures-dir docs/study]   # step 2: the study

What is fixed here, before any result is seen (docs/STUDY.md says why):
- the settings: two task settings (T1: easy-vqa under 8 image-domain shifts; T2: 8 generated MedMNIST
  modalities) x two deep tiny presets (`llava24`: 24 selectable language blocks, vision tower and connector
  frozen; `vilt12`: 12 fusion blocks), 8 clients each, heterogeneous budgets with no budget above L/4 and
  sum of budgets = L, so client-only top-k cannot train every unit unless the clients' choices are disjoint;
- the rows: F3OCUS (LNTK + NSGA-II, knee point; and the pseudo-weight point, declared as its own row),
  LNTK-only, Random, Federated Dropout, Last-K, FishMask; full fine-tuning and LoRA on all units as references;
- the metric (mean score of the last 5 rounds; the final round beside it), the contrasts and their statistics
  (paired over (task, model, seed): mean difference, bootstrap 95 % CI, Wilcoxon signed-rank p);
- `--choose`: the schedule candidates and the rule that picks one (full fine-tuning's last-5 validation
  accuracy, mean over the four settings; validation rows are carved from the training rows, test rows unseen).

Each cell is an ordinary experiment run by the same grid runner as `f3ocus bench paper`: one Ray Tune trial
per cell, `--jobs` at a time (`f3ocus.benchmarks.tune_grid`; resumable: finished cells with the same config are
skipped; MLflow parent run + one child run per cell).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from f3ocus.benchmarks.grid import Cell
from f3ocus.benchmarks.methods import METHODS, Method
from f3ocus.config.load import load_config
from f3ocus.config.schema import ConfigError

STUDY_DIR = Path(__file__).resolve().parents[2] / "configs" / "study"
EXPERIMENT = "bench-study"
LAST_ROUNDS = 5  # the metric: mean score over the last 5 rounds
BAR = 15.0  # full fine-tuning must end this many points above the majority answer (validation, --choose)


@dataclass(frozen=True)
class Setting:
    """One task x model column of the study, with its per-client budgets (clients in sorted order)."""

    task: str
    model: str
    budgets: tuple[int, ...]


TASK_CONFIGS: dict[str, Path] = {"t1": STUDY_DIR / "t1_domain8.yaml", "t2": STUDY_DIR / "t2_modality.yaml"}
# Units offered to the selectors: the LLM blocks of the LLaVA-style preset (as the paper selects among
# LLaVA-1.5's 32 LLM blocks), every block of ViLT.
SELECTABLE: dict[str, list[str] | None] = {"llava24": ["language"], "vilt12": None}
NUM_UNITS: dict[str, int] = {"llava24": 24, "vilt12": 12}
# Eight clients each; no budget above L/4; sum = L. T1 clients (sorted): blur, dark, grain, invert, low_contrast,
# pixelate, salt_pepper, tint. T2 clients (sorted): ct, dermatoscopy, fundus, microscopy, oct, pathology,
# ultrasound, x-ray. Budgets are spread over tiers and shuffled against the client order.
SETTINGS: tuple[Setting, ...] = (
    Setting("t1", "llava24", (6, 1, 4, 2, 5, 1, 3, 2)),
    Setting("t1", "vilt12", (3, 1, 2, 1, 2, 1, 1, 1)),
    Setting("t2", "llava24", (4, 2, 6, 3, 1, 5, 2, 1)),
    # Setting("t2", "vilt12", (2, 1, 3, 1, 1, 2, 1, 1)) was declared, and left out by the protocol's bar: full
    # fine-tuning stays below the majority answer under every T2 candidate (docs/STUDY.md, "The medical setting").
)

F3OCUS_PW = Method("f3ocus_pw", "F3OCUS (pseudo-weight 0.5)", "selection",
                   {**METHODS["f3ocus"].overrides, "selection.decision": "pseudo_weights",
                    "selection.decision_weight": 0.5})
STUDY_METHODS: dict[str, Method] = {
    "f3ocus": METHODS["f3ocus"], "lntk_only": METHODS["lntk_only"], F3OCUS_PW.name: F3OCUS_PW,
    **{name: METHODS[name] for name in ("random", "fd", "last_k", "fishmask", "full_ft", "lora_all")}}
# Seeds per row: the primary contrast's two rows get the seeds sized from the pilot (docs/STUDY.md), the
# secondary rows and the references fewer (they answer questions that need less precision).
PRIMARY = ("f3ocus", "lntk_only")
SECONDARY = ("f3ocus_pw", "random", "fd", "last_k", "fishmask")
REFERENCES = ("full_ft", "lora_all")
SEEDS = {"primary": 18, "secondary": 3, "references": 4}  # docs/STUDY.md, "Seeds" and "Changes after results"
CONTRASTS: tuple[tuple[str, str], ...] = (
    ("f3ocus", "lntk_only"),  # primary: what the server step adds
    ("f3ocus_pw", "lntk_only"), ("lntk_only", "random"), ("lntk_only", "fd"), ("lntk_only", "last_k"),
    ("lntk_only", "fishmask"))

# The foundation each task setting fine-tunes (docs/STUDY.md, "Settings"): T2's adds medical-style VQA on
# MedMNIST modalities that no T2 client holds (`f3ocus.models.foundation`, "medical" corpus).
CHECKPOINTS: dict[str, str] = {"t1": "foundation", "t2": "foundation-med"}
# The schedule of each task setting, chosen by `--choose` on validation rows (docs/STUDY.md, "Schedule").
SCHEDULE: dict[str, Any] = {"federation.rounds": 12, "federation.local_epochs": 1, "federation.lr": 0.001,
                            "federation.batch_size": 16, "selection.score_batch_size": 32}
# T2: `--choose --tasks t2` picked lr 2e-3 with the head at 1e-2, and 16 rounds (the fewest of 16, 20 that pass).
SCHEDULES: dict[str, dict[str, Any]] = {
    "t1": SCHEDULE,
    "t2": {**SCHEDULE, "federation.rounds": 16, "federation.lr": 0.002, "federation.head_lr": 0.01}}
# `--choose`: per task, candidates that differ in learning rate and local epochs (T1) or learning rate and the
# answer head's learning rate (T2: its answers are new to the foundation, so its head starts from scratch);
# rounds, rows and batch stay as in SCHEDULE.
CANDIDATES: dict[str, tuple[dict[str, Any], ...]] = {
    "t1": tuple({"federation.lr": lr, "federation.local_epochs": epochs} for epochs in (1, 2) for lr in (0.001, 0.002)),
    "t2": tuple({"federation.lr": lr, "federation.head_lr": head_lr}
                for head_lr in (None, 0.01) for lr in (0.001, 0.002)),
}


# ------------------------------------------------------------------------------------------ the grid
def study_cells(*, seeds: int | None = None, methods: Sequence[str] | None = None,
                settings: Sequence[Setting] = SETTINGS, schedules: Mapping[str, Mapping[str, Any]] = SCHEDULES,
                tracking: Mapping[str, Any], overrides: Sequence[str] = ()) -> list[Cell]:
    """Every cell of the study: settings x rows x each row's seeds (`seeds` caps them all).

    Order: the primary rows, then the references (they show what training every unit reaches), then the
    secondary rows; within each, seed, then setting, then method. So the primary contrast's pairs come first,
    and an interrupted study holds whole seeds of them.
    """
    names = list(methods or STUDY_METHODS)
    unknown = [name for name in names if name not in STUDY_METHODS]
    if unknown:
        raise ConfigError("--methods", f"unknown study method(s) {unknown}; known: {', '.join(STUDY_METHODS)}")
    tier_seeds = {name: SEEDS["primary"] if name in PRIMARY else SEEDS["secondary"] if name in SECONDARY
                  else SEEDS["references"] for name in names}
    if seeds is not None:
        tier_seeds = {name: seeds for name in names}
    cells = []
    for tier in (PRIMARY, REFERENCES, SECONDARY):
        rows = [name for name in names if name in tier]
        for seed in range(max((tier_seeds[name] for name in rows), default=0)):
            for setting in settings:
                for name in rows:
                    if seed < tier_seeds[name]:
                        cells.append(_cell(setting, STUDY_METHODS[name], seed, schedules[setting.task], tracking,
                                           overrides, cell_id=f"{setting.task}.{setting.model}.{name}.s{seed}"))
    return cells


def choose_cells(*, tracking: Mapping[str, Any], settings: Sequence[Setting] = SETTINGS,
                 candidates: Mapping[str, Sequence[Mapping[str, Any]]] = CANDIDATES,
                 overrides: Sequence[str] = ()) -> list[Cell]:
    """Full fine-tuning under every schedule candidate of its task, seed 0, scored on the validation rows."""
    cells = []
    for setting in settings:
        for index, candidate in enumerate(candidates[setting.task]):
            cells.append(_cell(setting, METHODS["full_ft"], 0, {**SCHEDULE, **candidate}, tracking,
                               ["data.evaluate_on=validation", *overrides],
                               cell_id=f"{setting.task}.{setting.model}.c{index}.s0"))
    return cells


def _cell(setting: Setting, method: Method, seed: int, schedule: Mapping[str, Any], tracking: Mapping[str, Any],
          overrides: Sequence[str], *, cell_id: str) -> Cell:
    values: dict[str, Any] = {"model.family": setting.model, "model.checkpoint": CHECKPOINTS[setting.task], "seed": seed,
                              "model.selectable": SELECTABLE[setting.model],
                              "federation.budgets": list(setting.budgets),
                              **schedule, **method.overrides,
                              **{f"tracking.{key}": value for key, value in tracking.items()},
                              "tracking.run_name": cell_id}
    pairs = [f"{key}={value if isinstance(value, str) else json.dumps(value)}" for key, value in values.items()]
    try:
        config = load_config(TASK_CONFIGS[setting.task], pairs + list(overrides))
    except ConfigError as error:
        raise ConfigError(error.field, f"{error.message} (cell {cell_id})") from None
    return _StudyCell(setting.task, setting.model, method.name, seed, config, cell_id)


@dataclass(frozen=True)
class _StudyCell(Cell):
    """A grid cell whose id is given (choose cells carry their candidate index)."""

    given_id: str = ""

    @property
    def id(self) -> str:
        return self.given_id


# ------------------------------------------------------------------------------------------ statistics
def cell_metric(cell: Mapping[str, Any]) -> float:
    """Mean score of the last `LAST_ROUNDS` rounds (rounds >= 1), x100."""
    scores = cell["score_per_round"][1:]
    return 100.0 * float(np.mean(scores[-LAST_ROUNDS:]))


def paired_contrast(cells: Mapping[str, Mapping[str, Any]], a: str, b: str, *, metric: Callable = cell_metric,
                    keep: Callable[[str], bool] = lambda key: True, resamples: int = 10_000,
                    seed: int = 0) -> dict[str, Any]:
    """a - b over the (task, model, seed) pairs where both cells finished.

    Returns:
        {"a", "b", "n", "mean", "sd", "ci": [lo, hi] (percentile bootstrap of the mean, 95 %), "half_width",
        "wilcoxon_p" (two-sided signed-rank; zero differences dropped, p = 1 when all are zero), "wins",
        "losses", "ties", "diffs": {pair key: difference}}; n = 0 gives nan figures.
    """
    from scipy.stats import wilcoxon

    diffs: dict[str, float] = {}
    for key, cell in cells.items():
        task, model, method, seed_tag = key.split(".")
        pair = f"{task}.{model}.{seed_tag}"
        other = cells.get(f"{task}.{model}.{b}.{seed_tag}")
        if method == a and other is not None and keep(pair):
            diffs[pair] = metric(cell) - metric(other)
    values = np.asarray(list(diffs.values()), dtype=np.float64)
    result: dict[str, Any] = {"a": a, "b": b, "n": int(values.size), "diffs": diffs,
                              "wins": int((values > 0).sum()), "losses": int((values < 0).sum()),
                              "ties": int((values == 0).sum())}
    if values.size == 0:
        return {**result, "mean": math.nan, "sd": math.nan, "ci": [math.nan, math.nan], "half_width": math.nan,
                "wilcoxon_p": math.nan}
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(resamples, values.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    nonzero = values[values != 0]
    p = float(wilcoxon(nonzero).pvalue) if nonzero.size else 1.0
    return {**result, "mean": float(values.mean()), "sd": float(values.std(ddof=1)) if values.size > 1 else 0.0,
            "ci": [float(low), float(high)], "half_width": float((high - low) / 2), "wilcoxon_p": p}


def seeds_needed(sd: float, settings: int, half_width: float = 1.5) -> int:
    """Seeds per setting so that a paired mean over settings x seeds has a normal 95 % CI of `half_width`."""
    return max(1, math.ceil((1.96 * sd / half_width) ** 2 / settings))


def coverage(cells: Mapping[str, Mapping[str, Any]], method: str = "lntk_only") -> dict[str, Any]:
    """Per (task, model, seed): the mean distinct units `method` trained per round, and whether it covered every
    unit in at least half of the rounds (such a pair cannot test the server step: it is flagged)."""
    out = {}
    for key, cell in cells.items():
        task, model, name, seed_tag = key.split(".")
        if name != method or not cell.get("distinct_units_per_round"):
            continue
        distinct = cell["distinct_units_per_round"]
        full = sum(count >= cell["num_units"] for count in distinct)
        out[f"{task}.{model}.{seed_tag}"] = {"mean_distinct": float(np.mean(distinct)), "units": cell["num_units"],
                                             "full_rounds": full, "rounds": len(distinct),
                                             "flagged": full >= len(distinct) / 2}
    return out


def run_study(*, choose: bool = False, seeds: int | None = None, methods: Sequence[str] | None = None,
              jobs: int = 1, output_dir: Path = Path("runs"), tracking_uri: str | None = None,
              figures_dir: Path | None = None, overrides: Sequence[str] = (), settings: Sequence[Setting] = SETTINGS,
              show: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume) the study or its schedule choice; return {"cells", "failed", "report", "dir"}."""
    from f3ocus.benchmarks import paper
    from f3ocus.benchmarks.tune_grid import run_grid
    from f3ocus.prepared import OFFLINE_ENV
    from f3ocus.tracking.mlflow_logger import resolve_tracking_uri

    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    output_dir = output_dir.expanduser().resolve()
    profile = "choose" if choose else "main"
    bench_dir = output_dir / "bench" / f"study-{profile}"
    store_uri = tracking_uri or resolve_tracking_uri(None, output_dir)
    tracking = {"experiment": EXPERIMENT, "output_dir": str(bench_dir / "runs")}
    cells = (choose_cells(tracking=tracking, settings=settings, overrides=overrides) if choose else
             study_cells(seeds=seeds, methods=methods, settings=settings, tracking=tracking, overrides=overrides))
    paper._validate(cells, show)
    done = {cell.id: result for cell in cells if (result := paper._finished(bench_dir, cell)) is not None}
    pending = [cell for cell in cells if cell.id not in done]
    show(f"bench study ({profile}): {len(cells)} cells, {len(done)} already done, {len(pending)} to run; {bench_dir}")
    bench_dir.mkdir(parents=True, exist_ok=True)
    failed: list[str] = []
    with contextlib.ExitStack() as stack:
        uri = paper._cell_tracking_uri(stack, store_uri, EXPERIMENT, output_dir, bench_dir,
                                       concurrent=jobs > 1 and len(pending) > 1)
        parent = paper._open_parent(uri, EXPERIMENT, bench_dir, output_dir, profile, cells, bench="study")

        def on_cell(summary: dict[str, Any], index: int, total: int) -> None:
            done[summary["cell"]] = summary
            status = (f"last-5 {cell_metric(summary):.1f}" if summary["status"] == "ok"
                      else f"FAILED: {summary['error'].splitlines()[-1][:200]}")
            show(f"[{index}/{total}] {summary['cell']:<34s} {status}  ({summary['seconds']:.0f} s)")
            if summary["status"] != "ok":
                failed.append(summary["cell"])

        run_grid(pending, tracking_uri=uri, parent_run_id=parent.run_id, jobs=jobs, bench_dir=bench_dir,
                 bench="study", on_cell=on_cell)
        finished = {cell.id: done[cell.id] for cell in cells if done.get(cell.id, {}).get("status") == "ok"}
        report = choose_report(finished, settings) if choose else study_report(finished, settings)
        paper._write_json(bench_dir / "study.json", report)
        (bench_dir / "study.md").write_text(report["markdown"])
        parent.log_dict(report, "study/study.json")
        parent.log_artifact(bench_dir / "study.md", "study")
        if not choose:
            if figures_dir is not None:
                figures_dir.mkdir(parents=True, exist_ok=True)
            for path in write_figures(finished, bench_dir, settings):
                parent.log_artifact(path, "study")
                if figures_dir is not None:
                    (figures_dir / path.name).write_bytes(path.read_bytes())
            primary = report["contrasts"][0]
            if primary["n"]:
                parent.log_metrics({"primary/mean": primary["mean"], "primary/half_width": primary["half_width"],
                                    "primary/n": primary["n"]}, step=0)
        if figures_dir is not None:
            figures_dir.mkdir(parents=True, exist_ok=True)
            (figures_dir / f"study-{profile}.md").write_text(report["markdown"])
        parent.close("FINISHED" if not failed else "FAILED")
    show("")
    show(report["markdown"])
    show(f"\ncells: {bench_dir / 'cells'}  report: {bench_dir / 'study.md'}  MLflow: {store_uri} "
         f"(experiment {EXPERIMENT}, parent run {parent.run_id})")
    if failed:
        show(f"{len(failed)} cell(s) failed (re-run the same command to retry them): {', '.join(failed)}")
    return {"cells": finished, "failed": failed, "report": report, "dir": str(bench_dir)}


# ------------------------------------------------------------------------------------------ reports
def choose_report(cells: Mapping[str, Mapping[str, Any]], settings: Sequence[Setting] = SETTINGS) -> dict[str, Any]:
    """Full FT's last-5 validation score per candidate and setting; per task, the pick = the best mean over
    that task's settings that pass the bar (>= `BAR` points above the validation majority answer)."""
    tasks = list(dict.fromkeys(setting.task for setting in settings))
    picks, lines = {}, ["## Schedule choice: full fine-tuning, last-5-round validation accuracy x100 (seed 0)"]
    all_rows = {}
    for task in tasks:
        columns = [f"{s.task}.{s.model}" for s in settings if s.task == task]
        rows = []
        for index, candidate in enumerate(CANDIDATES[task]):
            keys = [f"{column}.c{index}.s0" for column in columns]
            values = [cell_metric(cells[key]) if key in cells else math.nan for key in keys]
            majority = [100.0 * cells[key]["majority_score"] if key in cells else math.nan for key in keys]
            margin = [v - m for v, m in zip(values, majority)]
            rows.append({"candidate": index, "values": candidate, "last5": values, "majority": majority,
                         "margin": margin, "passes": [m >= BAR for m in margin]})
        # The settings that pass the bar under some candidate; a setting that passes under none is left out.
        passing = [i for i in range(len(columns)) if any(row["passes"][i] for row in rows)]
        for row in rows:
            kept = [row["last5"][i] for i in passing]
            row["mean"] = float(np.mean(kept)) if kept else math.nan
        complete = [row for row in rows if not math.isnan(row["mean"])]
        # The rule (docs/STUDY.md): best mean; a tie (within 0.1 point) goes to fewer local epochs, then the
        # smaller lr, then no separate head lr.
        best = max((row["mean"] for row in complete), default=math.nan)
        tied = [row for row in complete if row["mean"] >= best - 0.1]
        pick = min(tied, key=lambda row: (row["values"].get("federation.local_epochs", 1), row["values"]["federation.lr"],
                                          row["values"].get("federation.head_lr") or 0.0), default=None)
        picks[task] = pick
        all_rows[task] = rows
        lines += ["", f"### {task}", "", "| candidate | " + " | ".join(columns) + " | mean (passing settings) |",
                  "|---|" + "---:|" * (len(columns) + 1)]
        for row in rows:
            cells_text = [f"{v:.1f} (maj {m:.1f})" for v, m in zip(row["last5"], row["majority"])]
            lines.append(f"| {_describe(row['values'])} | " + " | ".join(cells_text) + f" | {row['mean']:.1f} |")
        failing = [columns[i] for i in range(len(columns)) if i not in passing]
        if pick is not None:
            lines += ["", f"Pick for {task}: {_describe(pick['values'])} (mean {pick['mean']:.1f}; margins over the "
                          f"validation majority answer: {', '.join(f'{m:+.1f}' for m in pick['margin'])})"]
        if failing:
            lines += ["", f"Below the bar (+{BAR:.0f} points) under every candidate, left out of the study: "
                          f"{', '.join(failing)}"]
    return {"rows": all_rows, "picks": picks, "markdown": "\n".join(lines) + "\n"}


def _describe(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{key.split('.')[-1]} {value}" for key, value in values.items())


def study_report(cells: Mapping[str, Mapping[str, Any]], settings: Sequence[Setting] = SETTINGS) -> dict[str, Any]:
    """Table per setting and row (last-5 and final, mean ± sd over seeds), the majority row, the contrasts
    (all pairs, and without the pairs where LNTK-only covered every unit), coverage diagnostics."""
    cover = coverage(cells)
    unflagged = {pair for pair, info in cover.items() if not info["flagged"]}
    contrasts = [paired_contrast(cells, a, b) for a, b in CONTRASTS]
    testable = [paired_contrast(cells, a, b, keep=lambda pair: pair in unflagged) for a, b in CONTRASTS]
    final_primary = paired_contrast(cells, *CONTRASTS[0], metric=lambda cell: 100.0 * cell["score"])
    columns = [f"{s.task}.{s.model}" for s in settings]
    # The primary contrast within each setting too: a pooled mean can hide settings that disagree.
    primary_by_setting = {column: paired_contrast(cells, *CONTRASTS[0],
                                                  keep=lambda pair, c=column: pair.startswith(c + "."))
                          for column in columns}
    table = []
    for name in STUDY_METHODS:
        row = {"method": name, "label": STUDY_METHODS[name].label, "cells": []}
        for column in columns:
            found = [cell for key, cell in cells.items() if key.startswith(f"{column}.{name}.s")]
            last5 = [cell_metric(cell) for cell in found]
            final = [100.0 * cell["score"] for cell in found]
            distinct = [float(np.mean(cell["distinct_units_per_round"])) for cell in found
                        if cell.get("distinct_units_per_round")]
            row["cells"].append({"n": len(found), "last5": _mean_sd(last5), "final": _mean_sd(final),
                                 "distinct": float(np.mean(distinct)) if distinct else math.nan})
        if any(entry["n"] for entry in row["cells"]):
            table.append(row)
    majority = []
    for column in columns:
        found = [cell["majority_score"] for key, cell in cells.items() if key.startswith(column + ".")]
        majority.append(100.0 * float(np.mean(found)) if found else math.nan)
    report = {"columns": columns, "table": table, "majority": majority, "contrasts": contrasts,
              "contrasts_testable": testable, "final_round_primary": final_primary,
              "primary_by_setting": primary_by_setting, "coverage": cover,
              "num_units": [NUM_UNITS[s.model] for s in settings]}
    report["markdown"] = _study_markdown(report)
    return report


def _mean_sd(values: Sequence[float]) -> list[float]:
    if not values:
        return [math.nan, math.nan]
    return [float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0]


def _study_markdown(report: Mapping[str, Any]) -> str:
    columns = report["columns"]
    lines = ["## Score x100: mean of the last 5 rounds (final round), mean ± sd over seeds [seeds; mean distinct "
             "units trained per round / L]", "", "| Method | " + " | ".join(columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for row in report["table"]:
        texts = []
        for entry, units in zip(row["cells"], report["num_units"]):
            if not entry["n"]:
                texts.append("–")
                continue
            (m5, s5), (mf, _) = entry["last5"], entry["final"]
            distinct = "" if math.isnan(entry["distinct"]) else f"; {entry['distinct']:.1f}/{units}"
            texts.append(f"{m5:.1f} ± {s5:.1f} ({mf:.1f}) [{entry['n']}{distinct}]")
        lines.append(f"| {row['label']} | " + " | ".join(texts) + " |")
    lines.append("| *Majority answer, no training* | " + " | ".join(f"{v:.1f}" for v in report["majority"]) + " |")
    lines += ["", "## Paired differences (points; pairs = (task, model, seed); metric = last-5 mean)", "",
              "| contrast | pairs | mean | 95 % CI (bootstrap) | Wilcoxon p | wins / losses / ties | "
              "without flagged pairs: n, mean, CI |", "|---|---:|---:|---|---:|---|---|"]
    for every, testable in zip(report["contrasts"], report["contrasts_testable"]):
        name = f"{STUDY_METHODS[every['a']].label} − {STUDY_METHODS[every['b']].label}"
        if not every["n"]:
            lines.append(f"| {name} | 0 | | | | | |")
            continue
        rest = (f"{testable['n']}, {testable['mean']:+.2f}, [{testable['ci'][0]:+.2f}, {testable['ci'][1]:+.2f}]"
                if testable["n"] else "0")
        lines.append(f"| {name} | {every['n']} | {every['mean']:+.2f} | [{every['ci'][0]:+.2f}, {every['ci'][1]:+.2f}]"
                     f" (±{every['half_width']:.2f}) | {every['wilcoxon_p']:.3f} | {every['wins']} / "
                     f"{every['losses']} / {every['ties']} | {rest} |")
    by_setting = [(column, c) for column, c in report["primary_by_setting"].items() if c["n"]]
    if by_setting:
        primary = report["contrasts"][0]
        name = f"{STUDY_METHODS[primary['a']].label} − {STUDY_METHODS[primary['b']].label}"
        lines += ["", f"{name} within each setting: "
                  + "; ".join(f"{column} {c['mean']:+.2f} [{c['ci'][0]:+.2f}, {c['ci'][1]:+.2f}] (n {c['n']}, "
                              f"p {c['wilcoxon_p']:.3f}, {c['wins']} / {c['losses']} / {c['ties']})"
                              for column, c in by_setting) + "."]
    final = report["final_round_primary"]
    if final["n"]:
        lines += ["", f"Primary contrast on the final round's score instead: {final['mean']:+.2f} "
                      f"[{final['ci'][0]:+.2f}, {final['ci'][1]:+.2f}], Wilcoxon p {final['wilcoxon_p']:.3f}, "
                      f"n {final['n']}."]
    flagged = [pair for pair, info in report["coverage"].items() if info["flagged"]]
    lines += ["", "Coverage: LNTK-only trained on average "
              + ", ".join(f"{pair} {info['mean_distinct']:.1f}/{info['units']}"
                          for pair, info in sorted(report["coverage"].items()))
              + " distinct units per round; flagged (every unit covered in at least half of the rounds, so the "
                "server step has nothing to add): " + (", ".join(flagged) if flagged else "none") + "."]
    return "\n".join(lines) + "\n"


def write_figures(cells: Mapping[str, Mapping[str, Any]], out_dir: Path,
                  settings: Sequence[Setting] = SETTINGS) -> list[Path]:
    """`study_rounds.png` (score per round per method, mean with a 95 % CI band over seeds, one panel per setting)
    and `study_paired.png` (each contrast's paired differences, one dot per pair, mean and CI)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    figure, axes = plt.subplots(1, len(settings), figsize=(4.2 * len(settings) + 2, 3.6), sharey=False)
    for axis, setting in zip(np.atleast_1d(axes), settings):
        column = f"{setting.task}.{setting.model}"
        for name in STUDY_METHODS:
            curves = [cell["score_per_round"] for key, cell in cells.items() if key.startswith(f"{column}.{name}.s")]
            if not curves:
                continue
            length = min(len(curve) for curve in curves)
            values = 100.0 * np.asarray([curve[:length] for curve in curves])  # (seeds, rounds)
            mean = values.mean(axis=0)
            half = (1.96 * values.std(axis=0, ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0 * mean
            line, = axis.plot(range(length), mean, label=STUDY_METHODS[name].label, lw=1.4)
            axis.fill_between(range(length), mean - half, mean + half, color=line.get_color(), alpha=0.15)
        majority = [cell["majority_score"] for key, cell in cells.items() if key.startswith(column + ".")]
        if majority:
            axis.axhline(100.0 * float(np.mean(majority)), color="black", ls=":", lw=1, label="majority answer")
        axis.set_title(f"{setting.task.upper()} {setting.model}")
        axis.set_xlabel("round")
    np.atleast_1d(axes)[0].set_ylabel("test accuracy x100")
    panels = [axis for axis in np.atleast_1d(axes) if axis.get_legend_handles_labels()[0]]
    if panels:  # one legend for all panels, right of them
        figure.legend(*panels[0].get_legend_handles_labels(), fontsize=7, loc="center right")
    figure.tight_layout(rect=(0, 0, 0.87, 1))
    rounds_path = out_dir / "study_rounds.png"
    figure.savefig(rounds_path, dpi=110)
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(7.5, 3.8))
    for index, (a, b) in enumerate(CONTRASTS):
        contrast = paired_contrast(cells, a, b)
        if not contrast["n"]:
            continue
        values = np.asarray(list(contrast["diffs"].values()))
        jitter = np.random.default_rng(index).uniform(-0.15, 0.15, values.size)
        axis.scatter(index + jitter, values, s=10, alpha=0.6)
        axis.errorbar(index + 0.3, contrast["mean"], yerr=[[contrast["mean"] - contrast["ci"][0]],
                                                           [contrast["ci"][1] - contrast["mean"]]],
                      fmt="D", color="black", capsize=3, ms=4)
    axis.axhline(0, color="grey", lw=0.8)
    axis.set_xticks(range(len(CONTRASTS)))
    axis.set_xticklabels([f"{STUDY_METHODS[a].label}\n− {STUDY_METHODS[b].label}" for a, b in CONTRASTS], fontsize=7)
    axis.set_ylabel("paired difference (points)")
    axis.set_title("Paired differences over (task, model, seed), mean with bootstrap 95 % CI")
    figure.tight_layout()
    paired_path = out_dir / "study_paired.png"
    figure.savefig(paired_path, dpi=110)
    plt.close(figure)
    return [rounds_path, paired_path]
