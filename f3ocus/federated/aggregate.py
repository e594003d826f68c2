"""Masked FedAvg (docs/METHOD.md §4 step 5): each unit is averaged over the clients that trained it.

For every tensor, the new global value is the |D_i|-weighted mean over the updates that contain it;
a tensor nobody sent keeps its global value. Pure function: no I/O, no Ray, inputs are not mutated.
Sums are float64 on the global tensor's device (an update on another device, e.g. a GPU, is moved there),
and the result has the global tensor's dtype and device.
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
    average = RunningFedAvg(global_tensors)
    for num_examples, tensors in updates:
        average.add(num_examples, tensors)
    return average.result()


class RunningFedAvg:
    """`masked_fedavg` folded in one update at a time, so a round holds one float64 sum per tensor instead
    of every client's update (memory flat in the number of clients). Adding the same updates in the same
    order gives exactly `masked_fedavg`'s result; `add` does not keep references to the update's tensors.
    """

    def __init__(self, global_tensors: Mapping[str, torch.Tensor]):
        self._global = global_tensors
        self._totals: dict[str, torch.Tensor] = {}
        self._weights: dict[str, float] = {}
        self.count = 0  # updates added

    def add(self, num_examples: int, tensors: Mapping[str, torch.Tensor]) -> None:
        """Fold one client's update in (raises KeyError / ValueError as `masked_fedavg` does, before adding)."""
        if num_examples <= 0:
            raise ValueError(f"num_examples must be > 0, got {num_examples}")
        for name, tensor in tensors.items():
            reference = self._global[name]
            if tensor.shape != reference.shape:
                raise ValueError(f"{name}: update shape {tuple(tensor.shape)} != global {tuple(reference.shape)}")
        for name, tensor in tensors.items():
            # Accumulate in float64 so the result does not depend on client order beyond rounding.
            device = self._global[name].device
            contribution = tensor.detach().to(device=device, dtype=torch.float64) * num_examples
            self._totals[name] = self._totals[name].add_(contribution) if name in self._totals else contribution
            self._weights[name] = self._weights.get(name, 0.0) + num_examples
        self.count += 1

    def result(self) -> dict[str, torch.Tensor]:
        """The new global tensors: the weighted mean where someone sent the tensor, else a copy of the old value."""
        return {
            name: (self._totals[name] / self._weights[name]).to(value.dtype) if name in self._totals else value.clone()
            for name, value in self._global.items()
        }
