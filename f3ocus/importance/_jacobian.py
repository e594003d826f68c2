"""The two LNTK kernels as functions of one unit's tensors, and their Jacobians (docs/METHOD.md §2).

A kernel is a map θ^l -> y ∈ R^m evaluated with `torch.func.functional_call`, the unit's tensors
being the only differentiated arguments (every other tensor of the model is a constant):
  - "logit": y = f(X) flattened, the answer logits of n samples × k answers (m = n·k);
    Θ^l = J_l J_lᵀ is the paper's layerwise NTK. For a multi-label batch (inputs with the model's
    multi-label marker) f is the k = C multi-label logits.
  - "grad": y = (ℓ_1, ..., ℓ_n) the per-sample losses (m = n; a row of J is one sample's loss gradient,
    label -1 gives a zero row); Θ^l is the n × n Gram of those gradients. ℓ_i is
    `f3ocus.models.losses.per_sample_loss`: cross-entropy for (n,) long labels, BCE summed over the
    classes for (n, C) multi-hot labels.
`jacobian_rows` materialises J for several units at once (exact solver); `kernel_matvec` gives the
mat-vec x -> J(Jᵀx) or x -> Jᵀ(Jx), whichever space is smaller, from vjp/jvp (matrix-free solver).
"""

from __future__ import annotations

from typing import Callable, Literal

import torch
from torch import nn
from torch.func import functional_call, jvp, vjp, vmap

from f3ocus.models.losses import per_sample_loss

Kernel = Literal["logit", "grad"]
KERNELS: tuple[str, ...] = ("logit", "grad")
IGNORE = -1


def kernel_outputs(model: nn.Module, tensors: dict[str, torch.Tensor], inputs: dict[str, torch.Tensor],
                   labels: torch.Tensor, kernel: Kernel) -> torch.Tensor:
    """y(θ) of the kernel: the model run with `tensors` substituted for its own.

    Args:
        model: a `VqaModel` (forward(**inputs) -> logits (b, k)).
        tensors: {parameter name: tensor} substituted into the model (the differentiated ones).
        inputs: encoded batch, leading dim b.
        labels: (b,) long answer indices, -1 = outside the answer set; or (b, k) multi-hot targets.
        kernel: "logit" or "grad".

    Returns:
        (b·k,) flattened logits (row-major: sample, then answer) or (b,) per-sample losses.
    """
    logits = functional_call(model, tensors, args=(), kwargs=inputs).float()  # (b, k); float32 under autocast too
    if kernel == "logit":
        return logits.reshape(-1)
    return per_sample_loss(logits, labels)


def output_count(batch_size: int, n_answers: int, kernel: Kernel) -> int:
    """m, the number of rows of J: n·k for "logit", n for "grad"."""
    return batch_size * n_answers if kernel == "logit" else batch_size


def jacobian_rows(model: nn.Module, inputs: dict[str, torch.Tensor], labels: torch.Tensor,
                  kernel: Kernel, names: list[str], samples_per_pass: int = 1) -> dict[str, torch.Tensor]:
    """J = ∂y/∂θ for the named tensors (several units at once), a few samples per backward pass.

    Each pass runs one forward on `samples_per_pass` samples and one backward vmapped over all of
    their outputs (one-hot cotangents), giving every named tensor's rows at once. Samples are
    independent in eval mode, so a small pass wastes little work on the zero cross-sample blocks;
    a single-sample pass wastes none but pays per-call overhead (hence the knob).

    Args:
        model: the `VqaModel`, in eval mode, its own parameters not requiring grad.
        inputs: encoded batch (n, ...).
        labels: (n,) long, or (n, k) multi-hot.
        kernel: "logit" or "grad".
        names: parameter names to differentiate.
        samples_per_pass: samples per forward/backward pass (≥ 1).

    Returns:
        {name: (m, numel) float32}: rows ordered (sample, answer) as in `kernel_outputs`.
    """
    own = dict(model.named_parameters())
    primals = {name: own[name].detach() for name in names}
    with torch.no_grad():  # torch.func ignores it; it stops autograd recording frozen tensors that require grad
        return _fill_rows(model, inputs, labels, kernel, primals, samples_per_pass)


def _fill_rows(model: nn.Module, inputs: dict[str, torch.Tensor], labels: torch.Tensor, kernel: Kernel,
               primals: dict[str, torch.Tensor], samples_per_pass: int) -> dict[str, torch.Tensor]:
    """The pass loop of `jacobian_rows`; returns {name: (m, numel)}."""
    n = int(labels.shape[0])
    rows: dict[str, torch.Tensor] = {}
    row = 0
    for start in range(0, n, samples_per_pass):
        chunk = {key: value[start:start + samples_per_pass] for key, value in inputs.items()}
        chunk_labels = labels[start:start + samples_per_pass]

        def outputs(tensors: dict[str, torch.Tensor]) -> torch.Tensor:
            return kernel_outputs(model, tensors, chunk, chunk_labels, kernel)  # (c·k',)

        values, pullback = vjp(outputs, primals)
        count = values.numel()
        if not rows:
            total = n * (count // int(chunk_labels.shape[0]))  # m = n · outputs per sample
            rows = {name: torch.empty(total, primal.numel(), dtype=primal.dtype, device=primal.device)
                    for name, primal in primals.items()}  # (m, p_t)
        (grads,) = vmap(pullback)(torch.eye(count, dtype=values.dtype, device=values.device))  # {name: (c·k', *shape)}
        for name in primals:
            rows[name][row:row + count] = grads[name].reshape(count, -1)
        row += count
    return rows


def kernel_matvec(model: nn.Module, inputs: dict[str, torch.Tensor], labels: torch.Tensor,
                  kernel: Kernel, names: list[str]) -> tuple[Callable[[torch.Tensor], torch.Tensor], int]:
    """Matrix-free mat-vec of the unit's kernel, in the smaller of output space and parameter space.

    One forward is kept (`torch.func.vjp`) and reused for every Jᵀu; each Jv is a `torch.func.jvp`.
    Neither the kernel nor J is ever formed: memory is the forward graph plus a few vectors of size
    m or p, whatever the number of answers k.

    Args:
        model: the `VqaModel`, in eval mode, its own parameters not requiring grad.
        inputs: encoded batch (n, ...).
        labels: (n,) long, or (n, k) multi-hot.
        kernel: "logit" or "grad".
        names: the unit's parameter names.

    Returns:
        (matvec, dim): matvec maps (dim,) float64 -> (dim,) float64 on the model's device (any input device
        is accepted); it is x -> J(Jᵀx) when
        m ≤ p (dim = m), else x -> Jᵀ(Jx) (dim = p). Both share λ₁ = σ_max(J)².
    """
    own = dict(model.named_parameters())
    primals = {name: own[name].detach() for name in names}
    shapes = [primals[name].shape for name in names]
    sizes = [primals[name].numel() for name in names]

    def outputs(tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        return kernel_outputs(model, tensors, inputs, labels, kernel)  # (m,)

    with torch.no_grad():  # see `jacobian_rows`
        values, pullback_fn = vjp(outputs, primals)

    @torch.no_grad()
    def pull(vector: torch.Tensor) -> torch.Tensor:  # (m,) -> (p,) = Jᵀu
        (grads,) = pullback_fn(vector.to(values.device, values.dtype))
        return torch.cat([grads[name].reshape(-1) for name in names]).to(torch.float64)

    @torch.no_grad()
    def push(vector: torch.Tensor) -> torch.Tensor:  # (p,) -> (m,) = Jv
        pieces = vector.to(values.device, values.dtype).split(sizes)
        tangents = {name: piece.reshape(shape) for name, piece, shape in zip(names, pieces, shapes)}
        return jvp(outputs, (primals,), (tangents,))[1].to(torch.float64)

    m, p = values.numel(), sum(sizes)
    if m <= p:
        return (lambda vector: push(pull(vector))), m
    return (lambda vector: pull(push(vector))), p
