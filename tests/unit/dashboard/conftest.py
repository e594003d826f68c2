"""A small MLflow store (sqlite in a temp dir) with fake runs, written through `MlflowClient` like real runs are.

Experiment "demo" (finals = eval/acc at the last round, step 3):

| run            | method / solver | family | task         | seed | status   | final | parent |
|----------------|-----------------|--------|--------------|------|----------|-------|--------|
| topk-s0..s2    | top_k           | llava  | easy_vqa     | 0-2  | FINISHED | 0.50, 0.60, 0.70 | |
| topk-s3        | top_k           | llava  | easy_vqa     | 3    | FAILED   | 0.10  |        |
| blip2-s0       | top_k           | blip2  | ultra_medvqa | 0    | FINISHED | 0.40  |        |
| sweep          | (parent: no metrics)                                             |       |        |
| nsga2-s0, -s1  | f3ocus / nsga2  | llava  | easy_vqa     | 0, 1 | FINISHED | 0.55, 0.75 | sweep (lr 0.001) |
| sa-s0          | f3ocus / sa     | llava  | easy_vqa     | 0    | FINISHED | 0.45  | sweep (lr 0.002) |

Artifacts: `selection/round_00R.json` with a front for the f3ocus runs, `selection/unit_ranks.json` for
topk-s0 and nsga2-s0. Experiment "flat": two top_k runs, no nesting (no sweep panel).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROUNDS = 3  # steps 0..3

# name -> (params overrides, final acc, status, parent name or None)
RUNS = {
    "topk-s0": ({"selection.method": "top_k", "seed": "0"}, 0.50, "FINISHED", None),
    "topk-s1": ({"selection.method": "top_k", "seed": "1"}, 0.60, "FINISHED", None),
    "topk-s2": ({"selection.method": "top_k", "seed": "2"}, 0.70, "FINISHED", None),
    "topk-s3": ({"selection.method": "top_k", "seed": "3"}, 0.10, "FAILED", None),
    "blip2-s0": ({"selection.method": "top_k", "model.family": "blip2", "data.task": "ultra_medvqa", "seed": "0"},
                 0.40, "FINISHED", None),
    "nsga2-s0": ({"selection.method": "f3ocus", "selection.solver": "nsga2", "federation.lr": "0.001", "seed": "0"},
                 0.55, "FINISHED", "sweep"),
    "nsga2-s1": ({"selection.method": "f3ocus", "selection.solver": "nsga2", "federation.lr": "0.001", "seed": "1"},
                 0.75, "FINISHED", "sweep"),
    "sa-s0": ({"selection.method": "f3ocus", "selection.solver": "sa", "federation.lr": "0.002", "seed": "0"},
              0.45, "FINISHED", "sweep"),
}
BASE_PARAMS = {"model.family": "llava", "data.task": "easy_vqa", "selection.solver": "nsga2", "federation.lr": "0.001",
               "tracking.output_dir": "runs", "federation.clients": "c0,c1,c2"}
UNITS = ["vision.0", "vision.1", "language.0", "language.1"]
CLIENTS = ["c0", "c1", "c2"]
# nsga2-s0's fronts: round -> (points as [importance, variance], chosen index)
FRONTS = {1: ([[0.9, 0.5], [1.2, 0.8], [1.5, 1.4], [1.7, 2.1]], 2), 2: ([[1.0, 0.2], [1.4, 0.9], [1.8, 1.6]], 0),
          3: ([[1.1, 0.3], [1.6, 1.0]], 1)}
# topk-s0's unit ranks: client -> rounds x units (rounds 1..3)
RANKS = {"c0": [[1, 2, 3, 4], [2, 1, 3, 4], [2, 1, 4, 3]], "c1": [[4, 3, 2, 1], [4, 3, 1, 2], [3, 4, 1, 2]],
         "c2": [[1, 3, 2, 4], [1, 3, 2, 4], [1, 2, 3, 4]]}


def acc_history(final: float) -> list[float]:
    return [0.1, 0.1 + (final - 0.1) / 3, 0.1 + 2 * (final - 0.1) / 3, final]


def bytes_history(seed: int) -> list[int]:
    return [0] + [1_000_000 * (round_idx + seed) for round_idx in range(1, ROUNDS + 1)]


def _log_run(client, experiment_id: str, name: str, params: dict, final: float | None, status: str,
             parent_id: str | None) -> str:
    from mlflow.entities import Metric, Param

    tags = {"mlflow.parentRunId": parent_id} if parent_id else {}
    run_id = client.create_run(experiment_id, run_name=name, tags=tags).info.run_id
    metrics = []
    if final is not None:
        seed = int(params.get("seed", 0))
        for step, (acc, up) in enumerate(zip(acc_history(final), bytes_history(seed))):
            metrics += [Metric("eval/acc", acc, 1000 + step, step), Metric("comm/bytes_up", up, 1000 + step, step)]
            if params.get("selection.method") == "f3ocus" and step > 0:
                metrics.append(Metric("select/front_size", 3, 1000 + step, step))
    client.log_batch(run_id, metrics=metrics, params=[Param(k, str(v)) for k, v in params.items()])
    client.set_terminated(run_id, status)
    return run_id


def _payload(round_idx: int, front, chosen) -> dict:
    return {"round": round_idx, "clients": CLIENTS, "units": UNITS, "scores": None,
            "masks": [[1, 0, 0, 0]] * 3, "front": front, "front_masks": len(front), "chosen": chosen,
            "objectives": {"importance": front[chosen][0], "variance": front[chosen][1]},
            "distinct_units": 1, "n_evals": 100, "seconds": 0.1}


def build_store(root: Path) -> str:
    """Write both experiments into `root/mlflow.db` (+ `root/artifacts`); returns the tracking URI."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{root}/mlflow.db"
    client = MlflowClient(uri)
    demo = client.create_experiment("demo", artifact_location=(root / "artifacts").as_uri())
    ids = {"sweep": _log_run(client, demo, "sweep", {"sweep.file": "configs/sweeps/demo.yaml"}, None, "FINISHED", None)}
    for name, (overrides, final, status, parent) in RUNS.items():
        ids[name] = _log_run(client, demo, name, {**BASE_PARAMS, **overrides}, final, status,
                             ids[parent] if parent else None)
    for round_idx, (front, chosen) in FRONTS.items():
        client.log_dict(ids["nsga2-s0"], _payload(round_idx, front, chosen), f"selection/round_{round_idx:03d}.json")
    for name in ("nsga2-s1", "sa-s0"):
        client.log_dict(ids[name], _payload(1, [[1.0, 1.0], [2.0, 2.0]], 1), "selection/round_001.json")
    history = {"rounds": [1, 2, 3], "clients": CLIENTS, "units": UNITS, "tie_break": "unit order", "ranks": RANKS,
               "revised_ranks": RANKS, "trained": {c: [[int(r <= 2) for r in row] for row in rows]
                                                   for c, rows in RANKS.items()}}
    client.log_dict(ids["topk-s0"], history, "selection/unit_ranks.json")
    client.log_dict(ids["nsga2-s0"], history, "selection/unit_ranks.json")
    flat = client.create_experiment("flat", artifact_location=(root / "artifacts-flat").as_uri())
    for seed in (0, 1):
        _log_run(client, flat, f"flat-s{seed}", {**BASE_PARAMS, "selection.method": "top_k", "seed": str(seed)},
                 0.3 + 0.1 * seed, "FINISHED", None)
    (root / "ids.json").write_text(json.dumps(ids))
    return uri


@pytest.fixture(scope="session")
def mlflow_store(tmp_path_factory) -> tuple[str, dict[str, str]]:
    """(tracking URI, {run name: run id}) of the fake store, built once per session."""
    root = tmp_path_factory.mktemp("mlflow-dashboard")
    uri = build_store(root)
    return uri, json.loads((root / "ids.json").read_text())


@pytest.fixture(scope="session")
def demo_report(mlflow_store, tmp_path_factory) -> tuple[Path, dict]:
    """The dashboard of experiment "demo" written by `f3ocus report` (path, collected data)."""
    from f3ocus.dashboard import write_report

    out = tmp_path_factory.mktemp("report") / "demo.html"
    return write_report("demo", mlflow_store[0], out)
