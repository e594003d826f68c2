"""Foundation checkpoints: a very short real pretraining, the completeness marker and the file lock."""

from __future__ import annotations

import functools
import json
import threading
import time
from pathlib import Path

import pytest
from filelock import FileLock

from f3ocus.models import foundation
from f3ocus.models.registry import build_vqa_model, list_units

SMALL = {"train_limit": 48, "eval_limit": 16}


@pytest.fixture
def small_pretrain(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make `ensure_foundation` pretrain on a few examples; records the families it pretrained."""
    calls: list[str] = []
    real = functools.partial(foundation.pretrain, **SMALL)

    def recording(family: str, out_dir: Path, **kwargs):
        calls.append(family)
        return real(family, out_dir, **kwargs)

    monkeypatch.setattr(foundation, "pretrain", recording)
    return calls


def test_foundation_dir_honours_argument_then_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(foundation.ENV_CACHE_DIR, str(tmp_path / "env"))

    assert foundation.foundation_dir("tiny-llava") == tmp_path / "env" / "foundation" / "tiny-llava-v2"
    assert foundation.foundation_dir("vilt", tmp_path) == tmp_path / "foundation" / "tiny-vilt-v2"
    assert foundation.foundation_dir("vilt", tmp_path, image_size=64).name == "tiny-vilt-64px-v2"


def test_ensure_foundation_writes_complete_checkpoint_once_and_model_loads_it(
        tmp_path: Path, small_pretrain: list[str]) -> None:
    path = foundation.ensure_foundation("vilt", tmp_path, log=lambda _: None, steps=2)

    info = json.loads((path / foundation.MARKER).read_text())
    assert {"config.json", "model.safetensors", "processor_config.json", "tokenizer.json"} <= \
        {file.name for file in path.iterdir()}
    assert info["family"] == "vilt" and info["steps"] == 2 and 0 <= info["test_accuracy"] <= 1
    assert {"seconds", "majority_accuracy", "transformers_version"} <= set(info)
    assert foundation.ensure_foundation("vilt", tmp_path, log=lambda _: None) == path
    assert small_pretrain == ["vilt"]
    assert [p.name for p in path.parent.iterdir() if ".tmp-" in p.name] == []
    model = build_vqa_model("vilt", "foundation", answers=["yes", "no"], cache_dir=tmp_path)
    assert list(model.units) == list_units("vilt", "foundation")
    assert small_pretrain == ["vilt"]


def test_incomplete_directory_is_rebuilt(tmp_path: Path, small_pretrain: list[str]) -> None:
    target = foundation.foundation_dir("vilt", tmp_path)
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")

    path = foundation.ensure_foundation("vilt", tmp_path, log=lambda _: None, steps=1)

    assert foundation.is_complete(path) and small_pretrain == ["vilt"]


def test_waiter_on_the_lock_reuses_what_the_holder_finished(tmp_path: Path, small_pretrain: list[str]) -> None:
    target = foundation.foundation_dir("vilt", tmp_path)
    target.parent.mkdir(parents=True)
    result: list[Path] = []
    with FileLock(str(target) + ".lock"):
        waiter = threading.Thread(target=lambda: result.append(
            foundation.ensure_foundation("vilt", tmp_path, log=lambda _: None, steps=1)))
        waiter.start()
        time.sleep(0.5)
        assert waiter.is_alive() and not result
        target.mkdir()  # the lock holder finishes its checkpoint
        (target / foundation.MARKER).write_text("{}")
    waiter.join(timeout=30)

    assert result == [target] and small_pretrain == []
