"""Partitioners: pure functions that assign every row of a VQA dataset to a client.

Each returns a new Dataset whose `client` column is set and leaves its input untouched. `natural`
uses a column's value (modality, source: docs/METHOD.md §5 T2/T3 modality clients), `dirichlet` draws
per-label client proportions from Dir(alpha) (T4/T5 label shift) and `iid` deals rows out evenly.
Train and test rows are partitioned with the same proportions, so each client's test split mirrors its
train split. Client names for dirichlet/iid are `client_00`, `client_01`, ...
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from datasets import Dataset

from f3ocus.data.schema import DataError, column_values


def client_names(num_clients: int) -> list[str]:
    """Return ["client_00", "client_01", ...] of length `num_clients`."""
    width = max(2, len(str(num_clients - 1)))
    return [f"client_{index:0{width}d}" for index in range(num_clients)]


def partition_natural(ds: Dataset, by: str = "modality") -> Dataset:
    """One client per distinct value of column `by`.

    Raises:
        DataError: `by` is not a column, or a row has an empty value there.
    """
    if by not in ds.column_names:
        raise DataError(f"partition_natural: no column {by!r}; columns are {ds.column_names}")
    values = [str(value) for value in column_values(ds, by)]
    empty = [row for row, value in enumerate(values) if not value]
    if empty:
        raise DataError(f"partition_natural: row {empty[0]} has an empty {by!r} ({len(empty)} such rows)")
    return with_clients(ds, values)


def partition_iid(ds: Dataset, num_clients: int, seed: int) -> Dataset:
    """Shuffle, then deal train rows and test rows round-robin: client sizes differ by at most one per split.

    Args:
        ds: rows with a `split` column.
        num_clients: N >= 1.
        seed: seeds the shuffle.
    """
    _check_num_clients(num_clients, len(ds))
    rng = np.random.default_rng(seed)
    assignment = np.zeros(len(ds), dtype=np.int64)
    for rows in _split_rows(ds).values():
        order = rng.permutation(rows)
        assignment[order] = (np.arange(len(order)) + rng.integers(num_clients)) % num_clients
    names = client_names(num_clients)
    return with_clients(ds, [names[index] for index in assignment])


def partition_dirichlet(ds: Dataset, num_clients: int, alpha: float, seed: int,
                        label_column: str = "answer") -> Dataset:
    """Label skew: for each label, client shares p ~ Dir(alpha * 1_N), drawn once per label.

    The same p splits that label's train rows and its test rows, so each client's test set mirrors its
    train set. Smaller alpha gives more skew.

    Args:
        ds: rows with a `split` column and `label_column`.
        num_clients: N >= 1.
        alpha: Dirichlet concentration > 0.
        seed: seeds the proportions and the shuffles.
        label_column: the column whose values are the labels.

    Raises:
        DataError: missing label column, or fewer train rows than clients.
    """
    if label_column not in ds.column_names:
        raise DataError(f"partition_dirichlet: no column {label_column!r}; columns are {ds.column_names}")
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    rng = np.random.default_rng(seed)
    labels = np.asarray([str(value) for value in column_values(ds, label_column)], dtype=object)
    by_split = _split_rows(ds)
    _check_num_clients(num_clients, len(by_split.get("train", [])))
    assignment = np.zeros(len(ds), dtype=np.int64)
    for label in sorted(set(labels.tolist())):
        shares = rng.dirichlet(np.full(num_clients, alpha))  # (N,)
        for rows in by_split.values():
            chosen = rng.permutation(rows[labels[rows] == label])
            cuts = np.round(np.cumsum(shares)[:-1] * len(chosen)).astype(np.int64)
            for client, part in enumerate(np.split(chosen, cuts)):
                assignment[part] = client
    _fill_empty_clients(assignment, by_split, num_clients, rng)
    names = client_names(num_clients)
    return with_clients(ds, [names[index] for index in assignment])


def with_clients(ds: Dataset, clients: Sequence[str]) -> Dataset:
    """Return a copy of `ds` with its `client` column replaced by `clients` (length len(ds))."""
    if len(clients) != len(ds):
        raise ValueError(f"{len(clients)} client names for {len(ds)} rows")
    stripped = ds.remove_columns("client") if "client" in ds.column_names else ds
    updated = stripped.add_column("client", list(clients))
    return updated.select_columns(ds.column_names) if "client" in ds.column_names else updated


def _split_rows(ds: Dataset) -> dict[str, np.ndarray]:
    """split value -> row indices (int64), in sorted split order."""
    splits = np.asarray(column_values(ds, "split"), dtype=object)
    return {name: np.flatnonzero(splits == name) for name in sorted(set(splits.tolist()))}


def _check_num_clients(num_clients: int, n_rows: int) -> None:
    if num_clients < 1:
        raise ValueError(f"num_clients must be >= 1, got {num_clients}")
    if n_rows < num_clients:
        raise DataError(f"cannot give {num_clients} clients a train row each: only {n_rows} train rows")


def _fill_empty_clients(assignment: np.ndarray, by_split: dict[str, np.ndarray], num_clients: int,
                        rng: np.random.Generator) -> None:
    """Give every client with no train row one train row (and one test row, if it has none).

    A small alpha can leave a client with no rows at all; an empty client cannot train or report
    `num_examples`, so we move one random row from the currently largest client. This slightly weakens
    the skew for tiny datasets; the counts move by one row per empty client.
    """
    for split in ("train", "test"):
        rows = by_split.get(split)
        if rows is None or len(rows) < num_clients:
            continue
        for client in range(num_clients):
            counts = np.bincount(assignment[rows], minlength=num_clients)
            if counts[client] == 0:
                donor_rows = rows[assignment[rows] == int(counts.argmax())]
                assignment[rng.choice(donor_rows)] = client
