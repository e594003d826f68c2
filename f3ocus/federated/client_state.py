"""The client-state store: each client's own tensors, kept on disk under the run dir between rounds.

A method whose clients keep something of their own across rounds (FedDAT's personal adapter; optimizer
moments or a control variate would fit the same way) declares the tensor names in `ModelInfo.
client_state_names`. Workers stay stateless: the coordinator reads a client's state from this store just
before its task is dispatched, and writes the state the update brings back. Only an index (client ->
round and sha256 of its file) lives in memory, so the coordinator's memory stays flat in the number of
clients (bench/scale.py --store; docs/BENCHMARKS.md, "Client-state store").

Layout: `<run dir>/client_state/<client dir>/<round>.safetensors` (round = the round that produced the
state; the client dir is the client name made file-safe plus a short hash of the real name, so two names
never share a folder). A file is written to a temporary name, fsynced and renamed, so it is complete or
absent. Checkpoints hold the index (`index()`, in `FederationState.client_states`), and a state is only
read through an index entry whose sha256 it must match: a round that was killed half-way leaves files of
a round no checkpoint names, which the redone round overwrites. `commit()` marks the index as saved in a
checkpoint; a client's older files are deleted once neither the current nor the previous checkpoint
names them (the previous one stays usable as the fallback `load_latest` takes).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Mapping

import torch

from f3ocus.federated.checkpoint import CheckpointError

CLIENT_STATE_DIR = "client_state"
_SUFFIX = ".safetensors"


class ClientStateStore:
    """Per-client state on disk, one file per client and round; an index of (round, sha256) in memory.

    Args:
        root: the store's folder (`<run dir>/client_state`), created when missing.
        index: client -> [round, sha256] of the state a checkpoint names (a resumed run's
            `FederationState.client_states`); None or empty for a fresh run.
    """

    def __init__(self, root: Path, index: Mapping[str, list] | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._index: dict[str, tuple[int, str]] = {c: (int(r), str(d)) for c, (r, d) in (index or {}).items()}
        self._committed = dict(self._index)  # what the last checkpoint names
        self._previous = dict(self._index)  # what the checkpoint before it names (a resumed run: the same)

    # ------------------------------------------------------------------------------------ reading
    def load(self, client: str) -> dict[str, torch.Tensor] | None:
        """`client`'s latest state, or None when it has none yet.

        Raises:
            CheckpointError: the file the index names is missing or does not match its sha256.
        """
        entry = self._index.get(client)
        if entry is None:
            return None
        round_idx, digest = entry
        path = self._path(client, round_idx)
        try:
            raw = path.read_bytes()
        except OSError as error:
            raise CheckpointError(path, f"client state of {client!r} (round {round_idx}) is unreadable: "
                                        f"{error.strerror or error}") from None
        if hashlib.sha256(raw).hexdigest() != digest:
            raise CheckpointError(path, f"client state of {client!r} (round {round_idx}) does not match the "
                                        "checksum the checkpoint holds (corrupted)")
        from safetensors.torch import load

        return load(raw)

    def verify(self) -> None:
        """Check that every indexed state exists and matches its checksum (a resume does this before Ray starts).

        Raises:
            CheckpointError: naming the first bad file.
        """
        for client in self._index:
            self.load(client)

    def index(self) -> dict[str, list]:
        """client -> [round, sha256] of its latest state: what a checkpoint stores (JSON-ready)."""
        return {client: [round_idx, digest] for client, (round_idx, digest) in sorted(self._index.items())}

    def __len__(self) -> int:
        return len(self._index)

    # ------------------------------------------------------------------------------------ writing
    def save(self, client: str, round_idx: int, tensors: Mapping[str, torch.Tensor]) -> None:
        """Write `client`'s state produced in `round_idx` and make it the one `load` returns.

        Deletes the client's files that neither this round, the last checkpoint nor the one before names.
        """
        from safetensors.torch import save

        raw = save({name: tensor.detach().cpu().contiguous() for name, tensor in tensors.items()})
        path = self._path(client, round_idx)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".tmp")
        with open(partial, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
        self._index[client] = (round_idx, hashlib.sha256(raw).hexdigest())
        self._prune(client)

    def commit(self) -> None:
        """The current index was just saved in a checkpoint: it becomes the committed one."""
        self._previous, self._committed = self._committed, dict(self._index)

    def _prune(self, client: str) -> None:
        keep = {entry[0] for entry in (self._index.get(client), self._committed.get(client),
                                       self._previous.get(client)) if entry is not None}
        for path in self._path(client, 0).parent.glob(f"*{_SUFFIX}"):
            stem = path.name[:-len(_SUFFIX)]
            if stem.isdigit() and int(stem) not in keep:
                path.unlink(missing_ok=True)

    def _path(self, client: str, round_idx: int) -> Path:
        return self.root / client_folder(client) / f"{round_idx:06d}{_SUFFIX}"


def client_folder(client: str) -> str:
    """A file-safe folder name for `client`: its safe characters + 8 hex of its sha256 (distinct names never collide)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", client)[:64] or "client"
    return f"{safe}-{hashlib.sha256(client.encode()).hexdigest()[:8]}"


__all__ = ["CLIENT_STATE_DIR", "ClientStateStore", "client_folder"]
