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


def test_medical_corpus_has_its_own_directory_and_pretrains_on_held_out_modalities(
        tmp_path: Path, small_pretrain: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(foundation, "MEDICAL_IMAGES_PER_FLAG", 40)
    assert foundation.foundation_dir("vilt", tmp_path, corpus="medical").name == "tiny-vilt-med-v2"
    with pytest.raises(ValueError, match="corpus"):
        foundation.foundation_dir("vilt", tmp_path, corpus="web")

    path = foundation.ensure_foundation("vilt", tmp_path, log=lambda _: None, steps=2, corpus="medical")

    info = json.loads((path / foundation.MARKER).read_text())
    assert info["corpus"] == "medical" and info["medical_flags"] == list(foundation.MEDICAL_FLAGS)
    assert info["n_medical_test"] == 2 * 8 and 0 <= info["medical_test_accuracy"] <= 1  # 20 % of 40 per flag
    assert not foundation.foundation_dir("vilt", tmp_path).exists()  # the general corpus is not built
    model = build_vqa_model("vilt", "foundation-med", answers=["yes", "no"], cache_dir=tmp_path)
    assert list(model.units) == list_units("vilt", "foundation-med")


def test_medical_corpus_holds_no_t2_modality() -> None:
    """The T2 study setting's clients are MedMNIST modalities the medical foundation never saw."""
    from f3ocus.config import load_config

    t2 = load_config(Path(__file__).resolve().parents[3] / "configs" / "study" / "t2_modality.yaml")
    assert set(foundation.MEDICAL_FLAGS).isdisjoint(t2.data.modalities)
    general, medical = foundation.pretraining_answers(), foundation.pretraining_answers("medical")
    assert set(general) < set(medical) and {"x-ray", "microscopy", "chest", "kidney"} <= set(medical)
