"""The regularisers of BSP, MCC and AFN against their formulas, written out by hand on small tensors."""

from __future__ import annotations

import math

import pytest
import torch

from dann.methods.afn import stepwise_feature_norm
from dann.methods.bsp import batch_spectral_penalty
from dann.methods.mcc import class_confusion


def largest_eigenvalue_2x2(x: list[list[float]]) -> float:
    """σ_1(X)² for X with 2 columns: the largest eigenvalue of XᵀX = [[a, b], [b, c]], (a+c)/2 + √(((a−c)/2)² + b²)."""
    a = sum(row[0] ** 2 for row in x)
    b = sum(row[0] * row[1] for row in x)
    c = sum(row[1] ** 2 for row in x)
    return (a + c) / 2 + math.sqrt(((a - c) / 2) ** 2 + b**2)


def test_bsp_is_the_largest_squared_singular_value_of_each_domain():
    source = [[1.0, 2.0], [0.5, -1.0], [3.0, 0.0]]
    target = [[0.0, 1.0], [2.0, 2.0], [-1.0, 0.5]]
    penalty = batch_spectral_penalty(torch.tensor(source).double(), torch.tensor(target).double())
    assert float(penalty) == pytest.approx(largest_eigenvalue_2x2(source) + largest_eigenvalue_2x2(target), rel=1e-12)


def test_bsp_of_k_values_is_the_sum_of_svdvals_squared():
    generator = torch.Generator().manual_seed(0)
    source, target = torch.randn(8, 5, generator=generator), torch.randn(8, 5, generator=generator)
    expected = sum(float(torch.linalg.svdvals(x)[:3].pow(2).sum()) for x in (source, target))
    assert float(batch_spectral_penalty(source, target, k=3)) == pytest.approx(expected, rel=1e-5)


def test_mcc_is_the_normalised_off_diagonal_confusion_by_hand():
    logits = [[2.0, 0.5, -1.0], [0.0, 1.5, 0.3], [1.0, 1.0, 2.5], [-0.5, 3.0, 0.0]]
    temperature, n, c = 2.5, 4, 3
    probs = []
    for row in logits:
        exps = [math.exp(z / temperature) for z in row]
        probs.append([e / sum(exps) for e in exps])
    raw = [1 + math.exp(sum(p * math.log(p) for p in row)) for row in probs]  # 1 + e^{-H}
    weights = [n * w / sum(raw) for w in raw]
    confusion = [[sum(probs[i][j] * weights[i] * probs[i][k] for i in range(n)) for k in range(c)] for j in range(c)]
    normalised = [[value / sum(row) for value in row] for row in confusion]
    expected = sum(normalised[j][k] for j in range(c) for k in range(c) if j != k) / c
    got = class_confusion(torch.tensor(logits, dtype=torch.float64), temperature)
    assert float(got) == pytest.approx(expected, rel=1e-12)


def test_mcc_of_one_hot_confident_predictions_is_near_zero():
    logits = torch.tensor([[50.0, 0.0, 0.0], [0.0, 50.0, 0.0], [0.0, 0.0, 50.0]])
    assert float(class_confusion(logits, 1.0)) < 1e-6


def test_safn_by_hand_on_two_examples():
    """mean_i (‖f_i‖.detach() + Δr − ‖f_i‖)²: the value Δr², the gradient −2Δr·f_i / (n‖f_i‖) (n = 2)."""
    rows, step = [[3.0, 4.0], [1.0, 0.0]], 0.5  # norms 5 and 1
    features = torch.tensor(rows, dtype=torch.float64, requires_grad=True)
    loss = stepwise_feature_norm(features, step)
    loss.backward()
    assert float(loss.detach()) == pytest.approx(((5 + step - 5) ** 2 + (1 + step - 1) ** 2) / 2, rel=1e-12)
    expected = [[-2 * step * x / (2 * norm) for x in row] for row, norm in zip(rows, [5.0, 1.0], strict=True)]
    torch.testing.assert_close(features.grad, torch.tensor(expected, dtype=torch.float64))
