"""Top eigenvalue of a layerwise kernel J Jᵀ (docs/METHOD.md §2): exact from rows of J, or matrix-free.

Pure linear algebra, no model in sight. `top_eigenvalue_exact` forms the smaller of the two Grams
J Jᵀ (m × m) and Jᵀ J (p × p) in float64 and calls `eigvalsh`; both share their non-zero spectrum,
so λ₁(J Jᵀ) = λ₁(Jᵀ J) = σ_max(J)². `top_eigenvalue_lanczos` needs only a symmetric PSD mat-vec
(x -> J(Jᵀx) or x -> Jᵀ(Jx)) and runs Lanczos with full re-orthogonalisation, which on these
spectra converges in far fewer mat-vecs than power iteration for the same accuracy.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

# Columns of J converted to float64 at a time when forming the Gram (bounds the float64 copy).
_GRAM_CHUNK = 16_384


def top_eigenvalue_exact(blocks: Sequence[torch.Tensor]) -> float:
    """λ₁(J Jᵀ) of an explicit J given as column blocks, via the smaller Gram and `eigvalsh`.

    Args:
        blocks: J = [B_1 | B_2 | ...], each (m, p_t) (one row per output, one column per parameter
            scalar of tensor t), any float dtype; p = Σ p_t.

    Returns:
        The largest eigenvalue (≥ 0; 0.0 for an all-zero or empty J).
    """
    blocks = [block for block in blocks if block.numel() > 0]
    if not blocks:
        return 0.0
    m, p = blocks[0].shape[0], sum(block.shape[1] for block in blocks)
    if m <= p:
        gram = torch.zeros(m, m, dtype=torch.float64, device=blocks[0].device)  # (m, m) = J Jᵀ = Σ_t B_t B_tᵀ
        for block in blocks:
            for start in range(0, block.shape[1], _GRAM_CHUNK):
                chunk = block[:, start:start + _GRAM_CHUNK].to(torch.float64)  # (m, c)
                gram += chunk @ chunk.T
    else:
        wide = torch.cat(blocks, dim=1).to(torch.float64)  # (m, p), p < m: small
        gram = wide.T @ wide  # (p, p) = Jᵀ J
    return max(float(torch.linalg.eigvalsh(gram)[-1]), 0.0)


def top_eigenvalue_gram(gram: torch.Tensor) -> float:
    """λ₁ of an explicit symmetric PSD kernel matrix (m, m) via `eigvalsh` in float64 (≥ 0; 0.0 if empty)."""
    if gram.numel() == 0:
        return 0.0
    return max(float(torch.linalg.eigvalsh(gram.to(torch.float64))[-1]), 0.0)


def top_eigenvalue_lanczos(matvec: Callable[[torch.Tensor], torch.Tensor], dim: int, *,
                           generator: torch.Generator, tol: float = 1e-4, max_iter: int = 40,
                           device: torch.device | str = "cpu") -> float:
    """λ₁ of a symmetric PSD operator given only its mat-vec (Lanczos, full re-orthogonalisation).

    Stops when the top Ritz value moves by less than `tol` (relative) between two iterations, when
    the Krylov space is exhausted (an invariant subspace or `dim` steps: then the value is exact),
    or after `max_iter` steps.

    Args:
        matvec: x (dim,) float64 -> A x (dim,) float64.
        dim: size of the space A acts on.
        generator: draws the start vector (a CPU generator: the same start on every device).
        tol: relative change of the top Ritz value that counts as converged.
        max_iter: most mat-vecs.
        device: where the Krylov basis lives (the mat-vec's device).

    Returns:
        The top Ritz value (≥ 0), a lower bound on λ₁ that is tight at convergence.
    """
    vector = torch.randn(dim, generator=generator, dtype=torch.float64).to(device)  # (dim,)
    vector /= vector.norm()
    basis: list[torch.Tensor] = [vector]
    alphas: list[float] = []
    betas: list[float] = []
    previous = -1.0
    for step in range(min(dim, max_iter)):
        image = matvec(basis[-1])  # (dim,)
        alphas.append(float(basis[-1] @ image))
        stacked = torch.stack(basis)  # (k, dim)
        image = image - stacked.T @ (stacked @ image)  # full re-orthogonalisation, twice for safety
        image = image - stacked.T @ (stacked @ image)
        ritz = _top_ritz_value(alphas, betas)
        beta = float(image.norm())
        scale = max(abs(ritz), 1e-300)
        if beta <= 1e-10 * scale or abs(ritz - previous) <= tol * scale:
            return max(ritz, 0.0)
        previous = ritz
        betas.append(beta)
        basis.append(image / beta)
    return max(_top_ritz_value(alphas, betas), 0.0)


def _top_ritz_value(alphas: list[float], betas: list[float]) -> float:
    """Largest eigenvalue of the Lanczos tridiagonal matrix (diagonal `alphas`, off-diagonal `betas`)."""
    size = len(alphas)
    tridiagonal = torch.diag(torch.tensor(alphas, dtype=torch.float64))  # (k, k)
    if size > 1:
        off = torch.tensor(betas[:size - 1], dtype=torch.float64)  # (k-1,)
        tridiagonal += torch.diag(off, 1) + torch.diag(off, -1)
    return float(torch.linalg.eigvalsh(tridiagonal)[-1])
