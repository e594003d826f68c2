"""The loss, the unit tensors and their gradients, shared by the baseline scorers.

Every gradient-based baseline (SNIP, GraSP, GradFlow, RGN, Fisher, SPT, FedSelect) runs the same steps:
freeze the whole model, switch on the tensors the units would train in the current unit mode (only
`unit_parameter_names()` is read, so layer, adapter and any later unit mode work alike), run the
forward in eval mode (no dropout noise in a score), take the loss and differentiate it w.r.t. those
tensors. `unit_loss` is the ONE place the loss is defined; `unit_tensors` is the ONE place the model's
state is switched and restored (`base.preserved_state`).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Literal, Sequence

import torch
from torch import nn

from f3ocus.importance.base import preserved_state
from f3ocus.models.losses import IGNORE, mean_loss, per_sample_loss

UnitTensors = dict[str, list[torch.Tensor]]  # unit -> its tensors, in `model.units` order


def unit_loss(model: nn.Module, inputs: dict[str, torch.Tensor], labels: torch.Tensor,
              reduction: Literal["mean", "none"] = "mean") -> torch.Tensor:
    """The training loss of a batch: cross-entropy for VQA rows, binary cross-entropy for multi-label rows.

    Args:
        model: forward(**inputs) -> logits (B, C).
        inputs: encoded batch (B, ...).
        labels: (B,) long answer indices with -1 = outside the answer set (cross-entropy, as in
            `train_epochs`), or (B, C) float multi-hot (binary cross-entropy with logits). The losses are
            `f3ocus.models.losses` (the one definition training and LNTK use): "none" sums BCE over classes.
        reduction: "mean" (scalar: mean over labelled rows; 0 when no row is labelled, so every gradient
            is zero instead of NaN) or "none" ((B,) per-sample losses, 0 for rows labelled -1).

    Returns:
        Scalar or (B,) loss, in the graph of whatever in `model` requires grad.
    """
    logits = model(**inputs).float()  # (B, C); float32 also under bf16 autocast
    if reduction == "none":
        return per_sample_loss(logits, labels)
    if labels.dim() == 1 and not bool((labels != IGNORE).any()):
        return logits.sum() * 0.0  # no labelled row: zero gradients instead of NaN
    return mean_loss(logits, labels)


@contextmanager
def unit_tensors(model: nn.Module) -> Iterator[UnitTensors]:
    """Eval mode, every `.grad` cleared, `requires_grad` on the unit tensors only; all restored on exit.

    Args:
        model: a `VqaModel` (`units`, `unit_parameter_names()`).

    Yields:
        {unit: [its tensors]} in `model.units` order (a unit without tensors maps to []). The answer
        head and everything outside the units stay frozen: they are never selected.
    """
    names = model.unit_parameter_names()
    params = dict(model.named_parameters())
    with preserved_state(model):
        model.eval()
        for param in params.values():
            param.requires_grad_(False)
            param.grad = None
        tensors = {unit: [params[name] for name in names[unit]] for unit in model.units}
        for unit_list in tensors.values():
            for tensor in unit_list:
                tensor.requires_grad_(True)
        yield tensors


def gradients(output: torch.Tensor, tensors: UnitTensors, *, create_graph: bool = False,
              retain_graph: bool | None = None) -> UnitTensors:
    """∂output/∂θ for every unit tensor; a tensor the output does not reach gets zeros (not None).

    Args:
        output: scalar in the graph of the unit tensors.
        tensors: as yielded by `unit_tensors`.
        create_graph: keep the graph of the gradients (for Hessian-vector products).
        retain_graph: as in `torch.autograd.grad` (default: `create_graph`).

    Returns:
        {unit: [gradient per tensor]} with the same shapes as `tensors`.
    """
    flat = [tensor for unit_list in tensors.values() for tensor in unit_list]
    if not flat:
        return {unit: [] for unit in tensors}
    values = torch.autograd.grad(output, flat, create_graph=create_graph, retain_graph=retain_graph,
                                 allow_unused=True)
    filled = iter([torch.zeros_like(tensor) if value is None else value for tensor, value in zip(flat, values)])
    return {unit: [next(filled) for _ in unit_list] for unit, unit_list in tensors.items()}


def loss_gradients(model: nn.Module, inputs: dict[str, torch.Tensor], labels: torch.Tensor,
                   tensors: UnitTensors) -> UnitTensors:
    """Gradients of the mean `unit_loss` w.r.t. the unit tensors (call inside `unit_tensors`), detached."""
    with torch.enable_grad():
        return gradients(unit_loss(model, inputs, labels), tensors)


def unit_sums(values: dict[str, Sequence[torch.Tensor]]) -> list[float]:
    """Σ over each unit's tensors of their elements, in float64 (0.0 for a unit without tensors)."""
    return [float(sum((value.double().sum() for value in unit_values), 0.0)) for unit_values in values.values()]


def unit_norms(values: dict[str, Sequence[torch.Tensor]]) -> list[float]:
    """Euclidean norm of each unit's tensors taken together, in float64."""
    return [value ** 0.5 for value in unit_sums({unit: [v.double().pow(2) for v in unit_values]
                                                 for unit, unit_values in values.items()})]
