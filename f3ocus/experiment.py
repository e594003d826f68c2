"""One experiment, end to end: config -> foundation model -> federated data -> coordinator -> result.

Reading order for newcomers: `run_experiment` here, then the round loop `run_rounds`
(`f3ocus/federated/rounds.py`, driven by `local_engine.py` or `ray_engine.py`), then one round,
`Coordinator.run_round` (`f3ocus/federated/coordinator.py`), then the interfaces each phase calls.
Heavy or remote work is ordered so that every configuration problem surfaces before Ray starts:
validation, then the cached foundation checkpoint and the federated data store (both built on the
driver), then Ray actors.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import yaml

from f3ocus.config.load import to_dict
from f3ocus.config.schema import ConfigError, ExperimentConfig
from f3ocus.config.validate import check_budgets, check_min_clients, validate
from f3ocus.prepared import OFFLINE_ENV, Prepared

if TYPE_CHECKING:
    from f3ocus.federated.records import RoundRecord


def run_experiment(cfg: ExperimentConfig, *, output_json: str | None = None, show: Callable[[str], None] = print,
                   resume_dir: str | Path | None = None, on_round: Callable[[RoundRecord, dict], None] | None = None,
                   placement: Any = None, run_tags: dict[str, str] | None = None) -> dict[str, Any]:
    """Validate, prepare, run every round, write `result.json` (and `output_json`); return the result.

    `resume_dir`: a run directory whose checkpoint holds the last completed round; the run continues from
    the next round into the same MLflow run. Before Ray starts, the checkpoint is read and checked
    (`CheckpointError` when unusable) and its run identity compared with `cfg` (before the data is built)
    and with the data and model facts (after): a difference outside `checkpoint.RESUMABLE_KEYS` is a
    `ConfigError` naming the keys.
    Used by sweep trials (`f3ocus.sweeps`): `on_round(record, run_info)` after every round,
    `placement` (a `ray_engine.ActorPlacement`, Ray engine only) and `run_tags` (extra MLflow tags).
    """
    from f3ocus.federated.checkpoint import run_identity

    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    _quiet_libraries()
    units = validate(cfg)
    run_dir = Path(resume_dir).resolve() if resume_dir else None
    resume = None
    if run_dir is not None:
        resume = load_resume(cfg, run_dir, units, show)
    prepared = prepare(cfg, num_units=len(units), show=show, run_dir=run_dir)
    if resume is not None:
        _check_resume(resume, run_identity(cfg, prepared.federation, units))
    if run_tags:
        prepared = dataclasses.replace(prepared, run_tags=dict(run_tags))
    show(f"run dir: {prepared.run_dir}" + (f" (resuming after round {resume.round_idx})" if resume else ""))
    started = time.perf_counter()
    if cfg.federation.engine == "local":
        if placement is not None:
            raise ValueError("placement needs federation.engine: ray")
        from f3ocus.federated.local_engine import run_local
        result = run_local(cfg, prepared, resume, show, on_round)
    else:
        from f3ocus.federated.ray_engine import run_on_ray
        result = run_on_ray(cfg, prepared, resume, show=show, on_round=on_round, placement=placement)
    result["seconds"] = time.perf_counter() - started
    result["run_dir"] = str(prepared.run_dir)
    result["tracking_uri"] = prepared.tracking_uri
    _write_json(prepared.run_dir / "result.json", result)
    if output_json:
        _write_json(Path(output_json), result)
    return result


def load_resume(cfg: ExperimentConfig, run_dir: Path, units: list[str], show: Callable[[str], None] = print):
    """The last usable checkpoint of `run_dir`, checked against `cfg` and the model's `units`.

    Raises:
        ConfigError: `run_dir` is not a directory, or `cfg` differs from the checkpoint's config in a key
            that changes the computation (all such keys named).
        CheckpointError: no usable checkpoint (see `f3ocus.federated.checkpoint.load_latest`), or a client
            state it names missing or corrupted (`f3ocus.federated.client_state`).
    """
    from f3ocus.federated.checkpoint import CheckpointError, load_latest

    if not run_dir.is_dir():
        raise ConfigError("--resume", f"{run_dir} is not a run directory")
    state = load_latest(run_dir, warn=show)
    if "config" not in state.identity:
        raise CheckpointError(state.loaded_from, "records no run config, so it cannot be checked against this one")
    _check_resume(state, {"config": to_dict(cfg), "units": list(units)})
    if state.client_states:  # every client's own state the checkpoint names is there and intact
        from f3ocus.federated.client_state import CLIENT_STATE_DIR, ClientStateStore

        ClientStateStore(run_dir / CLIENT_STATE_DIR, state.client_states).verify()
    return state


def _check_resume(state: Any, current: dict[str, Any]) -> None:
    """Refuse a resume whose config, data or model facts differ from the checkpoint's (see `load_resume`)."""
    from f3ocus.federated.checkpoint import RESUMABLE_KEYS, identity_differences

    differences = identity_differences(state.identity, current)
    if differences:
        raise ConfigError("--resume", f"this run differs from the one that wrote {state.loaded_from} in what "
                                      f"changes the computation: {'; '.join(differences)}. A resume may change "
                                      f"only {', '.join(RESUMABLE_KEYS)}")


def prepare(cfg: ExperimentConfig, *, num_units: int, show: Callable[[str], None] = print,
            run_dir: Path | None = None) -> Prepared:
    """Run dir, resolved config, foundation checkpoint, federated data store, budgets and baseline.

    `num_units` is the model's unit count as `validate` found it (budgets are checked against it).
    """
    from f3ocus.federated.state import Federation
    from f3ocus.tracking.mlflow_logger import resolve_tracking_uri

    output_dir = Path(cfg.tracking.output_dir).expanduser().resolve()
    run_dir = run_dir or output_dir / f"{cfg.tracking.run_name or cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (run_dir / "config.yaml").exists():  # a resumed run keeps the config it started with
        (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    cache_dir = _ensure_model(cfg, show)
    show(f"data: building/loading {cfg.data.task} ...")
    store = build_data(cfg)
    clients = tuple(store.clients)
    budgets = check_budgets(cfg, num_units=num_units, num_clients=len(clients))
    check_min_clients(cfg, num_clients=len(clients))
    # Majority baseline: accuracy (and, for multi-label clients, micro-F1) of always giving the majority answer.
    majority = {c: store.majority_scores(c, cfg.data.eval_split) for c in clients}
    federation = Federation(clients, {c: store.num_examples(c, "train") for c in clients}, budgets,
                            {c: scores["accuracy"] for c, scores in majority.items()},
                            client_kinds={c: store.task_kind(c) for c in clients},
                            majority_f1={c: scores["f1"] for c, scores in majority.items() if "f1" in scores},
                            answers=tuple(store.answers), findings=tuple(store.findings),
                            data_fingerprint=store.fingerprint)
    tracking_uri = (resolve_tracking_uri(cfg.tracking.tracking_uri, output_dir) if cfg.tracking.mlflow else None)
    bad_rows = store.bad_rows
    if bad_rows.get("total"):
        show(f"data: skipped {bad_rows['total']} bad row(s) (data.on_bad_row: skip): {bad_rows['by_reason']}")
    return Prepared(run_dir, store.root, cache_dir, federation, tracking_uri, bad_rows)


def build_data(cfg: ExperimentConfig):
    """Build (or load from its cache) the federated data store of `cfg` under `<output_dir>/datasets/`.

    Concurrent callers with the same data config (sweep trials, parallel runs) serialise on a file lock
    next to the store: the first builds it, the others load it.
    """
    from filelock import FileLock

    from f3ocus.data.prepare import prepare_federated_data

    store_dir = Path(cfg.tracking.output_dir).expanduser().resolve() / "datasets" / _data_key(cfg)
    store_dir.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(store_dir) + ".lock"):
        return prepare_federated_data(cfg.data, store_dir, seed=cfg.seed)


def ensure_model(cfg: ExperimentConfig, show: Callable[[str], None] = print) -> str | None:
    """The model cache dir of `cfg`, with the foundation checkpoint built first when the config uses one."""
    return _ensure_model(cfg, show)


def _ensure_model(cfg: ExperimentConfig, show: Callable[[str], None]) -> str | None:
    """Build (first use) or reuse the cached foundation checkpoint on the driver, before Ray starts."""
    from f3ocus.models.catalog import FOUNDATION_CORPUS

    if cfg.model.checkpoint not in FOUNDATION_CORPUS:
        return cfg.model.cache_dir
    from f3ocus.models.foundation import ensure_foundation

    path = ensure_foundation(cfg.model.family, cfg.model.cache_dir, log=show,
                             corpus=FOUNDATION_CORPUS[cfg.model.checkpoint])
    show(f"model: foundation checkpoint {path}")
    return cfg.model.cache_dir


def _quiet_libraries() -> None:
    """Our progress lines are the run's output; library progress bars are noise (also where this process
    imported the libraries before `OFFLINE_ENV` was set). transformers is not imported for this: its
    "Loading weights" bars follow huggingface_hub's switch when it is imported later."""
    import sys

    import datasets
    from huggingface_hub.utils import disable_progress_bars

    datasets.disable_progress_bars()
    disable_progress_bars()
    if "transformers" in sys.modules:
        sys.modules["transformers"].utils.logging.disable_progress_bar()


def _data_key(cfg: ExperimentConfig) -> str:
    import hashlib

    digest = hashlib.sha256(json.dumps([to_dict(cfg.data), cfg.seed], sort_keys=True).encode()).hexdigest()[:12]
    return f"{cfg.data.task}-{digest}"


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=float))
    tmp.replace(path)


__all__ = ["run_experiment", "prepare", "load_resume", "Prepared", "OFFLINE_ENV", "ConfigError"]
