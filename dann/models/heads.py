"""Fully connected heads: the label predictor G_y and the domain classifier G_d."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def mlp(
    in_features: int,
    out_features: int,
    hidden: Sequence[int] = (),
    dropout: float = 0.0,
    batch_norm: bool = False,
) -> nn.Sequential:
    """[B, in_features] → [B, out_features]: Linear → [BatchNorm] → ReLU → [Dropout] for each
    hidden width, then a final Linear.

    `hidden=()` gives a single linear layer (logistic regression on the features). The
    label predictor has `out_features` = the number of classes, the domain classifier 1.
    """
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden:
        layers.append(nn.Linear(width, h))
        if batch_norm:
            layers.append(nn.BatchNorm1d(h))
        layers.append(nn.ReLU(inplace=True))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)
