"""The task registry: every value of `data.task`, declared once, read by validation and by data preparation.

Each `Task` says what the config checks need (whether it can be one source of `multi_source`, whether its
`path` is always a local folder or must be set, which modality names it knows, how many clients a natural
partition gives) and how its rows are built (`builder`, a `module:function` dotted name imported only when
data is built). This module imports neither `datasets` nor torch: `f3ocus.config.validate` reads it before
any of them is loaded.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from f3ocus.config.schema import DataConfig


@dataclass(frozen=True)
class Task:
    """One value of `data.task`.

    Attributes:
        name: the `data.task` value.
        builder: "module:function" building the un-partitioned rows, called as
            `builder(cfg, out_dir, seed=, wanted_rows=, test_limit=, report=)` (`f3ocus.data.builders`).
            It returns a list of parts, which are concatenated and then restricted to `cfg.modalities`,
            or a `Dataset` that is already whole.
        source: whether it can be one source of a `multi_source` task.
        local_path: whether `path` is always a local folder (checked to exist), not possibly a hub id.
        requires_path: what `path` must point to when the task cannot run without one (None: optional).
        hub_id: the Hugging Face Hub dataset id it loads by default, if any.
        modalities: "module:NAME" of the modality names `modalities` may list, if the task checks them.
        natural_clients: the client count of a natural partition of a data section of this task, when the
            config alone determines it (the function returns None otherwise); None: never known before
            the data is built.
    """

    name: str
    builder: str
    source: bool = True
    local_path: bool = False
    requires_path: str | None = None
    hub_id: str | None = None
    modalities: str | None = None
    natural_clients: Callable[[DataConfig], int | None] | None = None

    def build(self, *args: Any, **kwargs: Any) -> Any:
        """Call the builder (imported here: it needs `datasets`)."""
        return resolve(self.builder)(*args, **kwargs)

    def known_modalities(self) -> tuple[str, ...] | None:
        """The modality names this task knows, or None if it does not check them."""
        return None if self.modalities is None else tuple(resolve(self.modalities))


def resolve(dotted: str) -> Any:
    """The object named by "module:attribute"."""
    module, _, attribute = dotted.partition(":")
    return getattr(importlib.import_module(module), attribute)


def _multi_source_clients(data: DataConfig) -> int | None:
    return len(data.sources) if data.partition.by in ("source", "client") else None  # one client per source


def _ultra_medvqa_clients(data: DataConfig) -> int | None:
    if data.modalities and data.partition.by == "source":
        return len(data.modalities)  # one client per MedMNIST file
    if data.modalities and data.partition.by == "modality":
        from f3ocus.data.medmnist_meta import medmnist_info

        return len({medmnist_info(flag).modality for flag in data.modalities})
    return None


def _easy_vqa_domains_clients(data: DataConfig) -> int | None:
    if data.partition.by != "modality":
        return None
    from f3ocus.data.domains import FIVE_DOMAINS

    return len(data.modalities or FIVE_DOMAINS)  # one client per domain shift (default: the five)


_BUILDERS = "f3ocus.data.builders"
TASKS: dict[str, Task] = {task.name: task for task in (
    Task("ultra_medvqa", f"{_BUILDERS}:build_ultra_medvqa_task", local_path=True,
         modalities="f3ocus.data.medmnist_meta:FLAGS", natural_clients=_ultra_medvqa_clients),
    Task("easy_vqa", f"{_BUILDERS}:build_easy_vqa_task", local_path=True),
    Task("slake", f"{_BUILDERS}:build_hub_task", hub_id="BoKelvin/SLAKE"),
    Task("vqa_rad", f"{_BUILDERS}:build_hub_task", hub_id="flaviagiammarino/vqa-rad"),
    Task("pathvqa", f"{_BUILDERS}:build_hub_task", hub_id="flaviagiammarino/path-vqa"),
    Task("vqamed", f"{_BUILDERS}:build_vqamed_task", local_path=True, requires_path="a local VQA-Med folder"),
    Task("easy_vqa_domains", f"{_BUILDERS}:build_easy_vqa_domains_task", modalities="f3ocus.data.domains:DOMAINS",
         natural_clients=_easy_vqa_domains_clients),
    Task("cxr_multilabel", f"{_BUILDERS}:build_cxr_task", local_path=True),
    Task("multi_source", f"{_BUILDERS}:build_multi_source_task", source=False,
         natural_clients=_multi_source_clients),
)}
TASK_NAMES: tuple[str, ...] = tuple(TASKS)
SOURCE_TASKS: tuple[str, ...] = tuple(name for name, task in TASKS.items() if task.source)
LOCAL_TASKS: tuple[str, ...] = tuple(name for name, task in TASKS.items() if task.local_path)
HUB_IDS: dict[str, str] = {name: task.hub_id for name, task in TASKS.items() if task.hub_id is not None}

__all__ = ["HUB_IDS", "LOCAL_TASKS", "SOURCE_TASKS", "TASKS", "TASK_NAMES", "Task", "resolve"]
