"""The discrepancies of DAN, JAN and Deep CORAL against their formulas, written out by hand on small tensors."""

from __future__ import annotations

import math

import pytest
import torch

from dann.methods.coral import coral_loss
from dann.methods.dan import KERNEL_SCALES, gaussian_kernels, mmd2, scale_gradient
from dann.methods.jan import joint_kernel


def sq_dist(a: torch.Tensor, b: torch.Tensor) -> float:
    return sum((float(x) - float(y)) ** 2 for x, y in zip(a, b, strict=True))


def kernel_by_hand(rows: list[torch.Tensor]) -> list[list[float]]:
    """DAN's family written out: Σ_k exp(−d²/(2·2^k·m)), k = −3..1, m the mean of d² over all pairs."""
    n = len(rows)
    mean = sum(sq_dist(a, b) for a in rows for b in rows) / n**2
    scales = [2.0**k for k in range(-3, 2)]
    return [[sum(math.exp(-sq_dist(a, b) / (2 * s * mean)) for s in scales) for b in rows] for a in rows]


def mmd2_by_hand(k: list[list[float]], n: int) -> float:
    """Gretton et al. (2012), Eq. 3: 1/(n(n−1)) Σ_{i≠j} k(s_i,s_j) + k(t_i,t_j) − k(s_i,t_j) − k(s_j,t_i)."""
    total = 0.0
    for i in range(n):
        for j in range(n):
            if i != j:
                total += k[i][j] + k[n + i][n + j] - k[i][n + j] - k[j][n + i]
    return total / (n * (n - 1))


def test_the_kernel_family_is_the_papers():
    assert KERNEL_SCALES == (0.125, 0.25, 0.5, 1.0, 2.0)


def test_mmd_of_identical_samples_is_zero():
    x = torch.randn(8, 5, generator=torch.Generator().manual_seed(0))
    assert abs(float(mmd2(gaussian_kernels(torch.cat([x, x]))))) < 1e-6


def test_mmd_of_shifted_samples_is_positive():
    x = torch.randn(8, 5, generator=torch.Generator().manual_seed(0))
    assert float(mmd2(gaussian_kernels(torch.cat([x, x + 2.0])))) > 0.1


def test_mmd_is_the_double_sum():
    source = torch.tensor([[0.0, 1.0], [1.0, 0.5], [2.0, -1.0]], dtype=torch.float64)
    target = torch.tensor([[0.5, 0.0], [3.0, 1.0], [-1.0, 2.0]], dtype=torch.float64)
    rows = list(torch.cat([source, target]))
    expected = mmd2_by_hand(kernel_by_hand(rows), 3)
    assert float(mmd2(gaussian_kernels(torch.cat([source, target])))) == pytest.approx(expected, rel=1e-12)


def test_mmd_refuses_unequal_halves():
    with pytest.raises(ValueError, match="equal source and target batches"):
        mmd2(torch.ones(5, 5))


def test_jan_joint_kernel_is_the_product_of_the_layers_kernels():
    features = torch.tensor([[0.0, 1.0], [1.0, 0.5], [2.0, -1.0], [0.5, 0.0]], dtype=torch.float64)
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5], [0.7, 0.3]], dtype=torch.float64)
    sigma = 0.92
    by_features = kernel_by_hand(list(features))
    expected = [
        [by_features[i][j] * math.exp(-sq_dist(probs[i], probs[j]) / (2 * sigma**2)) for j in range(4)]
        for i in range(4)
    ]
    torch.testing.assert_close(joint_kernel(features, probs, sigma), torch.tensor(expected, dtype=torch.float64))
    # JAN's loss is then MMD²_u of that kernel: by hand over the 2 + 2 rows.
    assert float(mmd2(joint_kernel(features, probs, sigma))) == pytest.approx(mmd2_by_hand(expected, 2), rel=1e-12)


def covariance_by_hand(x: torch.Tensor) -> list[list[float]]:
    n, d = x.shape
    mean = [sum(float(x[i, a]) for i in range(n)) / n for a in range(d)]
    return [
        [sum((float(x[i, a]) - mean[a]) * (float(x[i, b]) - mean[b]) for i in range(n)) / (n - 1) for b in range(d)]
        for a in range(d)
    ]


def test_coral_is_the_frobenius_formula():
    generator = torch.Generator().manual_seed(1)
    source = torch.randn(5, 3, generator=generator, dtype=torch.float64)
    target = 2.0 * torch.randn(4, 3, generator=generator, dtype=torch.float64) + 1.0
    cs, ct = covariance_by_hand(source), covariance_by_hand(target)
    expected = sum((cs[a][b] - ct[a][b]) ** 2 for a in range(3) for b in range(3)) / (4 * 3**2)
    assert float(coral_loss(source, target)) == pytest.approx(expected, rel=1e-12)
    assert float(coral_loss(source, source)) == 0.0


@pytest.mark.parametrize("weight", [0.3, torch.tensor(0.3)])  # a float, or a 0-d tensor under compile
def test_scale_gradient_keeps_the_value_and_weights_the_gradient(weight):
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    loss = scale_gradient((x**2).sum(), weight)
    assert float(loss.detach()) == 5.0
    loss.backward()
    torch.testing.assert_close(x.grad, torch.tensor([0.6, 1.2]))
