"""Per-unit Gram of per-sample loss gradients from one forward + one backward ("ghost" kernel, docs/METHOD.md §2).

The "grad" LNTK kernel of unit l is K^l_ij = <∇_{θ^l} ℓ_i, ∇_{θ^l} ℓ_j> (n × n), ℓ_i the loss of sample i
(`f3ocus.models.losses.per_sample_loss`: cross-entropy, or BCE summed over classes for multi-label rows).
With the loss *summed* over samples and samples independent in the forward (eval mode), the gradient
reaching row block i of a module's output comes from ℓ_i alone, so hooks on ONE batched forward + backward
yield every per-sample gradient (Goodfellow 2015; Opacus; Li et al. 2021 "ghost clipping"). The backward
asks autograd only for the hooked modules' output gradients, never for weight gradients. Per parameter tensor:

  - nn.Linear with input rows a_i (T×d_in) and output gradient g_i (T×d_out) of sample i:
    ∇_W ℓ_i = g_iᵀ a_i, so <∇_W ℓ_i, ∇_W ℓ_j> = Σ_{t,s} <a_it, a_js><g_it, g_js>
    = sum((a_i a_jᵀ) ⊙ (g_i g_jᵀ)).
    "ghost" evaluates that without forming ∇_W ℓ_i (≈ 2(nT)²(d_in + d_out) flops); "materialise" forms
    the n per-sample d_out×d_in gradients (one bmm) and their Gram (≈ 2nT·d_in·d_out + 2n²·d_in·d_out):
    the cheaper is chosen per layer. Bias: ∇_b ℓ_i = Σ_t g_it. A module called several times (shared
    weights) has its calls concatenated along T. LoRA A/B are nn.Linear modules inside peft layers, so
    adapter mode runs the same code.
  - nn.LayerNorm: ∇_w ℓ_i = Σ_t g_it ⊙ x̂_it (x̂ recomputed from the captured input), ∇_b ℓ_i = Σ_t g_it.
  - any other module owning unit tensors (RMSNorm, a conv patch embedding, ...) and called on one
    batch-leading tensor: ∇_θ <M_θ(x_i), g_i> per sample, recomputed locally with `torch.func`
    (vmap over samples; a loop over samples if the module does not vmap), after checking that
    re-running it on the captured input reproduces its output.
  - a module whose input is flattened over samples (n·k rows, e.g. OPT's MLP reshapes (n, T, d) to
    (n·T, d)) is read as k consecutive rows per sample; this layout is *verified* by a second, weighted
    backward restricted to those modules (∂Σ_i w_i ℓ_i / ∂y_r must equal w_{r//k} ∂Σ_i ℓ_i / ∂y_r for
    random w_i, which holds iff row r only carries ℓ_{r//k}'s gradient); `verify=True` checks every module.
  - every tensor that cannot be handled exactly — its module called in another way, the tensor also
    read outside its module's forward (tied weights: found by counting its edges in the autograd graph),
    the module's input or output modified in place later, foreign hooks on the module, a failed layout
    check, a tensor with no edge in the autograd graph at all — falls back to explicit per-sample
    Jacobian rows (`_jacobian.jacobian_rows`, as the "exact" solver), for that tensor only, and is
    listed in `GhostGrams.fallback`. Nothing is dropped.

Padding needs nothing: a padded token's output gradient is zero (the pooled feature never reads it), so
its terms vanish (token rows without a gradient in any sample are skipped); a sample with label -1 has
loss 0, hence a zero row and column. The one assumption, shared with the "exact" solver's chunked
passes, is that samples do not interact in the eval-mode forward; flattened layouts always, and every
module with `verify=True`, are checked for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from f3ocus.importance._jacobian import jacobian_rows
from f3ocus.models.losses import per_sample_loss
from f3ocus.utils.device import full_precision

FLOAT_BYTES = 4
# Per-layer choice: ghost when its flops < _GHOST_DISCOUNT × materialise flops. The ghost products are two
# large GEMMs, the materialised route n small (T-deep) GEMMs: measured on 2 CPU threads (n = 16,
# T = 8-64, d = 8-384) ghost runs ~2× more flops per second, so equal times sit at a flops ratio of ~2.
_GHOST_DISCOUNT = 2.0
# Layout check of the weighted backward, per call:
#   |∂(Σ w ℓ)/∂y − w ∂(Σ ℓ)/∂y| ≤ tol · max(s, floor · s_max),
# s = max |∂(Σ w ℓ)/∂y| of the call, s_max the largest s of all checked calls: gradients below 1e-7 of the
# largest one are float rounding residue (seen on cross-attention queries at ~1e-12) and cannot be judged.
_LAYOUT_TOL = 1e-4
_LAYOUT_FLOOR = 1e-7


@dataclass
class GhostGrams:
    """Result of `unit_grams`.

    Attributes:
        grams: unit -> (n, n) float64 Gram of the unit's per-sample loss gradients.
        fallback: parameter names whose per-sample gradients came from per-sample backward passes.
        ghost: Linear weights whose Gram was formed without materialising per-sample gradients.
        flat: modules whose sample-flattened input layout was verified and used.
    """

    grams: dict[str, torch.Tensor]
    fallback: list[str] = field(default_factory=list)
    ghost: list[str] = field(default_factory=list)
    flat: list[str] = field(default_factory=list)


@dataclass
class _Call:
    """One hooked call: its (detached) input, its output (in the graph), rows per sample, version."""

    input: torch.Tensor
    output: torch.Tensor
    rows: int  # 1: batch-leading (n, ...); k > 1: flattened (n·k, ...), k consecutive rows per sample
    versions: tuple[int, int]  # of the input and the output when recorded (an in-place change shows)
    edges: dict[str, int]  # parameter name -> autograd edges into it inside this call's forward


def unit_grams(model: nn.Module, inputs: dict[str, torch.Tensor], labels: torch.Tensor,
               unit_names: dict[str, list[str]], *, max_block_bytes: int = 256 * 1024**2,
               samples_per_pass: int = 4, verify: bool = False, force_fallback: Sequence[str] = ()) -> GhostGrams:
    """Gram of per-sample loss gradients of each unit, from one forward + one backward (+ fallbacks).

    Args:
        model: a `VqaModel` (forward(**inputs) -> (n, k)) in eval mode with NO parameter requiring grad
            (the caller restores its state; see `base.preserved_state`). Samples must not interact in
            its forward (checked for flattened layouts, and for all modules with `verify`).
        inputs: encoded batch (n, ...).
        labels: (n,) long, -1 = outside the answer set (zero gradient); or (n, C) multi-hot targets (BCE).
        unit_names: unit -> its parameter names (as in `named_parameters()`).
        max_block_bytes: most bytes of one per-layer temporary (materialised per-sample gradients, or
            one sample block of the ghost token kernels); a layer over it goes ghost, in sample blocks.
        samples_per_pass: samples per backward pass of the fallback.
        verify: check the per-sample layout of every hooked module with the weighted backward (costs
            one more backward; a failing module falls back).
        force_fallback: parameter names to send to the fallback anyway (tests).

    Returns:
        `GhostGrams`, grams in `unit_names` order, on the CPU.
    """
    n = int(labels.shape[0])
    params = dict(model.named_parameters())
    modules = dict(model.named_modules())
    owner = {name: name.rpartition(".") for name in params}  # name -> (module path, ".", attribute)
    wanted = [name for names in unit_names.values() for name in names]
    fallback = set(force_fallback)
    hooked: dict[str, list[str]] = {}  # module path -> its wanted parameter names
    for name in wanted:
        if name not in fallback and _hookable(modules[owner[name][0]]):
            hooked.setdefault(owner[name][0], []).append(name)
        else:
            fallback.add(name)

    flags = {name: param.requires_grad for name, param in params.items()}
    try:
        wanted_set = set(wanted)
        for name, param in params.items():
            param.requires_grad_(name in wanted_set)  # only the unit tensors: no other weight gets an edge
        losses, calls = _recorded_forward(model, inputs, labels, {path: modules[path] for path in hooked},
                                          {id(params[name]): name for name in wanted}, hooked, fallback)
        hooked = {path: kept for path, names in hooked.items()
                  if (kept := [name for name in names if name not in fallback])}
        out_grads = _output_grads(losses, {path: calls[path] for path in hooked}, verify, hooked, fallback)
        del losses
        for param in params.values():
            param.requires_grad_(False)  # the fallback differentiates through torch.func only
        per_name, ghost, flat = _hooked_grams(modules, hooked, calls, out_grads, owner, n, max_block_bytes, fallback)
        del out_grads, calls
        fallback_names = [name for name in wanted if name in fallback]
        if fallback_names:
            rows = jacobian_rows(model, inputs, labels, "grad", fallback_names, samples_per_pass)
            with full_precision(labels.device):
                for name in fallback_names:
                    block = rows.pop(name).to(torch.float64)  # (n, p_t)
                    per_name[name] = block @ block.T
    finally:
        for name, param in params.items():
            param.requires_grad_(flags[name])

    grams = {}
    for unit, names in unit_names.items():
        gram = torch.zeros(n, n, dtype=torch.float64, device=labels.device)
        for name in names:
            gram += per_name[name].to(gram.device)
        grams[unit] = ((gram + gram.T) / 2).cpu()  # exactly symmetric; float32 products are not quite
    return GhostGrams(grams, fallback_names, ghost, flat)


def _hooked_grams(modules: dict[str, nn.Module], hooked: dict[str, list[str]], calls: dict[str, list[_Call]],
                  out_grads: dict[int, torch.Tensor], owner: dict[str, tuple[str, str, str]], n: int,
                  max_block_bytes: int, fallback: set[str]) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """(n, n) Grams of every hooked tensor from its module's recorded (input, output grad) pairs.

    Returns:
        ({parameter name: Gram}, Linear weights done by ghost, modules used with flattened rows). A module
        whose output is not a function of its input alone sends its tensors to `fallback` instead.

    The Gram products run with autocast off (`full_precision`): under `federation.precision: bf16` the
    recorded activations and gradients are widened to float32 (`_wide`) and multiplied in float32, never
    in bfloat16. The replay check runs under the caller's autocast, as the recorded forward did.
    """
    per_name: dict[str, torch.Tensor] = {}  # parameter name -> (n, n) float64
    ghost: list[str] = []
    for path, names in hooked.items():
        module = modules[path]
        pairs = [(call.input, out_grads[id(call)]) for call in calls[path]]
        attributes = {owner[name][2]: name for name in names}
        device = calls[path][0].output.device if calls[path] else torch.device("cpu")
        if _is_plain(module, nn.Linear):
            with full_precision(device):
                per_name.update(_linear_grams(pairs, attributes, n, max_block_bytes, ghost))
        elif _is_plain(module, nn.LayerNorm):
            with full_precision(device):
                per_name.update(_layer_norm_grams(module, pairs, attributes, n))
        elif _replays(module, calls[path]):
            with full_precision(device):
                per_name.update(_local_grams(module, pairs, attributes, n))
        else:  # its output is not a function of its input alone (state, randomness)
            fallback.update(names)
    flat = [path for path in hooked if any(call.rows > 1 for call in calls[path]) and path not in fallback]
    return per_name, ghost, flat


def _recorded_forward(model: nn.Module, inputs: dict[str, torch.Tensor], labels: torch.Tensor,
                      modules: dict[str, nn.Module], ids: dict[int, str], hooked: dict[str, list[str]],
                      fallback: set[str]) -> tuple[torch.Tensor, dict[str, list[_Call]]]:
    """The hooked forward: per-sample losses (n,) and each module's recorded calls that the loss reads.

    Adds to `fallback` every hooked tensor the hooks cannot account for exactly: module called unusably,
    input or output changed in place after the call, the tensor read outside its module's forward (tied
    weights: more autograd edges into it than inside the recorded calls), or not in the graph at all (no
    gradient, or hidden from autograd, e.g. by reentrant checkpointing: the fallback tells which).
    """
    n = int(labels.shape[0])
    calls: dict[str, list[_Call]] = {path: [] for path in modules}
    bad: set[str] = set()  # modules called in a way the hooks cannot use
    handles = [module.register_forward_hook(_recorder(path, n, _row_wise(module), calls, bad, ids), with_kwargs=True)
               for path, module in modules.items()]
    try:
        with torch.enable_grad():
            logits = model(**inputs).float()  # (n, k); float32 also under bf16 autocast
            losses = per_sample_loss(logits, labels)  # (n,): CE, or BCE summed over classes for (n, C) labels
    finally:
        for handle in handles:
            handle.remove()
    live, total_edges = _walk([losses.grad_fn], ids, set())
    for path, names in hooked.items():
        calls[path] = [call for call in calls[path] if call.output.grad_fn in live]
        stale = any((call.input._version, call.output._version) != call.versions for call in calls[path])
        for name in names:
            local = sum(call.edges.get(name, 0) for call in calls[path])
            if path in bad or stale or local != total_edges.get(name, 0) or local == 0:
                fallback.add(name)
    return losses, calls


def _output_grads(losses: torch.Tensor, calls: dict[str, list[_Call]], verify: bool,
                  hooked: dict[str, list[str]], fallback: set[str]) -> dict[int, torch.Tensor]:
    """id(call) -> ∂(Σ_i ℓ_i)/∂(call output), one backward that computes no weight gradient.

    Calls with flattened rows (all calls with `verify`) are first checked by a weighted backward
    (`_layout_holds`); a module failing it is removed from `hooked` and its tensors go to `fallback`.
    """
    order = [(path, call) for path, path_calls in calls.items() for call in path_calls]
    if not order:
        return {}
    checked = [(path, call) for path, call in order if verify or call.rows > 1]
    if checked:
        weights = 1.0 + torch.rand(losses.shape[0], generator=torch.Generator().manual_seed(0), dtype=losses.dtype)
        weights = weights.to(losses.device)  # (n,)
        weighted = torch.autograd.grad((losses * weights).sum(), [call.output for _, call in checked],
                                       retain_graph=True, allow_unused=True)
    plain = torch.autograd.grad(losses.sum(), [call.output for _, call in order], allow_unused=True)
    out_grads = {id(call): torch.zeros_like(call.output) if value is None else value
                 for (_, call), value in zip(order, plain)}
    if checked:
        floor = _LAYOUT_FLOOR * max((float(value.abs().max()) for value in weighted if value is not None), default=0.0)
        for (path, call), value in zip(checked, weighted):
            if value is not None and not _layout_holds(out_grads[id(call)], value, weights, floor):
                fallback.update(hooked.pop(path, []))
    return out_grads


def _is_plain(module: nn.Module, kind: type) -> bool:
    """An instance of `kind` that runs `kind`'s own forward (not a subclass with another one)."""
    return isinstance(module, kind) and type(module).forward is kind.forward


def _row_wise(module: nn.Module) -> bool:
    """Modules whose output row r depends on input row r only, so a flattened (n·k, ...) input is usable."""
    return _is_plain(module, nn.Linear) or _is_plain(module, nn.LayerNorm)


def _hookable(module: nn.Module) -> bool:
    """No foreign hooks that could alter the module's input or output between F.* and our hook."""
    return not (module._forward_hooks or module._forward_pre_hooks or module._backward_hooks
                or getattr(module, "_backward_pre_hooks", None))


def _recorder(path: str, n: int, row_wise: bool, calls: dict[str, list[_Call]], bad: set[str],
              ids: dict[int, str]):
    """Forward hook of module `path`: records (input, output) when the rows can be told apart by sample."""

    def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
        del module
        tensor_kwargs = any(isinstance(value, torch.Tensor) for value in kwargs.values())
        if (len(args) != 1 or tensor_kwargs or not isinstance(args[0], torch.Tensor)
                or not isinstance(output, torch.Tensor) or args[0].dim() < 2 or output.dim() < 2):
            bad.add(path)
            return
        rows = args[0].shape[0] // n
        if (rows < 1 or args[0].shape[0] != rows * n or output.shape[0] != args[0].shape[0]
                or (rows > 1 and not row_wise)):
            bad.add(path)
            return
        if output.grad_fn is None:  # no gradient reaches this call's parameters (e.g. under no_grad)
            return
        stop = {args[0].grad_fn} if args[0].grad_fn is not None else set()
        _, edges = _walk([output.grad_fn], ids, stop)
        calls[path].append(_Call(args[0].detach(), output, rows, (args[0]._version, output._version), edges))

    return hook


def _walk(roots: list[Any], ids: dict[int, str], stop: set[Any]) -> tuple[set[Any], dict[str, int]]:
    """Autograd nodes reachable from `roots` (not past `stop`) and, per named parameter, the number of
    edges from those nodes into its AccumulateGrad node (= the ops that read it)."""
    seen: set[Any] = set()
    edges: dict[str, int] = {}
    stack = [root for root in roots if root is not None]
    while stack:
        node = stack.pop()
        if node in seen or node in stop:
            continue
        seen.add(node)
        for child, _ in node.next_functions:
            if child is None:
                continue
            variable = getattr(child, "variable", None)
            if variable is not None:
                name = ids.get(id(variable))
                if name is not None:
                    edges[name] = edges.get(name, 0) + 1
                continue
            stack.append(child)
    return seen, edges


def _layout_holds(plain: torch.Tensor, weighted: torch.Tensor, weights: torch.Tensor, floor: float) -> bool:
    """Whether ∂(Σ w ℓ)/∂y = w_{sample(row)} ∂(Σ ℓ)/∂y, rows grouped sample-major (n blocks), up to
    `_LAYOUT_TOL` relative to the call's largest gradient (or `floor`, if larger)."""
    n = weights.shape[0]
    expected = plain.reshape(n, -1) * weights[:, None]  # (n, rest)
    scale = max(float(weighted.abs().max()), floor)
    return float((weighted.reshape(n, -1) - expected).abs().max()) <= _LAYOUT_TOL * scale


def _linear_grams(pairs: list[tuple[torch.Tensor, torch.Tensor]], attributes: dict[str, str], n: int,
                  max_block_bytes: int, ghost: list[str]) -> dict[str, torch.Tensor]:
    """(n, n) Grams of an nn.Linear's weight and/or bias from its calls' (input, output grad) pairs."""
    a = torch.cat([_wide(x).reshape(n, -1, x.shape[-1]) for x, _ in pairs], dim=1)  # (n, T, d_in)
    g = torch.cat([_wide(y).reshape(n, -1, y.shape[-1]) for _, y in pairs], dim=1)  # (n, T, d_out)
    reached = g.abs().amax(dim=(0, 2)) > 0  # (T,): token rows with a gradient in some sample
    if not bool(reached.any()):  # e.g. LoRA A while B = 0: every per-sample gradient is zero
        return {name: torch.zeros(n, n, dtype=torch.float64, device=g.device) for name in attributes.values()}
    if not bool(reached.all()):  # e.g. after the last attention only the pooled token has one: drop the rest
        a, g = a[:, reached], g[:, reached]
    out: dict[str, torch.Tensor] = {}
    if "bias" in attributes:
        bias = g.sum(dim=1).to(torch.float64)  # (n, d_out) = Σ_t g_it
        out[attributes["bias"]] = bias @ bias.T
    if "weight" in attributes:
        tokens, d_in, d_out = a.shape[1], a.shape[2], g.shape[2]
        ghost_flops = 2 * (n * tokens) ** 2 * (d_in + d_out)
        materialise_flops = 2 * n * tokens * d_in * d_out + 2 * n * n * d_in * d_out
        if n * d_in * d_out * FLOAT_BYTES <= max_block_bytes and _GHOST_DISCOUNT * materialise_flops <= ghost_flops:
            per_sample = torch.bmm(g.transpose(1, 2), a).reshape(n, -1)  # (n, d_out·d_in), row i = g_iᵀ a_i
            out[attributes["weight"]] = (per_sample @ per_sample.T).to(torch.float64)
        else:
            ghost.append(attributes["weight"])
            out[attributes["weight"]] = _ghost_gram(a, g, max_block_bytes)
    return out


def _wide(tensor: torch.Tensor) -> torch.Tensor:
    """float16 / bfloat16 activations and gradients in float32 for the Gram products."""
    return tensor.float() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor


def _ghost_gram(a: torch.Tensor, g: torch.Tensor, max_block_bytes: int) -> torch.Tensor:
    """K_ij = sum((a_i a_jᵀ) ⊙ (g_i g_jᵀ)), a (n, T, d_in), g (n, T, d_out), in sample blocks; (n, n) float64."""
    n, tokens = a.shape[0], a.shape[1]
    a_flat, g_flat = a.reshape(n * tokens, a.shape[2]), g.reshape(n * tokens, g.shape[2])  # (nT, d_in), (nT, d_out)
    block = max(1, min(n, max_block_bytes // max(1, 2 * tokens * n * tokens * FLOAT_BYTES)))
    gram = torch.empty(n, n, dtype=torch.float64, device=a.device)
    for start in range(0, n, block):
        stop = min(n, start + block)
        rows = slice(start * tokens, stop * tokens)
        product = (a_flat[rows] @ a_flat.T) * (g_flat[rows] @ g_flat.T)  # (bT, nT)
        gram[start:stop] = product.reshape(stop - start, tokens, n, tokens).sum(dim=(1, 3)).to(torch.float64)
    return (gram + gram.T) / 2  # the two triangles differ by float rounding only


def _layer_norm_grams(module: nn.LayerNorm, pairs: list[tuple[torch.Tensor, torch.Tensor]],
                      attributes: dict[str, str], n: int) -> dict[str, torch.Tensor]:
    """(n, n) Grams of an nn.LayerNorm's weight (Σ_t g ⊙ x̂) and bias (Σ_t g), summed over its calls."""
    shape = tuple(module.normalized_shape)
    totals: dict[str, torch.Tensor] = {}
    for x, out_grad in pairs:
        x, out_grad = _wide(x), _wide(out_grad)
        parts = {"bias": out_grad}
        if "weight" in attributes:
            parts["weight"] = out_grad * F.layer_norm(x, shape, None, None, module.eps)  # g ⊙ x̂
        for attribute, value in parts.items():
            per_sample = value.reshape(n, -1, *shape).sum(dim=1).reshape(n, -1)  # (n, p_t)
            totals[attribute] = per_sample if attribute not in totals else totals[attribute] + per_sample
    return {name: (totals[attribute].to(torch.float64) @ totals[attribute].to(torch.float64).T)
            for attribute, name in attributes.items()}


def _replays(module: nn.Module, calls: list[_Call]) -> bool:
    """Whether re-running the module on each recorded input reproduces the recorded output."""
    with torch.no_grad():
        return all(torch.allclose(module(call.input), call.output, rtol=1e-5, atol=1e-6) for call in calls)


def _local_grams(module: nn.Module, pairs: list[tuple[torch.Tensor, torch.Tensor]], attributes: dict[str, str],
                 n: int) -> dict[str, torch.Tensor]:
    """(n, n) Grams of a module's own tensors: per-sample ∇_θ <M_θ(x_i), g_i>, summed over its calls."""
    primals = {attribute: getattr(module, attribute).detach() for attribute in attributes}
    totals: dict[str, torch.Tensor] = {}
    for x, out_grad in pairs:
        x, out_grad = _wide(x), _wide(out_grad)  # the module reruns in float32 (primals are the float32 weights)
        for attribute, value in _per_sample_module_grads(module, primals, x, out_grad).items():
            flat = value.reshape(n, -1)
            totals[attribute] = flat if attribute not in totals else totals[attribute] + flat
    return {name: totals[attribute].to(torch.float64) @ totals[attribute].to(torch.float64).T
            for attribute, name in attributes.items()}


def _per_sample_module_grads(module: nn.Module, primals: dict[str, torch.Tensor], x: torch.Tensor,
                             out_grad: torch.Tensor) -> dict[str, torch.Tensor]:
    """{attribute: (n, *shape)} = ∇_θ <M_θ(x_i), g_i> per sample i: vmapped, or a loop if M does not vmap."""

    def inner(tensors: dict[str, torch.Tensor], sample: torch.Tensor, cotangent: torch.Tensor) -> torch.Tensor:
        return (functional_call(module, tensors, (sample.unsqueeze(0),)) * cotangent.unsqueeze(0)).sum()

    try:
        return vmap(grad(inner), in_dims=(None, 0, 0))(primals, x, out_grad)
    except Exception:  # noqa: BLE001 - any vmap limitation: the loop below is exact too
        pass
    rows: dict[str, list[torch.Tensor]] = {attribute: [] for attribute in primals}
    for index in range(x.shape[0]):
        with torch.enable_grad():
            tensors = {attribute: value.clone().requires_grad_(True) for attribute, value in primals.items()}
            value = (functional_call(module, tensors, (x[index:index + 1],)) * out_grad[index:index + 1]).sum()
            parts = torch.autograd.grad(value, list(tensors.values()), allow_unused=True)
        for (attribute, tensor), part in zip(tensors.items(), parts):
            rows[attribute].append(torch.zeros_like(tensor) if part is None else part)
    return {attribute: torch.stack(values) for attribute, values in rows.items()}
