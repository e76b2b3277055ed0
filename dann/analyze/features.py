"""Features G_f(x) of a split, with the label predictor's predictions and the raw inputs of a subsample."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from dann.data import AnySplit, eval_batches, to_model_input
from dann.models import DANNNetwork

RAW_SIDE = 32  # raw images are average-pooled to at most 32×32 before flattening: a 224×224 RGB image is 150k numbers


@dataclass
class SplitFeatures:
    """One split, in order (unreadable images left out, as in evaluation).

    features: float32 [N, F], the feature extractor's output in eval mode.
    predictions: int64 [N], the label predictor's class. labels: int64 [N], the true class.
    sample: int64 [K], positions (into the N rows) of the subsample used for the proxy A-distance and t-SNE.
    raw: float32 [K, D], the model's inputs at those positions (normalised as in training), flattened.
    """

    features: np.ndarray
    predictions: np.ndarray
    labels: np.ndarray
    sample: np.ndarray
    raw: np.ndarray


def sample_positions(n: int, most: int, seed: int = 0) -> np.ndarray:
    """`most` of the positions 0 … n−1 (all when n <= most), sorted, drawn from `seed`."""
    if n <= most:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=most, replace=False))


@torch.no_grad()
def extract(
    network: DANNNetwork,
    split: AnySplit,
    sample: np.ndarray,
    batch_size: int,
    device: torch.device,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    num_workers: int = 0,
) -> SplitFeatures:
    """One pass over `split` (batched and normalised as `dann.training.evaluate` does) with `network` in eval mode."""
    network.eval()
    keep = np.zeros(len(split), dtype=bool)
    keep[sample] = True
    features, predictions, labels, raw = [], [], [], []
    start = 0
    for x, y in eval_batches(split, batch_size, device, num_workers):
        x = to_model_input(x, mean, std)
        h = network.feature_extractor(x)
        features.append(h.float().cpu())
        predictions.append(network.label_predictor(h).argmax(dim=1).cpu())
        labels.append(y.cpu())
        rows = torch.from_numpy(keep[start : start + len(y)]).to(x.device)
        raw.append(_flat(x[rows]).cpu())
        start += len(y)
    return SplitFeatures(
        features=torch.cat(features).numpy(),
        predictions=torch.cat(predictions).numpy(),
        labels=torch.cat(labels).numpy(),
        sample=np.flatnonzero(keep[:start]),  # positions past the end: images that turned out unreadable
        raw=torch.cat(raw).numpy(),
    )


def _flat(x: torch.Tensor) -> torch.Tensor:
    """[B, …] → [B, D] float32; images pooled to at most RAW_SIDE × RAW_SIDE first."""
    if x.dim() == 4 and max(x.shape[-2:]) > RAW_SIDE:
        x = F.adaptive_avg_pool2d(x, RAW_SIDE)
    return x.float().flatten(1)
