"""What the coordinator accepts of a client's update before folding it into the average.

A client may upload exactly its selected units (+ its task's head when `federation.train_head`) and return
exactly the client-state tensors the workers declared: anything else is a protocol error
(`check_upload`). An update with NaN/Inf tensors or a non-finite loss is rejected for the round
(`non_finite`). Uploads sent in a narrower `federation.upload_dtype` are cast back to the global dtype
(`to_global_dtype`). Pure functions of the update and the model's public facts (`ModelInfo`).
"""

from __future__ import annotations

import math
from typing import Mapping

import torch

from f3ocus.federated.messages import ClientUpdate, ModelInfo


def non_finite(update: ClientUpdate) -> str | None:
    """Why `update` must not be aggregated (NaN/Inf in its tensors or loss), or None when it is fine."""
    if not math.isfinite(update.train_loss):
        return f"train_loss is {update.train_loss}"
    bad = [name for name, tensor in (*update.tensors.items(), *(update.client_state or {}).items())
           if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]
    if bad:
        return f"NaN/Inf in {len(bad)} tensor(s), e.g. {bad[0]}"
    return None


def check_upload(update: ClientUpdate, mask: tuple[bool, ...], info: ModelInfo,
                 client_kinds: Mapping[str, str], train_head: bool) -> None:
    """Raise when `update` holds tensors outside the client's selection `mask` (+ its head when `train_head`)
    or client-state tensors other than the declared ones (none when the method keeps none).

    Raises:
        RuntimeError: the protocol error, naming the client and a few of the offending tensors.
    """
    allowed = {n for unit, chosen in zip(info.units, mask) if chosen for n in info.unit_parameter_names[unit]}
    allowed |= set(head_names(update.client, client_kinds, info)) if train_head else set()
    extra = set(update.tensors) - allowed
    if extra:
        raise RuntimeError(f"client {update.client} uploaded tensors outside its selection: {sorted(extra)[:3]}")
    declared = set(info.client_state_names)
    returned = set(update.client_state or {})
    if returned != declared and (declared or update.client_state is not None):
        raise RuntimeError(f"client {update.client} returned client-state tensors {sorted(returned)[:3]}, not "
                           f"the declared {sorted(declared)[:3]}")


def head_names(client: str, client_kinds: Mapping[str, str], info: ModelInfo) -> tuple[str, ...]:
    """The head tensors `client` trains: its task's head (a VQA client must not send the untouched
    multi-label head, which would pull that head's average back to the broadcast), or every head when
    the client's kind or the model's per-task heads are unknown."""
    kind = client_kinds.get(client)
    if kind is not None and kind in info.task_heads:
        return info.task_heads[kind]
    return tuple(info.unit_parameter_names.get("head", ()))


def to_global_dtype(tensors: Mapping[str, torch.Tensor],
                    global_tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An upload's tensors in the dtype of the global state (a float16/bfloat16 upload back to float32)."""
    return {name: t.to(global_tensors[name].dtype) if name in global_tensors else t for name, t in tensors.items()}


__all__ = ["non_finite", "check_upload", "head_names", "to_global_dtype"]
