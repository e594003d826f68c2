"""The Tune grid runner's driver side, without Ray: placement bundles per engine, the cell files the callback
writes, and a dead trial recorded as a failed cell (the runs themselves: tests/integration/test_bench_grid.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from f3ocus.benchmarks import grid, tune_grid
from f3ocus.benchmarks.tune_grid import SUMMARY_KEY, CellFiles, cell_layout

ROOT = Path(__file__).resolve().parents[3]
TRACKING = {"experiment": "t", "output_dir": "/tmp/f3ocus-grid-test", "mlflow": False}


def _cells(*overrides: str, engine: str = "local") -> list[grid.Cell]:
    return grid.build_cells(grid.PROFILES["quick"], tasks=("t1",), methods=("last_k", "random"), models=("vilt",),
                            seeds=1, tracking=TRACKING, engine=engine, overrides=overrides)


def test_local_cell_reserves_one_bundle_of_its_workers_cpus_and_no_actor_slots() -> None:
    one, = _cells(engine="local")[:1]
    three, = _cells("federation.worker_resources={num_cpus: 3}", engine="local")[:1]

    assert cell_layout(one.config)[0] == [{"CPU": 1.0}]
    assert cell_layout(one.config)[2] is None  # the federation runs inside the trial process
    assert cell_layout(three.config)[0] == [{"CPU": 3.0}]


def test_ray_cell_reserves_the_sweep_trials_layout_one_bundle_per_client_actor() -> None:
    cell = _cells("federation.num_actors=2", engine="ray")[0]

    bundles, strategy, layout = cell_layout(cell.config)

    assert bundles == [{}, {"CPU": 1.0}, {"CPU": 1.0}]  # empty head: Tune drops it, the trial runs in bundle 0
    assert strategy == "PACK" and layout.client_bundles == (0, 1)


def test_cell_files_write_each_summary_as_it_arrives_and_number_them(tmp_path) -> None:
    cells = {cell.id: cell for cell in _cells()}
    seen = []
    files = CellFiles(cells, tmp_path / "cells", lambda summary, index, total: seen.append((summary["cell"], index,
                                                                                            total)))
    first, second = cells
    summary = {"cell": first, "status": "ok", "score": 0.5, "score_per_round": [0.1, float("nan")]}

    files.result({SUMMARY_KEY: json.dumps(summary), "training_iteration": 1})
    files.result({"training_iteration": 1})  # a result without a summary is Tune's bookkeeping: ignored
    files.error(second, "Traceback ...\nRayActorError: The actor died unexpectedly\n")

    saved = json.loads((tmp_path / "cells" / f"{first}.json").read_text())
    assert saved["score"] == 0.5 and saved["score_per_round"][0] == 0.1
    failed = json.loads((tmp_path / "cells" / f"{second}.json").read_text())
    assert failed["status"] == "failed" and failed["error"] == "trial error: RayActorError: The actor died unexpectedly"
    assert failed["config_hash"] == cells[second].config_hash  # a failed cell never matches a resume
    assert seen == [(first, 1, 2), (second, 2, 2)]


def test_an_error_after_the_summary_keeps_the_summary(tmp_path) -> None:
    cells = {cell.id: cell for cell in _cells()}
    first = next(iter(cells))
    files = CellFiles(cells, tmp_path / "cells", lambda *args: None)

    files.result({SUMMARY_KEY: json.dumps({"cell": first, "status": "ok", "score": 0.25})})
    files.error(first, "the trial process exited after reporting")

    assert json.loads((tmp_path / "cells" / f"{first}.json").read_text())["status"] == "ok"
    assert list(files.summaries) == [first]


def test_the_smoke_job_runs_a_two_cell_grid_with_the_flags_given_after_it(monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "ray_jobs"))
    from bench import SMOKE, smoke_argv

    assert smoke_argv(["paper", "--quick"]) == ["paper", "--quick"]
    argv = smoke_argv(["--smoke-test", "--output-dir", "/tmp/out"])
    assert argv == [*SMOKE, "--output-dir", "/tmp/out"]
    assert argv[0] == "paper" and "--smoke-test" not in argv
    sys.modules.pop("bench", None)


def test_run_grid_with_no_cells_starts_no_ray(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(tune_grid, "_join_or_start_ray", lambda: pytest.fail("Ray started for an empty grid"))
    assert tune_grid.run_grid([], tracking_uri="sqlite://", parent_run_id="p", jobs=1, bench_dir=tmp_path,
                              bench="paper", on_cell=lambda *args: None) == []
