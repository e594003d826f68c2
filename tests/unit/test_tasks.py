"""The task registry: every entry resolves, and reading it (or validating against it) loads no heavy library."""

from __future__ import annotations

import subprocess
import sys

import pytest

from f3ocus.data.hub import HUB_IDS as HUB_IDS_IN_HUB
from f3ocus.tasks import HUB_IDS, LOCAL_TASKS, SOURCE_TASKS, TASK_NAMES, TASKS, resolve


@pytest.mark.parametrize("name", TASK_NAMES)
def test_every_builder_and_modality_list_resolves(name: str) -> None:
    task = TASKS[name]

    assert task.name == name and callable(resolve(task.builder))
    assert task.known_modalities() is None or len(task.known_modalities()) > 0


def test_the_derived_lists_match_the_entries() -> None:
    assert TASK_NAMES == ("ultra_medvqa", "easy_vqa", "slake", "vqa_rad", "pathvqa", "vqamed", "easy_vqa_domains",
                          "cxr_multilabel", "multi_source")
    assert SOURCE_TASKS == TASK_NAMES[:-1]  # a multi_source source cannot itself be multi_source
    assert LOCAL_TASKS == ("ultra_medvqa", "easy_vqa", "vqamed", "cxr_multilabel")
    assert HUB_IDS_IN_HUB is HUB_IDS and list(HUB_IDS) == ["slake", "vqa_rad", "pathvqa"]


def test_the_registry_and_validation_import_neither_datasets_nor_torch() -> None:
    code = ("import sys, f3ocus.tasks, f3ocus.config.validate; "
            "print(sorted(name for name in ('datasets', 'torch', 'transformers') if name in sys.modules))")

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)

    assert done.stdout.split() == ["[]"], done.stderr
