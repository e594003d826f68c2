"""The checkpoint file: a faithful round trip, no code run on load, every unusable file refused with its name and
what is wrong (and left as it was), the previous round kept until the next one is complete, and the fallback to
it when the latest is unusable."""

from __future__ import annotations

import hashlib
import json
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from f3ocus.config.load import to_dict
from f3ocus.config.schema import ExperimentConfig
from f3ocus.federated import checkpoint
from f3ocus.federated.checkpoint import (CHECKPOINT, LEGACY_CHECKPOINT, PREVIOUS_CHECKPOINT, SET_ASIDE_CHECKPOINT,
                                         CheckpointError, identity_differences, load_latest, read_checkpoint)
from f3ocus.federated.state import FederationState


def _state(round_idx: int = 1, scale: float = 1.0) -> FederationState:
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4) * scale
    return FederationState(
        round_idx,
        {"unit.weight": base, "unit.view": base[1],  # a view of another tensor's storage
         "head.bias": torch.linspace(-1, 1, 5).to(torch.bfloat16), "head.half": torch.ones(2, dtype=torch.float16),
         "count": torch.tensor(7), "empty": torch.zeros(0, 3)},
        history=[{"round": 0, "accuracy": np.float64(0.25), "loss": float("nan"), "selected": ("a", "b"),
                  "per_client": {"c0": {"accuracy": 0.5}}}],
        mlflow_run_id="0123abcd", identity={"config": {"seed": 3}, "units": ["u0", "u1"]},
        last_log={"step": round_idx, "timestamp_ms": 1_700_000_000_000, "metrics": {"eval/acc": 0.25}})


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Planted:
    """Unpickling this writes `marker`: the attack a pickle-based checkpoint on shared storage allows."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def test_round_trip_keeps_every_tensor_bit_for_bit_and_the_plain_state(tmp_path: Path) -> None:
    # Prepare
    state = _state()
    # Execute
    state.save(tmp_path / CHECKPOINT)
    loaded = FederationState.load(tmp_path / CHECKPOINT)
    # Assert
    assert set(loaded.tensors) == set(state.tensors)
    for name, tensor in state.tensors.items():
        assert loaded.tensors[name].dtype == tensor.dtype and torch.equal(loaded.tensors[name], tensor), name
    assert loaded.round_idx == 1 and loaded.mlflow_run_id == "0123abcd" and loaded.identity == state.identity
    assert loaded.last_log == state.last_log and loaded.loaded_from == tmp_path / CHECKPOINT
    record = loaded.history[0]  # JSON: tuples become lists, numpy scalars floats, NaN stays NaN
    assert record["accuracy"] == 0.25 and record["selected"] == ["a", "b"] and np.isnan(record["loss"])
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT]  # no temporary file left


def test_the_file_is_safetensors_with_a_json_state_a_version_and_a_checksum(tmp_path: Path) -> None:
    _state(round_idx=4).save(tmp_path / CHECKPOINT)
    raw = (tmp_path / CHECKPOINT).read_bytes()
    (header_size,) = struct.unpack("<Q", raw[:8])
    metadata = json.loads(raw[8:8 + header_size])["__metadata__"]
    assert metadata["format"] == "f3ocus.checkpoint" and metadata["version"] == "1"
    assert len(metadata["sha256"]) == 64 and json.loads(metadata["state"])["round_idx"] == 4


def test_the_previous_round_is_kept_until_the_next_one_is_complete(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare
    path = tmp_path / CHECKPOINT
    _state(round_idx=1).save(path)
    _state(round_idx=2, scale=2.0).save(path)
    # Assert: latest = round 2, previous = round 1
    assert read_checkpoint(path).round_idx == 2
    assert read_checkpoint(tmp_path / PREVIOUS_CHECKPOINT).round_idx == 1
    # Execute: the next save fails mid-write (disk full)
    before = {name: _digest(tmp_path / name) for name in (CHECKPOINT, PREVIOUS_CHECKPOINT)}

    def disk_full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\x00" * 100)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("safetensors.torch.save_file", disk_full)
    with pytest.raises(OSError, match="No space"):
        _state(round_idx=3).save(path)
    # Assert: both checkpoints as they were, no partial file left
    assert {name: _digest(tmp_path / name) for name in (CHECKPOINT, PREVIOUS_CHECKPOINT)} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([CHECKPOINT, PREVIOUS_CHECKPOINT])


def _foreign_safetensors(path: Path) -> None:
    save_file({"weight": torch.ones(2, 2)}, str(path), metadata={"format": "pt"})


def _newer_version(path: Path) -> None:
    state = _state()
    text = json.dumps(checkpoint._plain(state), default=checkpoint._jsonable)
    tensors = checkpoint._storable(state.tensors)
    save_file(tensors, str(path), metadata={"format": checkpoint.FORMAT, "version": "2", "state": text,
                                            "sha256": checkpoint._digest(text.encode(), tensors)})


def _well_summed_garbage(path: Path) -> None:
    """A state record that is not an object, under a correct checksum (a writer bug, not corruption)."""
    tensors = {"w": torch.ones(1)}
    save_file(tensors, str(path), metadata={"format": checkpoint.FORMAT, "version": "1", "state": "[]",
                                            "sha256": checkpoint._digest(b"[]", tensors)})


def _flip_a_tensor_byte(path: Path) -> None:
    _state().save(path)
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0x10
    path.write_bytes(bytes(raw))


def _edit_the_round(path: Path) -> None:
    """Same length, valid JSON, wrong content: only the checksum can tell."""
    _state(round_idx=3).save(path)
    raw = path.read_bytes()
    assert raw.count(b'round_idx\\": 3') == 1
    path.write_bytes(raw.replace(b'round_idx\\": 3', b'round_idx\\": 9'))


def _truncate(path: Path) -> None:
    _state().save(path)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


def _torch_save(path: Path) -> None:
    torch.save({"round_idx": 1, "tensors": {"w": torch.ones(2)}}, path)


BAD_FILES = {
    "empty": (lambda p: p.write_bytes(b""), "empty file"),
    "truncated": (_truncate, "not a readable safetensors file"),
    "random bytes": (lambda p: p.write_bytes(np.random.default_rng(0).bytes(4096)), "not a readable safetensors"),
    "another program's torch.save": (_torch_save, "zip archive (torch.save format)"),
    "a pickle": (lambda p: p.write_bytes(pickle.dumps({"round_idx": 1})), "a Python pickle"),
    "foreign safetensors": (_foreign_safetensors, "not an f3ocus checkpoint"),
    "newer format": (_newer_version, "newer f3ocus (checkpoint format version 2"),
    "a flipped tensor byte": (_flip_a_tensor_byte, "checksum mismatch"),
    "an edited round": (_edit_the_round, "checksum mismatch"),
    "a malformed state": (_well_summed_garbage, "not a JSON object"),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_an_unusable_checkpoint_is_refused_by_name_and_left_as_it_was(tmp_path: Path, kind: str) -> None:
    # Prepare
    make, words = BAD_FILES[kind]
    path = tmp_path / CHECKPOINT
    make(path)
    before = _digest(path), path.stat().st_mtime_ns
    # Execute
    with pytest.raises(CheckpointError) as caught:
        load_latest(tmp_path)
    # Assert
    assert caught.value.path == path and words in caught.value.problem, caught.value.problem
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)
    assert (_digest(path), path.stat().st_mtime_ns) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT]


def test_a_planted_pickle_never_runs(tmp_path: Path) -> None:
    # Prepare: the attack, as a bare pickle and inside a torch.save archive, at every name a resume reads
    marker = tmp_path / "pwned.txt"
    pickle.loads(pickle.dumps(Planted(marker)))  # the payload works when unpickled ...
    assert marker.read_text() == "pwned"
    marker.unlink()
    (tmp_path / CHECKPOINT).write_bytes(pickle.dumps(Planted(marker)))
    torch.save({"round_idx": 1, "payload": Planted(marker)}, tmp_path / PREVIOUS_CHECKPOINT)
    torch.save({"round_idx": 1, "payload": Planted(marker)}, tmp_path / LEGACY_CHECKPOINT)
    # Execute / Assert: ... and is never unpickled
    with pytest.raises(CheckpointError, match="can run code"):
        load_latest(tmp_path)
    with pytest.raises(CheckpointError, match="can run code"):
        FederationState.load(tmp_path / PREVIOUS_CHECKPOINT)
    (tmp_path / CHECKPOINT).unlink()
    (tmp_path / PREVIOUS_CHECKPOINT).unlink()
    with pytest.raises(CheckpointError) as caught:
        load_latest(tmp_path)
    assert caught.value.path == tmp_path / LEGACY_CHECKPOINT and "older f3ocus" in caught.value.problem
    assert not marker.exists()


def test_a_corrupted_latest_falls_back_to_the_previous_round_saying_so(tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / CHECKPOINT
    _state(round_idx=1).save(path)
    _state(round_idx=2, scale=2.0).save(path)
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0x01
    path.write_bytes(bytes(raw))
    corrupted = _digest(path)
    warnings: list[str] = []
    # Execute
    state = load_latest(tmp_path, warn=warnings.append)
    # Assert: round 1, with one line naming the unusable file, why, and the file used
    assert state.round_idx == 1 and state.loaded_from == tmp_path / PREVIOUS_CHECKPOINT
    assert len(warnings) == 1 and str(path) in warnings[0] and "checksum mismatch" in warnings[0]
    assert PREVIOUS_CHECKPOINT in warnings[0] and "(round 1)" in warnings[0]
    assert _digest(path) == corrupted  # reading changed nothing
    # Execute: the redone round 2 is saved
    state.round_idx = 2
    state.save(path)
    # Assert: the corrupted file is set aside (not rotated over the good previous one)
    assert read_checkpoint(path).round_idx == 2
    assert read_checkpoint(tmp_path / PREVIOUS_CHECKPOINT).round_idx == 1
    assert _digest(tmp_path / SET_ASIDE_CHECKPOINT) == corrupted
    state.round_idx = 3
    state.save(path)  # from now on the usual rotation
    assert read_checkpoint(tmp_path / PREVIOUS_CHECKPOINT).round_idx == 2


def test_a_missing_latest_falls_back_and_two_unusable_files_are_both_named(tmp_path: Path) -> None:
    _state(round_idx=1).save(tmp_path / CHECKPOINT)
    _state(round_idx=2).save(tmp_path / CHECKPOINT)
    (tmp_path / CHECKPOINT).unlink()  # a save interrupted between two renames (no hard links)
    warnings: list[str] = []
    assert load_latest(tmp_path, warn=warnings.append).round_idx == 1
    assert "missing" in warnings[0]
    (tmp_path / CHECKPOINT).write_bytes(b"")
    (tmp_path / PREVIOUS_CHECKPOINT).write_bytes(b"garbage!")
    with pytest.raises(CheckpointError) as caught:
        load_latest(tmp_path)
    assert caught.value.path == tmp_path / CHECKPOINT and "empty file" in caught.value.problem
    assert f"{PREVIOUS_CHECKPOINT}: not a readable safetensors file" in caught.value.problem


def test_no_checkpoint_at_all(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="nothing to resume"):
        load_latest(tmp_path)


def test_identity_names_what_changes_the_computation_and_ignores_what_may_change() -> None:
    # Prepare
    stored = {"config": to_dict(ExperimentConfig()), "units": ["u0", "u1", "u2"], "clients": ["a", "b"],
              "answers": ["no", "yes"], "num_examples": {"a": 10, "b": 20}}
    may_change = ExperimentConfig()
    import dataclasses
    may_change = dataclasses.replace(
        may_change, name="other", federation=dataclasses.replace(may_change.federation, rounds=50, num_actors=7,
                                                                 engine="local", client_retries=3),
        tracking=dataclasses.replace(may_change.tracking, experiment="x", tracking_uri="http://h:5000"))
    must_not = dataclasses.replace(
        ExperimentConfig(), seed=1, model=dataclasses.replace(ExperimentConfig().model, unit_mode="adapter"),
        federation=dataclasses.replace(ExperimentConfig().federation, lr=0.5, budgets=(1, 2)))
    # Execute / Assert
    assert identity_differences(stored, {"config": to_dict(may_change), "units": ["u0", "u1", "u2"]}) == []
    differences = identity_differences(stored, {"config": to_dict(must_not), "units": ["u0", "u1"],
                                                "clients": ["a", "c"], "answers": ["no", "yes", "maybe"],
                                                "num_examples": {"a": 10, "c": 5}})
    text = "; ".join(differences)
    for words in ("seed (0 -> 1)", "model.unit_mode ('layer' -> 'adapter')", "federation.lr (0.001 -> 0.5)",
                  "federation.budgets (2 -> [1, 2])", "units (3 -> 2; missing now: ['u2'])",
                  "clients (2 -> 2; missing now: ['b']; new: ['c'])", "answers (2 -> 3; new: ['maybe'])",
                  "num_examples (b: 20 -> None, c: None -> 5)"):
        assert words in text, (words, text)
    assert len(differences) == 8


def test_a_key_the_checkpoint_predates_counts_as_its_default() -> None:
    old = to_dict(ExperimentConfig())
    del old["data"]["validation_fraction"]  # written before the key existed
    assert identity_differences({"config": old}, {"config": to_dict(ExperimentConfig())}) == []


def test_a_checkpoint_whose_header_size_reads_like_a_pickle_opcode_still_loads(tmp_path: Path) -> None:
    # The first 8 bytes are the header size (little-endian): 0x80 0x02 .. must not be taken for a pickle.
    path = tmp_path / CHECKPOINT
    for pad in range(0, 1200, 2):
        state = FederationState(1, {"w": torch.ones(1)}, [{"note": "x" * pad}], identity={"config": {}})
        state.save(path)
        raw = path.read_bytes()
        if raw[0] == 0x80 and 2 <= raw[1] <= 5:
            break
    else:
        pytest.fail("no padding gave a header size starting 0x80 0x02-0x05")
    assert read_checkpoint(path).history == [{"note": "x" * pad}]


def test_loaded_tensors_do_not_follow_later_changes_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / CHECKPOINT
    _state().save(path)
    loaded = read_checkpoint(path)
    expected = {name: tensor.clone() for name, tensor in loaded.tensors.items()}
    raw = bytearray(path.read_bytes())
    path.write_bytes(bytes(b ^ 0xFF for b in raw))  # rewritten in place (same inode)
    assert all(torch.equal(loaded.tensors[name], tensor) for name, tensor in expected.items())
