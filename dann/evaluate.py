"""Accuracy of a method on a labeled split."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from dann.data import AnySplit, eval_batches, to_model_input
from dann.methods import Method


@torch.no_grad()
def evaluate(
    method: Method,
    split: AnySplit,
    num_classes: int,
    batch_size: int,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    num_workers: int = 0,
) -> dict[str, float]:
    """Overall accuracy and mean per-class accuracy (fractions in [0, 1]).

    `split`: an in-memory `Split` (best moved to the method's device once, with
    `dann.data.to_device`) or an `ImageSplit`, decoded with its eval transforms by
    `num_workers` DataLoader workers. Counts stay on the device until the end: one host
    sync per evaluation. Classes absent from the split are left out of the per-class mean,
    and so are unreadable images skipped under `dataset.on_corrupt=skip`.
    """
    was_training = method.training
    method.eval()
    device = next(method.parameters()).device
    correct = torch.zeros(num_classes, dtype=torch.long, device=device)
    total = torch.zeros(num_classes, dtype=torch.long, device=device)
    for x, y in eval_batches(split, batch_size, device, num_workers):
        hit = method.predict(to_model_input(x, mean, std)).argmax(dim=1) == y
        total += torch.bincount(y, minlength=num_classes)
        correct += torch.bincount(y[hit], minlength=num_classes)
    method.train(was_training)
    correct, total = correct.cpu(), total.cpu()
    present = total > 0
    return {
        "acc": correct.sum().item() / max(total.sum().item(), 1),
        "acc_per_class_mean": (correct[present] / total[present]).mean().item(),
    }
