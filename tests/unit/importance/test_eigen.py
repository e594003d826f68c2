"""Eigen-solvers of the LNTK scorer (docs/METHOD.md §2) on matrices with hand-known spectra."""

from __future__ import annotations

import pytest
import torch

from f3ocus.importance._eigen import top_eigenvalue_exact, top_eigenvalue_lanczos


def _matrix_with_singular_values(rows: int, cols: int, singular: list[float]) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    left, _ = torch.linalg.qr(torch.randn(rows, len(singular), generator=generator, dtype=torch.float64))
    right, _ = torch.linalg.qr(torch.randn(cols, len(singular), generator=generator, dtype=torch.float64))
    return left @ torch.diag(torch.tensor(singular, dtype=torch.float64)) @ right.T  # (rows, cols)


@pytest.mark.parametrize("shape", [(6, 40), (40, 6)])
def test_exact_is_largest_singular_value_squared_in_both_grams(shape):
    jacobian = _matrix_with_singular_values(*shape, [3.0, 2.0, 0.5])

    value = top_eigenvalue_exact([jacobian[:, :2], jacobian[:, 2:]])

    assert value == pytest.approx(9.0, rel=1e-12)


def test_exact_of_zero_or_empty_jacobian_is_zero():
    assert top_eigenvalue_exact([torch.zeros(4, 3)]) == 0.0
    assert top_eigenvalue_exact([]) == 0.0


def test_lanczos_finds_top_eigenvalue_of_known_operator():
    jacobian = _matrix_with_singular_values(200, 50, [2.0, 1.9, 1.0, 0.3])
    kernel = jacobian @ jacobian.T  # (200, 200), λ₁ = 4

    value = top_eigenvalue_lanczos(lambda x: kernel @ x, 200, generator=torch.Generator().manual_seed(0))

    assert value == pytest.approx(4.0, rel=1e-6)


def test_lanczos_on_zero_operator_is_zero():
    value = top_eigenvalue_lanczos(torch.zeros_like, 5, generator=torch.Generator().manual_seed(0))

    assert value == 0.0
