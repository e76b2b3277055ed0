"""Accuracy of a method on a labelled split."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from dann.data import Split, to_model_input
from dann.methods import Method


@torch.no_grad()
def evaluate(
    method: Method,
    split: Split,
    num_classes: int,
    batch_size: int,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> dict[str, float]:
    """Overall accuracy and mean per-class accuracy (fractions in [0, 1]).

    Counts stay on the split's device until the end: one host sync per evaluation.
    Classes absent from the split are left out of the per-class mean.
    """
    was_training = method.training
    method.eval()
    device = split.labels.device
    correct = torch.zeros(num_classes, dtype=torch.long, device=device)
    total = torch.zeros(num_classes, dtype=torch.long, device=device)
    for start in range(0, len(split), batch_size):
        x = to_model_input(split.inputs[start:start + batch_size], mean, std)
        y = split.labels[start:start + batch_size]
        hit = method.predict(x).argmax(dim=1) == y
        total += torch.bincount(y, minlength=num_classes)
        correct += torch.bincount(y[hit], minlength=num_classes)
    method.train(was_training)
    correct, total = correct.cpu(), total.cpu()
    present = total > 0
    return {
        "acc": correct.sum().item() / max(total.sum().item(), 1),
        "acc_per_class_mean": (correct[present] / total[present]).mean().item(),
    }
