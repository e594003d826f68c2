"""The on-disk federated dataset: one `save_to_disk` table plus a `meta.json` index of client shards.

`FederatedStore` is what workers open: it knows the sorted client names, the closed answer
vocabulary (VQA rows only), the multi-label classes (`findings`) and each client's task kind, each
client's train/test row indices (so a shard is a `select`, never a scan), each client's train size (the
FedAvg weight, docs/METHOD.md §4) and majority train answer (a baseline), and a fingerprint used by
`f3ocus.data.prepare` to decide whether a cached store is still valid, and what data preparation dropped
(`bad_rows`: rows skipped under `data.on_bad_row: skip`, per reason) or could not fix
(`unseen_test_answers`: VQA test rows whose answer is no train answer, always scored wrong). Layout:
`out_dir/dataset/` (datasets' save_to_disk) and `out_dir/meta.json`, written last.

Multi-label rows (`question_type == "multilabel"`, `f3ocus.data.multilabel`) and VQA rows may share a
store (task heterogeneity, docs/METHOD.md §5 T6), but not a client: a client holds one task kind ("vqa" or
"multilabel"), since its shard is encoded, trained and scored through one head. Multi-label answers are
not answers of the closed VQA answer set. `findings` is the fixed list of all 15 `CXR_FINDINGS` when
the store holds any multi-label row (empty otherwise): the multi-label head's size then does not depend
on which classes a partition happens to leave in the train rows (the paper's "15 classes").
The majority baseline of a multi-label client predicts its most frequent train label set.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, Mapping

import datasets
from datasets import Dataset

from f3ocus.data.answers import closed_set_accuracy, majority_answer, normalize_answer
from f3ocus.data.multilabel import CXR_FINDINGS, MULTILABEL, f1_scores, is_multilabel, multi_hot, subset_accuracy
from f3ocus.data.schema import DataError, column_values

FORMAT_VERSION = 2  # 2: "findings" and per-client "kinds" (multi-label clients)
VQA = "vqa"
TASK_KINDS: tuple[str, ...] = (VQA, MULTILABEL)
SPLITS: tuple[str, ...] = ("train", "test", "val")  # val: carved from the train rows (`data.validation_fraction`)
VALIDATION = "val"


class FederatedStore:
    """A saved, client-partitioned VQA dataset. Build with `save` or `load`, not the constructor."""

    def __init__(self, root: Path, dataset: Dataset, meta: dict[str, Any]):
        self._root = root
        self._dataset = dataset
        self._meta = meta

    @classmethod
    def save(cls, ds: Dataset, out_dir: str | Path, fingerprint: str | None = None,
             bad_rows: Mapping[str, Any] | None = None) -> FederatedStore:
        """Write `ds` (with its `client` and `split` columns set) under `out_dir` and return the store.

        Args:
            ds: rows in the shared layout; every client needs >= 1 train row.
            out_dir: folder for `dataset/` and `meta.json` (replaced if present).
            fingerprint: identity of what was built (e.g. config hash); default a hash of the rows' text.
            bad_rows: what preparation skipped (`BadRows.to_dict()`); kept in meta.json.

        Raises:
            DataError: a client with no train rows, an empty client name, an unknown split value, a client
                holding both VQA and multi-label rows, or a multi-label answer with an unknown finding.
        """
        root = Path(out_dir)
        meta = _index(ds)
        meta["fingerprint"] = fingerprint or _content_hash(ds)
        meta["bad_rows"] = dict(bad_rows) if bad_rows is not None else {"total": 0, "by_reason": {}, "examples": []}
        (root / "meta.json").unlink(missing_ok=True)
        if (root / "dataset").exists():
            shutil.rmtree(root / "dataset")
        root.mkdir(parents=True, exist_ok=True)
        ds.save_to_disk(str(root / "dataset"))
        partial = root / "meta.json.tmp"
        partial.write_text(json.dumps(meta, indent=1, sort_keys=True))
        partial.replace(root / "meta.json")
        return cls.load(root)

    @classmethod
    def load(cls, out_dir: str | Path) -> FederatedStore:
        """Open a store written by `save`.

        Raises:
            DataError: missing or unreadable meta.json / dataset, or another format version.
        """
        root = Path(out_dir)
        meta = read_meta(root)
        if meta is None:
            raise DataError(f"{root / 'meta.json'}: missing or unreadable")
        if meta.get("format_version") != FORMAT_VERSION:
            raise DataError(f"{root / 'meta.json'}: format_version {meta.get('format_version')!r}, "
                            f"expected {FORMAT_VERSION}")
        missing = [key for key in ("num_rows", "clients", "answers", "shards", "majority_answer", "findings", "kinds")
                   if key not in meta]
        if missing:
            raise DataError(f"{root / 'meta.json'}: missing key(s) {missing}")
        try:
            dataset = datasets.load_from_disk(str(root / "dataset"))
        except FileNotFoundError as error:
            raise DataError(f"{root / 'dataset'}: no saved dataset: {error}") from error
        if len(dataset) != meta["num_rows"]:
            raise DataError(f"{root}: dataset has {len(dataset)} rows, meta.json says {meta['num_rows']}")
        return cls(root, dataset, meta)

    @property
    def root(self) -> Path:
        """The folder the store lives in."""
        return self._root

    @property
    def clients(self) -> list[str]:
        """Sorted client names."""
        return list(self._meta["clients"])

    @property
    def answers(self) -> list[str]:
        """Sorted normalised train answers of the VQA rows (the closed answer set; empty without VQA rows)."""
        return list(self._meta["answers"])

    @property
    def findings(self) -> list[str]:
        """Classes of the multi-label head: all of `CXR_FINDINGS` (in that order) if any row is multi-label, else []."""
        return list(self._meta["findings"])

    def task_kind(self, client: str) -> str:
        """"vqa" or "multilabel": what every row of `client` is."""
        self._shard_meta(client, "train")
        return str(self._meta["kinds"][client])

    @property
    def fingerprint(self) -> str:
        """The identity string given at save time."""
        return str(self._meta["fingerprint"])

    @property
    def bad_rows(self) -> dict[str, Any]:
        """Rows skipped while preparing (`data.on_bad_row: skip`): `{"total", "by_reason", "examples"}`."""
        return dict(self._meta.get("bad_rows") or {"total": 0, "by_reason": {}, "examples": []})

    @property
    def skipped_rows(self) -> int:
        """Total rows skipped while preparing (0 with `on_bad_row: fail`, which raises instead)."""
        return int(self.bad_rows.get("total", 0))

    @property
    def unseen_test_answers(self) -> int:
        """Test rows whose normalised answer is no train answer (outside the closed answer set: always wrong)."""
        return int(self._meta.get("unseen_test_answers", 0))

    @property
    def dataset(self) -> Dataset:
        """All rows, every client and split."""
        return self._dataset

    def shard(self, client: str, split: str) -> Dataset:
        """Rows of one client and split, in stored order (a `select` on indices saved in meta.json)."""
        return self._dataset.select(self._shard_meta(client, split)["indices"])

    def num_examples(self, client: str, split: str = "train") -> int:
        """Number of rows of one client and split."""
        return int(self._shard_meta(client, split)["count"])

    def majority_answer(self, client: str) -> str:
        """The client's most frequent normalised train answer (ties: lexicographically smallest)."""
        self._shard_meta(client, "train")
        return str(self._meta["majority_answer"][client])

    def majority_scores(self, client: str, split: str = "test") -> dict[str, float]:
        """The trivial baseline on the client's `split` rows (test, or val): always answer `majority_answer(client)`.

        Returns:
            {"accuracy": exact-match accuracy (for a multi-label client: subset accuracy of predicting its
            most frequent train label set)}, plus {"f1": micro-F1} for a multi-label client.
        """
        majority = self.majority_answer(client)
        test = column_values(self.shard(client, split), "answer")
        if self.task_kind(client) != MULTILABEL:
            return {"accuracy": closed_set_accuracy([majority] * len(test), test)}
        targets = multi_hot(test, self.findings)  # (n, C)
        predicted = multi_hot([majority] * len(test), self.findings)  # (n, C)
        return {"accuracy": subset_accuracy(predicted, targets), "f1": f1_scores(predicted, targets)[0]}

    def _shard_meta(self, client: str, split: str) -> dict[str, Any]:
        if client not in self._meta["shards"]:
            raise KeyError(f"unknown client {client!r}; clients are {self.clients}")
        if split not in SPLITS:
            raise KeyError(f"unknown split {split!r}; expected one of {SPLITS}")
        # A store saved before the val split existed has none: an empty shard.
        return self._meta["shards"][client].get(split, {"indices": [], "count": 0})


def read_meta(out_dir: str | Path) -> dict[str, Any] | None:
    """Return the parsed `out_dir/meta.json`, or None if it is missing, not valid JSON or not an object."""
    path = Path(out_dir) / "meta.json"
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):  # ValueError: JSONDecodeError, UnicodeDecodeError
        return None
    return meta if isinstance(meta, dict) else None


def _index(ds: Dataset) -> dict[str, Any]:
    """Build meta.json's content (all but the fingerprint) from the client, split and answer columns."""
    clients = column_values(ds, "client")
    splits = column_values(ds, "split")
    answers = column_values(ds, "answer")
    rows: dict[str, dict[str, list[int]]] = {}
    for row, (client, split) in enumerate(zip(clients, splits)):
        if not client:
            raise DataError(f"row {row}: empty client name; partition the dataset before saving")
        if split not in SPLITS:
            raise DataError(f"row {row}: split must be one of {SPLITS}, got {split!r}")
        rows.setdefault(client, {name: [] for name in SPLITS})[split].append(row)
    for client, by_split in sorted(rows.items()):
        if not by_split["train"]:
            raise DataError(f"client {client!r} has no train rows ({len(by_split['test'])} test rows)")
    shards = {client: {split: {"indices": indices, "count": len(indices)} for split, indices in by_split.items()}
              for client, by_split in rows.items()}
    majority = {client: majority_answer(answers[row] for row in by_split["train"])
                for client, by_split in rows.items()}
    multilabel = [is_multilabel(kind) for kind in column_values(ds, "question_type")]
    kinds = _client_kinds(rows, multilabel)
    vocabulary = sorted({normalize_answer(answer) for answer, split, multi in zip(answers, splits, multilabel)
                         if split == "train" and not multi})
    known = set(vocabulary)
    unseen = sum(normalize_answer(answer) not in known
                 for answer, split, multi in zip(answers, splits, multilabel) if split == "test" and not multi)
    findings = list(CXR_FINDINGS) if any(multilabel) else []
    for row, (answer, multi) in enumerate(zip(answers, multilabel)):
        if multi:
            try:
                multi_hot([answer], findings)
            except ValueError as error:
                raise DataError(f"row {row} (client {clients[row]!r}): multi-label answer {answer!r}: "
                                f"{str(error).partition(': ')[2]}") from None
    return {"format_version": FORMAT_VERSION, "num_rows": len(ds), "clients": sorted(rows),
            "answers": vocabulary, "findings": findings, "kinds": kinds, "shards": shards,
            "majority_answer": majority, "unseen_test_answers": unseen}


def _client_kinds(rows: dict[str, dict[str, list[int]]], multilabel: list[bool]) -> dict[str, str]:
    """Client -> "vqa" | "multilabel"; a client holding both kinds of row is a `DataError`."""
    kinds = {}
    for client, by_split in sorted(rows.items()):
        flags = [multilabel[row] for indices in by_split.values() for row in indices]
        n_multi = sum(flags)
        if 0 < n_multi < len(flags):
            raise DataError(f"client {client!r} holds {n_multi} multi-label row(s) and {len(flags) - n_multi} VQA "
                            f"row(s); a client holds one task kind (its shard goes through one head): give the "
                            f"multi-label rows their own client")
        kinds[client] = MULTILABEL if n_multi else VQA
    return kinds


def _content_hash(ds: Dataset) -> str:
    digest = hashlib.sha256()
    for name in ("question", "answer", "client", "split"):
        digest.update(json.dumps(column_values(ds, name)).encode())
    return digest.hexdigest()[:16]
