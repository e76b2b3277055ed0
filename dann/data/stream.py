"""Endless, resumable streams of mini-batches from in-memory splits, served on the device."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from dann.data.base import Split


def to_model_input(x: Tensor, mean: Sequence[float] | None, std: Sequence[float] | None) -> Tensor:
    """uint8 images → float in [0, 1], normalised per channel; float vectors pass through."""
    if x.dtype != torch.uint8:
        return x
    x = x.float().div_(255.0)
    if mean is not None:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        x = x.sub_(torch.tensor(mean, device=x.device).view(shape)).div_(torch.tensor(std, device=x.device).view(shape))
    return x


class TensorStream:
    """Shuffled mini-batches of a `Split`, epoch after epoch, without end. Needs batch_size <= len(split).

    The whole split lives on `device`, so a batch is one gather with no host
    transfer. Each epoch's order is a permutation drawn from (seed, epoch), so
    the stream's position is two integers and resuming it is exact.
    """

    def __init__(self, split: Split, batch_size: int, seed: int, device: torch.device,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None):
        self.inputs = split.inputs.to(device)
        self.labels = split.labels.to(device)
        self.batch_size = batch_size
        self.seed = seed
        self.mean, self.std = mean, std
        self.epoch = 0
        self.position = 0  # batches already served in this epoch
        self._order = self._permutation(self.epoch)

    def _permutation(self, epoch: int) -> Tensor:
        # Drawn on the CPU so that the order is the same on every device.
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        return torch.randperm(len(self.labels), generator=generator).to(self.labels.device)

    def __iter__(self) -> TensorStream:
        return self

    def __next__(self) -> tuple[Tensor, Tensor]:
        # Incomplete last batches are dropped: every step sees full, equal-sized domain batches.
        if (self.position + 1) * self.batch_size > len(self.labels):
            self.epoch += 1
            self.position = 0
            self._order = self._permutation(self.epoch)
        index = self._order[self.position * self.batch_size:(self.position + 1) * self.batch_size]
        self.position += 1
        return to_model_input(self.inputs[index], self.mean, self.std), self.labels[index]

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._order = self._permutation(self.epoch)
