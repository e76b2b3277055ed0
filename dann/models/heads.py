"""Fully connected heads: the label predictor G_y and the domain classifier G_d."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from torch import nn

from dann.config.spec import Setting


def mlp(
    in_features: int,
    out_features: int,
    hidden: Annotated[Sequence[int], Setting("widths of the hidden layers; [] for none", ge=1)] = (),
    dropout: Annotated[float, Setting("the probability of zeroing a unit, after each hidden layer", ge=0, lt=1)] = 0.0,
    batch_norm: Annotated[bool, Setting("BatchNorm after each hidden layer")] = False,
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
