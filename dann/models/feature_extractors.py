"""Feature extractors G_f. Each takes the input shape (without batch) and exposes `out_features`."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torchvision
from torch import Tensor, nn

from dann.errors import ConfigError


class MnistFeatures(nn.Module):
    """Ganin et al. 2016, Fig. 4(a), MNIST → MNIST-M: conv5×5·32, pool, conv5×5·48, pool.

    Input [B, C, 28, 28] → features [B, 48·4·4 = 768].
    """

    def __init__(self, input_shape: Sequence[int]):
        super().__init__()
        channels = input_shape[0]
        self.layers = nn.Sequential(
            nn.Conv2d(channels, 32, kernel_size=5),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 48, kernel_size=5),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        self.out_features = _flat_size(self.layers, input_shape)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class SvhnFeatures(nn.Module):
    """Ganin et al. 2016, Fig. 4(b), SVHN → MNIST: conv5×5·64, pool, conv5×5·64, pool, conv5×5·128.

    The paper gives no padding; 'same' padding and 3×3/2 pools keep a 32×32 input at
    [B, 128, 8, 8] → features [B, 8192].
    """

    def __init__(self, input_shape: Sequence[int]):
        super().__init__()
        channels = input_shape[0]
        self.layers = nn.Sequential(
            nn.Conv2d(channels, 64, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
            nn.Conv2d(64, 64, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
            nn.Conv2d(64, 128, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.Flatten(),
        )
        self.out_features = _flat_size(self.layers, input_shape)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


_ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


class MlpFeatures(nn.Module):
    """A small MLP for vector inputs such as the two-moons toy: [B, D] → [B, hidden[-1]]."""

    def __init__(self, input_shape: Sequence[int], hidden: Sequence[int] = (15,), activation: str = "relu"):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ConfigError(
                f"model.feature_extractor.activation: unknown '{activation}'; choose one of {sorted(_ACTIVATIONS)}"
            )
        layers: list[nn.Module] = []
        width = int(input_shape[0])
        for h in hidden:
            layers += [nn.Linear(width, h), _ACTIVATIONS[activation]()]
            width = h
        self.layers = nn.Sequential(*layers)
        self.out_features = width

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101")


class ResNetFeatures(nn.Module):
    """A torchvision ResNet without its classifier: [B, 3, H, W] → [B, 512 or 2048].

    `weights` is a torchvision weights name (e.g. "IMAGENET1K_V1") or None for random init.
    """

    def __init__(self, input_shape: Sequence[int], arch: str = "resnet50", weights: str | None = None):
        super().__init__()
        if arch not in RESNETS:
            raise ConfigError(f"model.feature_extractor.arch: unknown '{arch}'; choose one of {list(RESNETS)}")
        resnet = getattr(torchvision.models, arch)(weights=weights)
        self.out_features = resnet.fc.in_features
        resnet.fc = nn.Identity()
        self.resnet = resnet

    def forward(self, x: Tensor) -> Tensor:
        return self.resnet(x)


@torch.no_grad()
def _flat_size(layers: nn.Module, input_shape: Sequence[int]) -> int:
    """Width of `layers`' flattened output for one input of `input_shape`."""
    return int(layers(torch.zeros(1, *input_shape)).shape[1])
