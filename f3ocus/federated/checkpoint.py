"""The checkpoint file: a `FederationState` written so that reading it can never run code, and checked on read.

Format (version 1): one safetensors file. Its tensors are the global state's tensors; its text metadata holds
`format` ("f3ocus.checkpoint"), `version`, `state` (the plain state as JSON: last completed round, history,
MLflow run id, the run's identity, the last round's metric records, the index of the clients' own states in
`<run dir>/client_state/`, `f3ocus.federated.client_state`) and `sha256`, a digest of the state JSON
and of every tensor's name, dtype, shape and bytes. safetensors holds raw bytes behind a JSON header, so
loading it deserialises nothing executable (a pickle-based `torch.load` can run arbitrary code; run
directories live on shared storage on a cluster).

Two files per run directory: `checkpoint.safetensors` (the last completed round) and
`checkpoint.prev.safetensors` (the round before). A save writes and fsyncs a temporary file, hard-links the
current checkpoint to the previous name, then renames the new file over the current one, so at every instant
the current name holds a complete checkpoint and the previous one stays until the new one is complete.
`load_latest` falls back to the previous checkpoint when the current one is missing or fails its checks,
saying so; the unusable file is set aside as `checkpoint.corrupt.safetensors` by the next save (never
deleted, never changed by a read). Every refusal is a `CheckpointError` naming the file and what is wrong.

The run identity (`run_identity`) records what a resume must not change: the resolved config (except the
keys in `RESUMABLE_KEYS`) and the facts derived from the data and model (clients and their train sizes, the
answer set, multi-label classes, the data fingerprint, the units). `identity_differences` lists what differs.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import torch

if TYPE_CHECKING:
    from f3ocus.config.schema import ExperimentConfig
    from f3ocus.federated.state import Federation, FederationState

CHECKPOINT = "checkpoint.safetensors"
PREVIOUS_CHECKPOINT = "checkpoint.prev.safetensors"
SET_ASIDE_CHECKPOINT = "checkpoint.corrupt.safetensors"
LEGACY_CHECKPOINT = "checkpoint.pt"  # pickle-based, written by f3ocus before format version 1; never loaded
FORMAT = "f3ocus.checkpoint"
VERSION = 1
# Config keys (a key or a whole section) a resume may change: none of them changes what is computed.
# Thread counts follow worker_resources.num_cpus, which can move float sums in their last bits.
RESUMABLE_KEYS = ("name", "federation.rounds", "federation.engine", "federation.num_actors",
                  "federation.worker_resources", "federation.coordinator_resources",
                  "federation.coordinator_restarts", "federation.client_retries", "federation.min_clients",
                  "tracking")
_IDENTITY_FACTS = ("units", "clients", "num_examples", "answers", "findings", "data_fingerprint")
_STATE_KEYS = {"round_idx": int, "history": list, "mlflow_run_id": (str, type(None)), "identity": dict,
               "last_log": (dict, type(None))}


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; `path` is the file, `problem` says what is wrong (one line)."""

    def __init__(self, path: Path | str, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)
        self.problem = problem


# ------------------------------------------------------------------------------------------------ writing
def write_checkpoint(state: "FederationState", path: Path) -> None:
    """Write `state` to `path`, keeping the file it replaces as the previous checkpoint (see module doc).

    With `state.set_aside_latest` (the state was loaded from the previous checkpoint because the current
    one was unusable) the unusable file is renamed to `SET_ASIDE_CHECKPOINT` instead of becoming the
    previous checkpoint, which keeps the good one.
    """
    from safetensors.torch import save_file

    path = Path(path)
    tensors = _storable(state.tensors)
    text = json.dumps(_plain(state), default=_jsonable)
    metadata = {"format": FORMAT, "version": str(VERSION), "state": text,
                "sha256": _digest(text.encode(), tensors)}
    partial = path.with_name(path.name + ".tmp")
    try:
        save_file(tensors, str(partial), metadata=metadata)
        _fsync(partial)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    if path.exists():
        if state.set_aside_latest:
            os.replace(path, path.with_name(SET_ASIDE_CHECKPOINT))
        else:
            _keep_as_previous(path, path.with_name(PREVIOUS_CHECKPOINT))
    os.replace(partial, path)
    state.set_aside_latest = False
    _fsync_dir(path.parent)


def _keep_as_previous(path: Path, previous: Path) -> None:
    """Make `previous` the file now at `path` while `path` keeps existing (a hard link; a rename where the
    filesystem has no hard links, which leaves `path` missing until the new file is renamed in)."""
    link = previous.with_name(previous.name + ".tmp")
    link.unlink(missing_ok=True)
    try:
        os.link(path, link)
    except OSError:
        os.replace(path, previous)
        return
    os.replace(link, previous)


def _storable(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous tensors that own their memory (safetensors refuses views and shared storage)."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, tensor in tensors.items():
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"checkpoint tensor {name!r} is a {type(tensor).__name__}, not a torch.Tensor")
        tensor = tensor.detach().cpu().contiguous()
        storage = tensor.untyped_storage()
        if storage.data_ptr() in seen or storage.nbytes() != tensor.numel() * tensor.element_size():
            tensor = tensor.clone()
        seen.add(tensor.untyped_storage().data_ptr())
        out[name] = tensor
    return out


def _plain(state: "FederationState") -> dict[str, Any]:
    return {"round_idx": int(state.round_idx), "history": state.history, "mlflow_run_id": state.mlflow_run_id,
            "identity": state.identity, "last_log": state.last_log, "client_states": state.client_states}


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy scalars and arrays, 0-d tensors
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"a {type(value).__name__} cannot be stored in the checkpoint's JSON state: {value!r:.80}")


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(folder: Path) -> None:
    """Make the renames durable (best effort: not every platform can open a directory)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def _digest(state_json: bytes, tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 over the state JSON and each tensor's (name, dtype, shape, bytes), in name order."""
    digest = hashlib.sha256()
    digest.update(len(state_json).to_bytes(8, "little"))
    digest.update(state_json)
    for name in sorted(tensors):
        tensor = tensors[name]
        header = json.dumps([name, str(tensor.dtype), list(tensor.shape)]).encode()
        digest.update(len(header).to_bytes(8, "little"))
        digest.update(header)
        raw = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
        digest.update(memoryview(raw.numpy()))
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------------ reading
def read_checkpoint(path: Path) -> "FederationState":
    """Read and check one checkpoint file; it is only read (never changed, whatever it holds).

    Raises:
        CheckpointError: the file is missing, empty, not a safetensors file (a pickle, a zip archive from
            `torch.save`, random bytes, cut short), another program's safetensors file, of a newer format
            version, fails its checksum, or holds a malformed state record.
    """
    from f3ocus.federated.state import FederationState

    path = Path(path)
    metadata, tensors = _read_safetensors(path, _leading_bytes(path))
    if metadata.get("format") != FORMAT:
        raise CheckpointError(path, "a safetensors file, but not an f3ocus checkpoint (no f3ocus format record "
                                    "in its metadata)")
    version = metadata.get("version", "")
    if not version.isdigit():
        raise CheckpointError(path, f"malformed f3ocus checkpoint: format version {version!r}")
    if int(version) > VERSION:
        raise CheckpointError(path, f"written by a newer f3ocus (checkpoint format version {version}; this "
                                    f"version reads up to {VERSION})")
    text = metadata.get("state")
    if text is None or "sha256" not in metadata:
        raise CheckpointError(path, "malformed f3ocus checkpoint: no state record or no checksum")
    if _digest(text.encode(), tensors) != metadata["sha256"]:
        raise CheckpointError(path, "checksum mismatch: the file changed after it was written (corrupted)")
    plain = _parse_state(path, text)
    return FederationState(plain["round_idx"], tensors, plain["history"], plain["mlflow_run_id"],
                           identity=plain["identity"], last_log=plain["last_log"],
                           client_states=plain.get("client_states", {}), loaded_from=path)


def _leading_bytes(path: Path) -> bytes:
    """The file's first bytes (to say what a file that is not safetensors looks like); refuses an empty file."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
    except FileNotFoundError:
        raise CheckpointError(path, "no such file") from None
    except OSError as error:
        raise CheckpointError(path, f"cannot read: {error.strerror or error}") from None
    if not head:
        raise CheckpointError(path, "empty file (0 bytes): the write that made it never finished")
    return head


def _read_safetensors(path: Path, head: bytes) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """Tensors and text metadata of a safetensors file (a parser of raw bytes: nothing is deserialised)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            # get_tensor maps the file; a copy keeps the state from changing (or faulting) if the file does.
            tensors = {name: _owned_copy(handle.get_tensor(name)) for name in handle.keys()}
    except Exception as error:  # noqa: BLE001 - safetensors' Rust errors have no common Python base
        if head.startswith(b"PK\x03\x04"):
            raise CheckpointError(path, "a zip archive (torch.save format), not an f3ocus checkpoint; not loaded, "
                                        "since unpickling its contents can run code") from None
        if head[0] == 0x80 and 2 <= head[1] <= 5:  # PROTO opcode + protocol 2-5
            raise CheckpointError(path, "a Python pickle, not an f3ocus checkpoint; not loaded, since unpickling "
                                        "can run code") from None
        raise CheckpointError(path, f"not a readable safetensors file, truncated or corrupted "
                                    f"({_one_line(error)})") from None
    return metadata, tensors


def _owned_copy(tensor: torch.Tensor) -> torch.Tensor:
    """A copy in memory of its own. Through numpy, a plain memcpy: `Tensor.clone` goes through torch's
    intra-op thread pool, 10-20x slower than this on a loaded 2-core machine (measured: 0.8 s vs 48 ms for the
    tiny LLaVA's 106 tensors, 5.7 MB)."""
    if tensor.numel() == 0:
        return torch.empty(tensor.shape, dtype=tensor.dtype)
    raw = tensor.contiguous().reshape(-1).view(torch.uint8).numpy().copy()
    return torch.from_numpy(raw).view(tensor.dtype).reshape(tensor.shape)


def _parse_state(path: Path, text: str) -> dict[str, Any]:
    try:
        plain = json.loads(text)
    except ValueError as error:
        raise CheckpointError(path, f"malformed f3ocus checkpoint: the state record is not JSON ({error})") from None
    if not isinstance(plain, dict):
        raise CheckpointError(path, "malformed f3ocus checkpoint: the state record is not a JSON object")
    for key, kind in _STATE_KEYS.items():
        if key not in plain:
            raise CheckpointError(path, f"malformed f3ocus checkpoint: the state record has no {key!r}")
        if not isinstance(plain[key], kind) or isinstance(plain[key], bool):
            raise CheckpointError(path, f"malformed f3ocus checkpoint: {key!r} is {plain[key]!r:.60}")
    states = plain.get("client_states", {})  # absent in checkpoints of runs without client state
    if not isinstance(states, dict) or not all(isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], int)
                                               and isinstance(entry[1], str) for entry in states.values()):
        raise CheckpointError(path, f"malformed f3ocus checkpoint: 'client_states' is {states!r:.60}")
    if plain["round_idx"] < 0:
        raise CheckpointError(path, f"malformed f3ocus checkpoint: round_idx {plain['round_idx']}")
    return plain


def load_latest(run_dir: Path, warn: Callable[[str], None] = print) -> "FederationState":
    """The state of the last usable checkpoint in `run_dir`: the current one, else the previous one (warned).

    Raises:
        CheckpointError: no usable checkpoint (the current one's problem, and the previous one's when both
            are unusable), or only a pickle-based `checkpoint.pt` of an older f3ocus.
    """
    run_dir = Path(run_dir)
    latest, previous = run_dir / CHECKPOINT, run_dir / PREVIOUS_CHECKPOINT
    problem: CheckpointError | None = None
    if latest.exists():
        try:
            return read_checkpoint(latest)
        except CheckpointError as error:
            problem = error
    if previous.exists():
        try:
            state = read_checkpoint(previous)
        except CheckpointError as error:
            if problem is None:
                raise
            raise CheckpointError(latest, f"{problem.problem}; the previous checkpoint is unusable too "
                                          f"({previous.name}: {error.problem})") from None
        why = problem.problem if problem is not None else "missing (a save was interrupted)"
        warn(f"checkpoint: {latest} is unusable: {why}; resuming from the previous round's checkpoint "
             f"{previous.name} (round {state.round_idx})" + (f"; the unusable file will be kept as "
                                                            f"{SET_ASIDE_CHECKPOINT}" if problem else ""))
        state.set_aside_latest = problem is not None
        return state
    if problem is not None:
        raise problem
    if (run_dir / LEGACY_CHECKPOINT).exists():
        raise CheckpointError(run_dir / LEGACY_CHECKPOINT,
                              "a pickle-based checkpoint of an older f3ocus; not loaded, since unpickling can run "
                              "code, and this version resumes only from checkpoint.safetensors: rerun the experiment")
    raise CheckpointError(run_dir, f"no {CHECKPOINT}: nothing to resume")


# ----------------------------------------------------------------------------------------------- identity
def run_identity(config: "ExperimentConfig", federation: "Federation", units: Sequence[str]) -> dict[str, Any]:
    """What a resume must agree on: the resolved config and the data and model facts it produced."""
    from f3ocus.config.load import to_dict

    return {"config": to_dict(config), "units": list(units), "clients": list(federation.clients),
            "num_examples": {client: int(federation.num_examples[client]) for client in federation.clients},
            "answers": list(federation.answers), "findings": list(federation.findings),
            "data_fingerprint": federation.data_fingerprint}


def identity_differences(stored: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """What differs between a checkpoint's identity and the current run's, one phrase each (empty: agree).

    Compares the config keys of `current["config"]` outside `RESUMABLE_KEYS` (a key the checkpoint's config
    lacks counts as its schema default) and each fact (`units`, `clients`, ...) present in both.
    """
    from f3ocus.config.load import flatten, to_dict
    from f3ocus.config.schema import ExperimentConfig

    differences = []
    if "config" in current:
        defaults = flatten(to_dict(ExperimentConfig()))
        old, new = flatten(stored.get("config") or {}), flatten(current["config"])
        for key in new:
            if _resumable(key):
                continue
            before = old.get(key, defaults.get(key))
            if not _same(before, new[key]):
                differences.append(f"{key} ({_short(before)} -> {_short(new[key])})")
    for fact in _IDENTITY_FACTS:
        if fact in stored and fact in current and not _same(stored[fact], current[fact]):
            differences.append(_describe(fact, stored[fact], current[fact]))
    return differences


def _resumable(key: str) -> bool:
    return any(key == allowed or key.startswith(allowed + ".") for allowed in RESUMABLE_KEYS)


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON would store them (tuples and lists alike; 1 and 1.0 alike, as YAML writes either)."""
    a, b = json.loads(json.dumps(a, default=_jsonable)), json.loads(json.dumps(b, default=_jsonable))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(fact: str, before: Any, after: Any) -> str:
    if isinstance(before, list) and isinstance(after, list):
        gone, new = [v for v in before if v not in after], [v for v in after if v not in before]
        parts = [f"{len(before)} -> {len(after)}"]
        if gone:
            parts.append(f"missing now: {_short(gone[:5])}")
        if new:
            parts.append(f"new: {_short(new[:5])}")
        if not gone and not new:
            parts.append("same values, another order")
        return f"{fact} ({'; '.join(parts)})"
    if isinstance(before, dict) and isinstance(after, dict):
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        return f"{fact} ({', '.join(f'{k}: {before.get(k)} -> {after.get(k)}' for k in changed[:4])})"
    if fact == "data_fingerprint":
        return f"{fact} ({_short(before)} -> {_short(after)}: the data store was prepared from another data " \
               f"config or by another f3ocus version)"
    return f"{fact} ({_short(before)} -> {_short(after)})"


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:200]}" if text else type(error).__name__


__all__ = ["CHECKPOINT", "PREVIOUS_CHECKPOINT", "SET_ASIDE_CHECKPOINT", "LEGACY_CHECKPOINT", "RESUMABLE_KEYS",
           "CheckpointError", "write_checkpoint", "read_checkpoint", "load_latest", "run_identity",
           "identity_differences"]
