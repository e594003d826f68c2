"""LNTK importance (docs/METHOD.md §2): S^l = λ₁(Θ^l) / Σ_k λ₁(Θ^k), Θ^l = J_l J_lᵀ, J_l = ∂y(X)/∂θ^l.

The client-side scorer of F3OCUS. θ^l are the tensors unit l would train in the model's unit mode
(the block's weights, or its LoRA A/B tensors: with B = 0 at init J w.r.t. A is zero and the score
comes from B, which is correct). It runs on the current global model and never writes a weight;
`requires_grad`, `.grad` and train/eval mode are restored by `preserved_state`.

Two kernels (`y` in `_jacobian.py`): "logit", the paper's NTK of the answer logits (n·k × n·k), and
"grad", the n × n Gram of per-sample loss gradients. Three solvers: "exact" materialises J (all units,
a few samples per vmapped backward, within a memory budget) and calls `eigvalsh` on the smaller Gram;
"matfree" runs Lanczos on x -> J(Jᵀx) (or Jᵀ(Jx)) from `torch.func` vjp/jvp per unit, never forming J,
so its memory does not grow with k; "ghost" ("grad" only, `_ghost.py`) forms every unit's n × n Gram
from ONE forward + ONE backward of the summed loss, with module hooks: per nn.Linear,
<∇ℓ_i, ∇ℓ_j> = sum((a_i a_jᵀ) ⊙ (g_i g_jᵀ)) or the materialised per-sample gradients g_iᵀ a_i (the
cheaper per layer), norms from their captured inputs, and an exact per-sample-backward fallback for
any tensor the hooks cannot account for (listed in `last_fallback`; none on the tiny presets).

Default (`lntk`): kernel "grad", solver "ghost" — the fastest variant at equal accuracy.
Figures (docs/BENCHMARKS.md "## LNTK scorer": tiny presets, 16 samples, 13 answers, 2 shared CPU cores;
epoch = 400 samples, batch 32, all units trainable): exact and ghost match the dense references to
≤ 1e-6 relative (tests assert ≤ 1e-4: exact vs jacrev on the tiny LLaVA, ghost vs one backward per
sample on every family in both unit modes), matrix-free to ≤ 6e-4 (tests assert ≤ 1e-2). Time for all
units, as a share of one local epoch: ghost-grad 6-8 % on a quiet host (≤ 19 % in every run so far),
exact-grad 18-49 % (2.3-4.4× slower than ghost in the same run), exact-logit 170-480 %, matfree-grad
250-10800 %, matfree-logit 380-9400 %. Ghost beats exact because it needs one batched forward and one
backward (without weight gradients) for all samples and units, where exact runs n/4 forwards and
vmapped backwards over 4 one-hot cotangents each; both beat matrix-free, which needs ~5-15 full-batch
vjp + jvp pairs per unit, unit after unit. The grad kernel beats the logit kernel because J has n rows
instead of n·k (k = 13 here), ~k× less work.
Use "logit" to follow the paper's Θ^l literally, and "matfree" when n·k·p_l floats of the largest unit
do not fit `max_jacobian_bytes` (k in the thousands): exact then raises MemoryError and says so.
# DEVIATION: the paper's Θ^l is on the outputs f; the default kernel is the per-sample loss-gradient
# Gram (docs/METHOD.md §2 leaves it open), chosen for speed; `lntk_exact_logit` is the literal variant.
# `lntk_exact_grad` (the default before the ghost solver) gives the same values, slower.
Devices and precision: every tensor is made on the model's device (the Lanczos start vector is drawn
from a CPU generator, then moved, so it is the same on every device). Under `federation.precision: bf16`
the model's forward and backward run under bfloat16 autocast (the caller's), but the outputs y are taken
in float32, J rows are float32 (gradients w.r.t. the float32 weights) and every Gram, Gram product and
eigenvalue is formed with autocast off (`f3ocus.utils.device.full_precision`) in float32 / float64. The
matrix-free solver runs entirely with autocast off: its operator is the Gram itself (jvp then vjp), which
bf16 rounding would make non-symmetric.
# DEVIATION: f = the closed-set answer-head logits (the paper's VLMs generate text; its f is unspecified);
# for a multi-label client's batch, the 15 multi-label logits (and ℓ_i = BCE summed over the classes).
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
import torch
from torch import nn

from f3ocus.importance._eigen import top_eigenvalue_exact, top_eigenvalue_gram, top_eigenvalue_lanczos
from f3ocus.importance._ghost import unit_grams
from f3ocus.importance._jacobian import KERNELS, Kernel, jacobian_rows, kernel_matvec, output_count
from f3ocus.importance.base import normalise, preserved_state
from f3ocus.utils.device import full_precision, model_device

Solver = Literal["exact", "matfree", "ghost"]
SOLVERS: tuple[str, ...] = ("exact", "matfree", "ghost")
# The kernels each solver computes: "ghost" builds per-sample loss-gradient Grams, i.e. the "grad" kernel only.
SOLVER_KERNELS: dict[str, tuple[str, ...]] = {"exact": KERNELS, "matfree": KERNELS, "ghost": ("grad",)}
# Solver used when none is given: the fastest exact one for the kernel (see the module docstring).
DEFAULT_SOLVER: dict[str, str] = {"grad": "ghost", "logit": "exact"}
__all__ = ["KERNELS", "SOLVERS", "SOLVER_KERNELS", "DEFAULT_SOLVER", "LntkScorer"]

FLOAT_BYTES = 4
# Cotangents per vmapped backward in the exact solver: more samples per pass waste backward work on
# the zero cross-sample blocks, fewer pay per-call overhead. Measured on the tiny presets ("grad", 16
# samples, best of 3): 4 samples per pass 0.13-0.18 s, 16 per pass 0.19-0.39 s, 1 per pass 0.30-0.44 s.
# With k ≥ 3 answers, "logit" runs one sample (k cotangents) per pass.
_COTANGENTS_PER_PASS = 4


class LntkScorer:
    """Principal eigenvalue of each unit's layerwise kernel, normalised over units (docs/METHOD.md §2).

    Attributes:
        name: registry key / MLflow tag ("lntk" for the default, else "lntk_<solver>_<kernel>").
        kernel: "logit" (answer-logit NTK, n·k × n·k) or "grad" (per-sample loss-gradient Gram, n × n).
        solver: "exact" (explicit J + `eigvalsh`), "matfree" (Lanczos on vjp/jvp, J never formed) or
            "ghost" ("grad" only: per-unit Gram from one forward + one backward with hooks, `_ghost.py`).
        last_fallback: "ghost": parameter names of the last call whose per-sample gradients needed
            per-sample backward passes (empty on the supported families; see `_ghost.py`).
    """

    name: str = "lntk"

    def __init__(self, kernel: Kernel = "grad", solver: Solver | None = None, *,
                 max_jacobian_bytes: int = 2 * 1024**3, tol: float = 1e-3, max_iter: int = 40,
                 seed: int = 0, verify: bool = False, name: str | None = None) -> None:
        """Configure the kernel, the solver and their budgets.

        Args:
            kernel: "logit" or "grad".
            solver: "exact", "matfree" or "ghost" (grad only); default `DEFAULT_SOLVER[kernel]`, the
                fastest exact one: "ghost" for "grad", "exact" for "logit".
            max_jacobian_bytes: exact solver: most bytes of J held at once; units are grouped into
                backward passes that fit (one pass per group). A unit alone over it raises.
                Ghost: most bytes of one layer's per-sample-gradient temporary (over it: ghost blocks).
            tol: matfree: relative change of the top Ritz value that stops Lanczos.
            max_iter: matfree: most Lanczos steps (mat-vecs) per unit.
            seed: matfree: seeds the Lanczos start vectors (unit l uses seed + l).
            verify: ghost: check with one more (weighted) backward that every hooked module's rows carry
                one sample's gradient each (modules that fail fall back); flattened layouts always are.
            name: registry name to report; default derived from kernel and solver.

        Raises:
            ValueError: unknown kernel or solver, a solver without that kernel, or non-positive
                budget / tolerance / iterations.
        """
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
        solver = DEFAULT_SOLVER[kernel] if solver is None else solver
        if solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
        if kernel not in SOLVER_KERNELS[solver]:
            raise ValueError(f"solver {solver!r} computes kernel(s) {SOLVER_KERNELS[solver]} only, got {kernel!r}")
        if max_jacobian_bytes <= 0 or tol <= 0 or max_iter <= 0:
            raise ValueError("max_jacobian_bytes, tol and max_iter must be positive")
        self.kernel: Kernel = kernel
        self.solver: Solver = solver
        self.max_jacobian_bytes = max_jacobian_bytes
        self.tol = tol
        self.max_iter = max_iter
        self.seed = seed
        self.verify = verify
        self.name = name or f"lntk_{solver}_{kernel}"
        self.last_fallback: list[str] = []

    def score(self, model: nn.Module, inputs: dict[str, torch.Tensor], labels: torch.Tensor) -> np.ndarray:
        """S^l = λ₁^l / Σ_k λ₁^k.

        Args:
            model: a `VqaModel` (`units`, `unit_parameter_names()`, forward(**inputs) -> (n, k)).
            inputs: its encoded batch (n, ...).
            labels: (n,) long, -1 = outside the answer set; or (n, k) float multi-hot for a multi-label
                batch (BCE summed over classes); used by the "grad" kernel only.

        Returns:
            (L,) non-negative float64 in `model.units` order, summing to 1.
        """
        return normalise(self.eigenvalues(model, inputs, labels))

    def eigenvalues(self, model: nn.Module, inputs: dict[str, torch.Tensor], labels: torch.Tensor,
                    units: Sequence[str] | None = None) -> np.ndarray:
        """Raw λ₁(Θ^l) per unit (same arguments as `score`).

        Args:
            units: the units to solve for (default: all, in `model.units` order).

        Returns:
            (len(units),) float64, ≥ 0; the generator of unit l is seeded from its index in `model.units`.
        """
        if self.solver == "ghost":
            grams = self.grams(model, inputs, labels, units)  # float64, on the CPU
            with full_precision(torch.device("cpu")):
                return np.asarray([top_eigenvalue_gram(gram) for gram in grams], dtype=np.float64)
        return np.asarray(self._eigenvalues(model, inputs, labels, units), dtype=np.float64)

    def grams(self, model: nn.Module, inputs: dict[str, torch.Tensor], labels: torch.Tensor,
              units: Sequence[str] | None = None) -> list[torch.Tensor]:
        """"ghost" only: the (n, n) float64 Gram Θ^l of per-sample loss gradients of each unit (same
        arguments as `eigenvalues`); sets `last_fallback`.

        Raises:
            ValueError: the solver is not "ghost".
        """
        if self.solver != "ghost":
            raise ValueError(f"grams() needs solver 'ghost', this scorer uses {self.solver!r}")
        unit_names = model.unit_parameter_names()
        units = list(model.units if units is None else units)
        with preserved_state(model):
            model.eval()  # no dropout: the kernel of the deterministic network
            for param in model.parameters():
                param.requires_grad_(False)  # unit_grams switches on exactly the unit tensors
            result = unit_grams(model, inputs, labels, {unit: unit_names[unit] for unit in units},
                                max_block_bytes=self.max_jacobian_bytes, samples_per_pass=_COTANGENTS_PER_PASS,
                                verify=self.verify)
        self.last_fallback = result.fallback
        return [result.grams[unit] for unit in units]

    def _eigenvalues(self, model: nn.Module, inputs: dict[str, torch.Tensor], labels: torch.Tensor,
                     units: Sequence[str] | None) -> list[float]:
        """λ₁ per unit with the "exact" or "matfree" solver."""
        unit_names = model.unit_parameter_names()
        units = list(model.units if units is None else units)
        names = [unit_names[unit] for unit in units]
        seeds = [model.units.index(unit) for unit in units]
        with preserved_state(model):
            model.eval()  # no dropout: the kernel of the deterministic network
            for param in model.parameters():
                param.requires_grad_(False)  # only the substituted unit tensors are differentiated
            if self.solver == "exact":
                return _exact_eigenvalues(model, inputs, labels, self.kernel, dict(zip(units, names)),
                                          self.max_jacobian_bytes)
            # The matrix-free operator is applied in full precision whatever the caller's autocast: under bf16,
            # J v (jvp) and Jᵀ u (vjp) round differently, the operator is then not symmetric and Lanczos misses
            # λ₁ (seen on an H200: one unit's score 0.068 instead of 0.129). Exact and ghost are unaffected.
            with full_precision(model_device(model)):
                return [_matfree_eigenvalue(model, inputs, labels, self.kernel, unit, self._generator(index),
                                            self.tol, self.max_iter) for index, unit in zip(seeds, names)]

    def _generator(self, unit_index: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed + unit_index)


def _exact_eigenvalues(model: nn.Module, inputs: dict[str, torch.Tensor], labels: torch.Tensor,
                       kernel: Kernel, unit_names: dict[str, list[str]], budget: int) -> list[float]:
    """λ₁ per unit (in `unit_names` order) from explicit Jacobian rows, units grouped so that each
    group's J fits `budget` bytes."""
    units, names = list(unit_names), list(unit_names.values())
    sizes = {name: param.numel() for name, param in model.named_parameters()}
    with torch.no_grad():
        n_answers = int(model(**{key: value[:1] for key, value in inputs.items()}).shape[-1])
    rows_per_unit = output_count(int(labels.shape[0]), n_answers, kernel)
    # One vmapped backward over ~_COTANGENTS_PER_PASS outputs: 4 samples for "grad", 1 for "logit".
    samples_per_pass = max(1, _COTANGENTS_PER_PASS // (rows_per_unit // int(labels.shape[0])))
    unit_bytes = [rows_per_unit * sum(sizes[name] for name in unit) * FLOAT_BYTES for unit in names]
    values: list[float] = []
    for group in _budget_groups(unit_bytes, budget, units):
        group_names = [name for index in group for name in names[index]]
        rows = jacobian_rows(model, inputs, labels, kernel, group_names, samples_per_pass)  # float32 rows
        with full_precision(next(iter(rows.values())).device if rows else torch.device("cpu")):
            values.extend(top_eigenvalue_exact([rows.pop(name) for name in names[index]]) for index in group)
    return values


def _budget_groups(unit_bytes: Sequence[int], budget: int, units: Sequence[str]) -> list[list[int]]:
    """Consecutive unit indices packed into groups of at most `budget` bytes.

    Raises:
        MemoryError: one unit alone needs more than `budget` (use solver="matfree").
    """
    groups: list[list[int]] = [[]]
    used = 0
    for index, size in enumerate(unit_bytes):
        if size > budget:
            raise MemoryError(f"exact LNTK: unit {units[index]} needs {size / 2**20:.0f} MiB of Jacobian, over the "
                              f"{budget / 2**20:.0f} MiB budget; use solver='matfree' or raise max_jacobian_bytes")
        if groups[-1] and used + size > budget:
            groups.append([])
            used = 0
        groups[-1].append(index)
        used += size
    return [group for group in groups if group]


def _matfree_eigenvalue(model: nn.Module, inputs: dict[str, torch.Tensor], labels: torch.Tensor, kernel: Kernel,
                        names: list[str], generator: torch.Generator, tol: float, max_iter: int) -> float:
    """λ₁ of one unit by Lanczos on its matrix-free kernel mat-vec (0.0 for a unit without tensors)."""
    if not names:
        return 0.0
    matvec, dim = kernel_matvec(model, inputs, labels, kernel, names)
    return top_eigenvalue_lanczos(matvec, dim, generator=generator, tol=tol, max_iter=max_iter,
                                  device=model_device(model))
