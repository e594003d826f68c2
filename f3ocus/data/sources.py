"""`task: multi_source`: several datasets, one client each (T1 real: SLAKE + VQA-RAD + three VQA-Med years;
T6: Ultra-MedVQA modalities + chest X-ray classification sets).

It owns turning `DataConfig.sources` into one un-partitioned table: each `SourceConfig` is built by the
ordinary single-task builder (as if it were the whole `data:` section, with that source's task, path and
modalities, the shared sizes, test fraction and bad-row policy), into its own sub-folder of the store's
folder for anything generated, with a seed derived from (seed, source name) so that two generated sources
differ. Every row of a source gets `client` = `source` = the source's name, so a natural partition by
source (or client) gives one client per source. A source left with no row is an error, whatever
`data.on_bad_row` says (the federation and its per-client budgets would silently change).
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable
from pathlib import Path

from datasets import Dataset, concatenate_datasets

from f3ocus.config.schema import DataConfig, SourceConfig
from f3ocus.data.schema import FEATURES, BadRows, DataError

Builder = Callable[..., Dataset]


def source_config(cfg: DataConfig, source: SourceConfig) -> DataConfig:
    """The single-task `DataConfig` that builds one source: its task, path, modalities; the rest shared."""
    return dataclasses.replace(cfg, task=source.task, path=source.path, modalities=source.modalities, sources=())


def source_seed(seed: int, name: str) -> int:
    """A seed for one source, derived from the experiment seed and the source name (31 bits)."""
    return (seed * 1_000_003 + zlib.crc32(name.encode())) % (2**31)


def build_multi_source(cfg: DataConfig, out_dir: Path, *, seed: int, build: Builder,
                       report: BadRows | None = None) -> Dataset:
    """Build every source of `cfg.sources` and tag its rows with the source name.

    Args:
        cfg: a `task: multi_source` data config.
        out_dir: the store's folder; source `name` generates into `out_dir/sources/<name>/`.
        seed: the experiment seed.
        build: the single-task builder, `build(cfg, out_dir, seed=, report=) -> Dataset`
            (`f3ocus.data.prepare.build_task_dataset`).
        report: skipped rows of every source are counted here.

    Returns:
        all sources' rows, in `cfg.sources` order, with client = source = the source's name.

    Raises:
        DataError: not a multi_source config, or a source with no usable row.
    """
    if cfg.task != "multi_source" or not cfg.sources:
        raise DataError("build_multi_source: needs data.task multi_source with at least one source")
    parts = []
    for source in cfg.sources:
        name = source.client
        rows = build(source_config(cfg, source), Path(out_dir) / "sources" / name, seed=source_seed(seed, name),
                     report=report)
        if len(rows) == 0:
            raise DataError(f"data.sources: source {name!r} ({source.task}, {source.path}) has no usable row")
        rows = rows.remove_columns(["client", "source"])
        rows = rows.add_column("client", [name] * len(rows)).add_column("source", [name] * len(rows))
        parts.append(rows.select_columns(list(FEATURES)))
    return concatenate_datasets(parts) if len(parts) > 1 else parts[0]
