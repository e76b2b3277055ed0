"""One evaluation pass of a method over a split (`predict_split`), and the accuracies measured on it (`accuracy`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from dann.data import AnySplit, eval_batches, to_model_input
from dann.methods import Method


@dataclass
class Outputs:
    """What the network gives for every example of a split, in the split's order, on the method's device.

    `features`: G_f's output [N, D]; `logits`: the label predictor's class logits [N, C], the same
    numbers `method.predict` gives; `labels`: the split's labels [N] (int64). Model-selection
    criteria read these instead of running the network again (dann.selection.criteria).
    """

    features: Tensor
    logits: Tensor
    labels: Tensor


@torch.no_grad()
def predict_split(
    method: Method,
    split: AnySplit,
    batch_size: int,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    num_workers: int = 0,
) -> Outputs:
    """Features, logits and labels of every example of `split`, in eval mode, without a host sync.

    `split`: an in-memory `Split` (best moved to the method's device once, with
    `dann.data.to_device`) or an `ImageSplit`, decoded with its eval transforms by
    `num_workers` DataLoader workers; unreadable images skipped under `dataset.on_corrupt=skip`
    are left out. Features stay on the device: [N, D] floats, which for the largest splits
    (VisDA's 55k × 2048 without a bottleneck) is a few hundred MB.
    """
    was_training = method.training
    method.eval()
    features, logits, labels = [], [], []
    for x, y in eval_batches(split, batch_size, next(method.parameters()).device, num_workers):
        f, z = method.features_and_logits(to_model_input(x, mean, std))
        features.append(f)
        logits.append(z)
        labels.append(y)
    method.train(was_training)
    return Outputs(torch.cat(features), torch.cat(logits), torch.cat(labels))


def accuracy(outputs: Outputs, num_classes: int) -> dict[str, float]:
    """Overall accuracy and mean per-class accuracy (fractions in [0, 1]); one host sync.

    Classes absent from the split are left out of the per-class mean.
    """
    y = outputs.labels
    hit = outputs.logits.argmax(dim=1) == y
    total = torch.bincount(y, minlength=num_classes).cpu()
    correct = torch.bincount(y[hit], minlength=num_classes).cpu()
    present = total > 0
    return {
        "acc": correct.sum().item() / max(total.sum().item(), 1),
        "acc_per_class_mean": (correct[present] / total[present]).mean().item(),
    }
