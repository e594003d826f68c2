"""From a `DataConfig` to a saved `FederatedStore`: build, restrict, partition, cap, save, with a cache.

This is the one function the rest of the platform calls for data. It builds the rows of `cfg.task` with
that task's builder in the registry (`f3ocus.tasks`; the builders are in `f3ocus.data.builders`), keeps only
`cfg.modalities`, partitions per `cfg.partition`, caps every client at `cfg.samples_per_client` rows (train +
test, in the ratio `cfg.test_fraction`) and saves. A store whose fingerprint (hash of cfg, seed and
`PREPARE_VERSION`) matches is loaded instead of rebuilt; the fingerprint does not see changes to files under
`cfg.path`, so delete `out_dir` after editing them.

Bad data (`cfg.on_bad_row`): "fail" raises a `DataError` naming the file or row at the first bad row
(unreadable / truncated image, wrong image mode or shape, missing question or answer, an answer outside
the builder's closed answer set, a MedMNIST label out of range); "skip" drops those rows and the store
records per-reason counts (`FederatedStore.bad_rows`, `skipped_rows`) that the run logs. Whatever the
policy, these always raise: a structurally broken file (an `.npz` with a missing key, a wrong dtype or
rank, image/label counts that differ), and an empty client (a MedMNIST file or a requested modality left
with no row): dropping a client silently would change the federation and its per-client budgets.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
from pathlib import Path

import numpy as np
from datasets import Dataset, concatenate_datasets

from f3ocus.config.schema import DataConfig, PartitionConfig
from f3ocus.data.partition import partition_dirichlet, partition_iid, partition_natural
from f3ocus.data.schema import BadRows, DataError, column_values
from f3ocus.data.store import FederatedStore, read_meta
from f3ocus.tasks import TASK_NAMES, TASKS

PREPARE_VERSION = 4  # 2: label questions 0.6, stronger synthetic marks; 3: bad-row counts; 4: findings + client kinds

logger = logging.getLogger(__name__)


def prepare_federated_data(cfg: DataConfig, out_dir: Path, *, seed: int) -> FederatedStore:
    """Build (or load from cache) the federated dataset described by `cfg`.

    Args:
        cfg: the data section of the experiment config.
        out_dir: folder for the store (`dataset/`, `meta.json`) and, if generated, `npz/`.
        seed: seeds generation, subsets, splits, questions and partitioning.

    Returns:
        the saved store; `store.bad_rows` / `store.skipped_rows` say what `on_bad_row: skip` dropped
        (also on a cache hit).

    Raises:
        DataError: unknown task, no rows left after `cfg.modalities`, bad data (with "fail"), a broken
            file, or an empty client (whatever the policy).
    """
    fingerprint = config_fingerprint(cfg, seed)
    meta = read_meta(out_dir)
    if meta is not None and meta.get("fingerprint") == fingerprint:
        try:
            return FederatedStore.load(out_dir)
        except DataError:
            pass  # a damaged cache is rebuilt below
    report = BadRows()
    raw = build_task_dataset(cfg, Path(out_dir), seed=seed, report=report)
    partitioned = partition(raw, cfg.partition, seed=seed)
    if cfg.samples_per_client is not None:
        partitioned = cap_clients(partitioned, cfg.samples_per_client, cfg.test_fraction, seed=seed)
    if cfg.validation_fraction > 0:
        partitioned = carve_validation(partitioned, cfg.validation_fraction, seed=seed)
    if report.total:
        logger.warning("data: %s (data.on_bad_row: skip); first: %s", report.summary(), report.examples[0])
    return FederatedStore.save(partitioned, out_dir, fingerprint=fingerprint, bad_rows=report.to_dict())


def config_fingerprint(cfg: DataConfig, seed: int) -> str:
    """Hash of the config, the seed and `PREPARE_VERSION` (16 hex digits)."""
    payload = {"cfg": dataclasses.asdict(cfg), "seed": seed, "version": PREPARE_VERSION}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def build_task_dataset(cfg: DataConfig, out_dir: Path, *, seed: int, report: BadRows | None = None) -> Dataset:
    """Build the un-partitioned rows (with `split`) for `cfg.task`, restricted to `cfg.modalities`.

    Rows skipped under `cfg.on_bad_row: skip` are counted in `report`.
    """
    if cfg.task not in TASKS:
        raise DataError(f"data.task: unknown task {cfg.task!r}; expected one of {TASK_NAMES}")
    wanted_rows = _rows_needed(cfg)
    test_limit = None if wanted_rows is None else math.ceil(wanted_rows * cfg.test_fraction / (1 - cfg.test_fraction))
    parts = TASKS[cfg.task].build(cfg, out_dir, seed=seed, wanted_rows=wanted_rows, test_limit=test_limit,
                                  report=report)
    if isinstance(parts, Dataset):  # already whole (Ultra-MedVQA, multi_source)
        return parts
    rows = concatenate_datasets(parts)
    if len(rows) == 0:
        raise DataError(f"data: {cfg.task} ({cfg.path or cfg.task}) has no usable row"
                        + (f" ({report.summary()})" if report is not None and report.total else ""))
    return rows if cfg.modalities is None else _keep_modalities(rows, cfg)


def _keep_modalities(rows: Dataset, cfg: DataConfig) -> Dataset:
    """The rows whose modality is in `cfg.modalities`; every listed modality must keep a row."""
    allowed = set(cfg.modalities or ())
    modalities = column_values(rows, "modality")
    keep = [row for row, value in enumerate(modalities) if value in allowed]
    if not keep:
        raise DataError(f"data.modalities: no {cfg.task} row has a modality in {sorted(allowed)}")
    empty = sorted(allowed - set(modalities))
    if empty:
        raise DataError(f"data.modalities: no {cfg.task} row has modality {empty[0]!r} "
                        f"(present: {sorted(set(modalities))}); an empty modality is an error whatever "
                        f"data.on_bad_row says: remove it from data.modalities")
    return rows.select(keep)


def _rows_needed(cfg: DataConfig) -> int | None:
    """Rows per source (flag / split) enough to fill every client to `samples_per_client`; None = all."""
    if cfg.samples_per_client is None:
        return None
    spread = 1 if cfg.partition.scheme == "natural" else cfg.partition.num_clients or 1
    return cfg.samples_per_client * spread


def partition(ds: Dataset, cfg: PartitionConfig, *, seed: int) -> Dataset:
    """Apply the partition scheme of `cfg` (natural / dirichlet / iid) to `ds`."""
    if cfg.scheme == "natural":
        return partition_natural(ds, by=cfg.by)
    if cfg.num_clients is None:
        raise DataError(f"data.partition.num_clients: scheme {cfg.scheme!r} needs num_clients")
    if cfg.scheme == "dirichlet":
        return partition_dirichlet(ds, cfg.num_clients, cfg.alpha, seed, label_column=cfg.label_column)
    return partition_iid(ds, cfg.num_clients, seed)


def carve_validation(ds: Dataset, fraction: float, *, seed: int) -> Dataset:
    """Relabel a seeded `fraction` of each client's train rows as split "val" (at least 1, and at least 1 train
    row left). Test rows are untouched, so a schedule chosen on "val" never sees them.
    """
    rng = np.random.default_rng([seed, 0x7A1])  # its own stream: the capped subset does not depend on it
    clients = np.asarray(column_values(ds, "client"), dtype=object)
    splits = np.asarray(column_values(ds, "split"), dtype=object)
    new = splits.copy()
    for client in sorted(set(clients.tolist())):
        train_rows = np.flatnonzero((clients == client) & (splits == "train"))
        n_val = min(max(1, int(round(len(train_rows) * fraction))), len(train_rows) - 1)
        if n_val > 0:
            new[rng.choice(train_rows, size=n_val, replace=False)] = "val"
    return ds.remove_columns("split").add_column("split", new.tolist())


def cap_clients(ds: Dataset, samples_per_client: int, test_fraction: float, *, seed: int) -> Dataset:
    """Keep a seeded random subset of at most `samples_per_client` rows per client.

    Each client keeps up to round(samples_per_client * test_fraction) test rows and fills the rest with
    train rows; clients with fewer rows keep all of them. Row order is preserved.
    """
    rng = np.random.default_rng(seed)
    clients = np.asarray(column_values(ds, "client"), dtype=object)
    splits = np.asarray(column_values(ds, "split"), dtype=object)
    n_test_target = int(round(samples_per_client * test_fraction))
    keep: list[np.ndarray] = []
    for client in sorted(set(clients.tolist())):
        test_rows = np.flatnonzero((clients == client) & (splits == "test"))
        train_rows = np.flatnonzero((clients == client) & (splits == "train"))
        n_test = min(len(test_rows), n_test_target)
        n_train = min(len(train_rows), samples_per_client - n_test)
        keep.append(rng.choice(test_rows, size=n_test, replace=False))
        keep.append(rng.choice(train_rows, size=n_train, replace=False))
    return ds.select(np.sort(np.concatenate(keep)).tolist())
