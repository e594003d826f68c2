"""Masked FedAvg (METHOD.md §4 step 5): each unit is averaged over the clients that trained it.

For every tensor, the new global value is the |D_i|-weighted mean over the updates that contain it;
a tensor nobody sent keeps its global value. Pure function: no I/O, no Ray, inputs are not mutated.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch


def masked_fedavg(global_tensors: Mapping[str, torch.Tensor],
                  updates: Sequence[tuple[int, Mapping[str, torch.Tensor]]]) -> dict[str, torch.Tensor]:
    """Average each tensor over the clients that sent it, weighted by their example counts.

    Args:
        global_tensors: current global value of every trainable tensor (name -> tensor).
        updates: (num_examples, {name: tensor}) per client; a client sends only the units it trained.

    Returns:
        A new name -> tensor map with the same keys as `global_tensors`.

    Raises:
        KeyError: an update holds a tensor the global state does not know.
        ValueError: a shape mismatch or a non-positive example count.
    """
    totals: dict[str, torch.Tensor] = {}
    weights: dict[str, float] = {}
    for num_examples, tensors in updates:
        if num_examples <= 0:
            raise ValueError(f"num_examples must be > 0, got {num_examples}")
        for name, tensor in tensors.items():
            reference = global_tensors[name]
            if tensor.shape != reference.shape:
                raise ValueError(f"{name}: update shape {tuple(tensor.shape)} != global {tuple(reference.shape)}")
            # Accumulate in float64 so the result does not depend on client order beyond rounding.
            contribution = tensor.detach().to(torch.float64) * num_examples
            totals[name] = totals[name] + contribution if name in totals else contribution
            weights[name] = weights.get(name, 0.0) + num_examples
    return {
        name: (totals[name] / weights[name]).to(value.dtype) if name in totals else value.clone()
        for name, value in global_tensors.items()
    }
