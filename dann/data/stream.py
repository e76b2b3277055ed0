"""Endless, resumable streams of mini-batches, served on the device, and ordered evaluation batches.

`TensorStream` serves in-memory splits, `ImageStream` image files through a DataLoader;
both have one contract (see `make_stream`).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Sampler

from dann.data.base import AnySplit, ImageSplit, Split
from dann.data.decode import ImageFiles, collate_images, record_unreadable
from dann.errors import ConfigError, DataError

log = logging.getLogger(__name__)


def worker_count(requested: int) -> int:
    """`dataset.num_workers`, at most half the cores this process may use (at least 1): a run has two
    training streams, and more decoding processes than cores only contend with each other and with
    the training step. Measured in BENCHMARKS.md. The count changes no result (augmentations are
    seeded per image), so the config's value (4; DomainNet 8) can stay sized for a GPU node."""
    cores = len(os.sched_getaffinity(0))
    allowed = min(requested, max(1, cores // 2))
    if allowed < requested:
        _say_capped(requested, cores, allowed)
    return allowed


@functools.cache  # said once per run, not again at every evaluation's loader
def _say_capped(requested: int, cores: int, allowed: int) -> None:
    log.info("dataset.num_workers=%d > half of the %d cores available: %d per stream", requested, cores, allowed)


def make_stream(
    split: AnySplit,
    batch_size: int,
    seed: int,
    device: torch.device,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    num_workers: int = 0,
    shard: tuple[int, int] = (0, 1),
) -> TensorStream | ImageStream:
    """An endless stream of shuffled (x, y) batches of `split`, on `device`. Needs batch_size <= len(split).

    Either kind: `next(stream)` → x (float, normalised by mean/std if uint8 images) and y
    (int64 [batch_size]) on `device`; incomplete last batches dropped; each epoch's order a
    permutation drawn from (seed, epoch), so `state_dict()` is {"epoch", "position"} and
    `load_state_dict` resumes exactly. `num_workers` is used by image splits only.
    `shard`: (rank, world size) of a multi-process run (dann.training.distributed): `batch_size` is then the
    global batch, and this stream serves the rank's contiguous 1/world of each, so the ranks' shards
    are disjoint, together are the one-process batch, and the state is the same on every rank.
    """
    if isinstance(split, ImageSplit):
        return ImageStream(split, batch_size, seed, device, mean, std, num_workers, shard)
    return TensorStream(split, batch_size, seed, device, mean, std, shard)


def epoch_order(seed: int, epoch: int, n: int) -> Tensor:
    """The permutation of n examples for (seed, epoch); drawn on the CPU, so the same on every device."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=generator)


def to_model_input(x: Tensor, mean: Sequence[float] | None, std: Sequence[float] | None) -> Tensor:
    """uint8 images → float in [0, 1], normalised per channel; float vectors pass through."""
    if x.dtype != torch.uint8:
        return x
    x = x.float().div_(255.0)
    if mean is not None:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        mean_t, std_t = _statistics_on(x.device, tuple(mean), tuple(std))
        x = x.sub_(mean_t.view(shape)).div_(std_t.view(shape))
    return x


@functools.lru_cache(maxsize=16)
def _statistics_on(device: torch.device, mean: tuple[float, ...], std: tuple[float, ...]) -> tuple[Tensor, Tensor]:
    # Made once per device: building them per batch would be two host-to-device copies every step.
    return torch.tensor(mean, device=device), torch.tensor(std, device=device)


class TensorStream:
    """Shuffled mini-batches of a `Split`, epoch after epoch, without end. Needs batch_size <= len(split).

    The whole split lives on `device`, so a batch is one gather with no host
    transfer. Each epoch's order is a permutation drawn from (seed, epoch), so
    the stream's position is two integers and resuming it is exact.
    """

    def __init__(
        self,
        split: Split,
        batch_size: int,
        seed: int,
        device: torch.device,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        shard: tuple[int, int] = (0, 1),
    ):
        self.inputs = split.inputs.to(device)
        self.labels = split.labels.to(device)
        self.batch_size = batch_size
        self.shard = _shard_slice(batch_size, shard)
        self.seed = seed
        self.mean, self.std = mean, std
        self.epoch = 0
        self.position = 0  # batches already served in this epoch
        self._order = self._permutation(self.epoch)

    def _permutation(self, epoch: int) -> Tensor:
        # Drawn on the CPU and copied over: the step path's only host-device transfer, once per epoch.
        return epoch_order(self.seed, epoch, len(self.labels)).to(self.labels.device)

    def __iter__(self) -> TensorStream:
        return self

    def __next__(self) -> tuple[Tensor, Tensor]:
        # Incomplete last batches are dropped: every step sees full, equal-sized domain batches.
        if (self.position + 1) * self.batch_size > len(self.labels):
            self.epoch += 1
            self.position = 0
            self._order = self._permutation(self.epoch)
        index = self._order[self.position * self.batch_size : (self.position + 1) * self.batch_size][self.shard]
        self.position += 1
        return to_model_input(self.inputs[index], self.mean, self.std), self.labels[index]

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._order = self._permutation(self.epoch)


def _shard_slice(batch_size: int, shard: tuple[int, int]) -> slice:
    """The part of each global batch that rank `shard[0]` of `shard[1]` serves."""
    rank, world = shard
    if batch_size % world:
        raise ValueError(f"a batch of {batch_size} does not split evenly over {world} processes")
    size = batch_size // world
    return slice(rank * size, (rank + 1) * size)


class _EpochBatches(Sampler[list[tuple[int, int]]]):
    """One epoch's batches of (epoch, index) keys, from batch `start` on; incomplete last batch dropped.

    Runs in the main process each time the DataLoader starts an epoch, so the stream sets
    `epoch` and `start` just before: skipped batches are never decoded. `shard`: the part of
    each (global) batch this process serves.
    """

    def __init__(self, n: int, batch_size: int, seed: int, shard: slice = slice(None)):
        self.n, self.batch_size, self.seed, self.shard = n, batch_size, seed, shard
        self.epoch = 0
        self.start = 0

    def __len__(self) -> int:
        return self.n // self.batch_size - self.start

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = epoch_order(self.seed, self.epoch, self.n).tolist()
        for b in range(self.start, self.n // self.batch_size):
            yield [(self.epoch, i) for i in order[b * self.batch_size : (b + 1) * self.batch_size][self.shard]]


class ImageStream:
    """Shuffled mini-batches of an `ImageSplit`, epoch after epoch, without end. Needs batch_size <= len(split).

    Images are decoded and augmented in `num_workers` DataLoader processes that live as long
    as the stream (0: in the main process), in pinned memory when `device` is CUDA, and
    copied to `device` without blocking. The same contract as `TensorStream`.
    """

    def __init__(
        self,
        split: ImageSplit,
        batch_size: int,
        seed: int,
        device: torch.device,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        num_workers: int = 0,
        shard: tuple[int, int] = (0, 1),
    ):
        if batch_size > len(split):  # else no epoch would have a batch
            raise ConfigError(
                f"trainer.batch_size: {batch_size} is larger than {split.name} ({len(split)} images); lower it"
            )
        self.split = split
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.mean, self.std = mean, std
        self.epoch = 0
        self.position = 0  # batches already served in this epoch
        self._sampler = _EpochBatches(len(split), batch_size, seed, _shard_slice(batch_size, shard))
        self._served = batch_size // shard[1]  # examples per batch on this process
        workers = worker_count(num_workers)
        self._loader = DataLoader(
            ImageFiles(split, seed, substitute=True),
            batch_sampler=self._sampler,
            num_workers=workers,
            collate_fn=collate_images,
            pin_memory=self.device.type == "cuda",
            persistent_workers=workers > 0,
        )
        self._batches: Iterator | None = None  # the current epoch's DataLoader iterator

    def __iter__(self) -> ImageStream:
        return self

    def __next__(self) -> tuple[Tensor, Tensor]:
        if self._batches is None:
            self._sampler.epoch, self._sampler.start = self.epoch, self.position
            self._batches = iter(self._loader)
        try:
            x, y, failures = next(self._batches)
        except StopIteration:
            self.epoch += 1
            self.position = 0
            self._batches = None
            return next(self)
        self.position += 1
        record_unreadable(self.split, failures)
        if len(y) < self._served:  # only when every image of the split is unreadable
            raise DataError(f"{self.split.name}: no image under {self.split.root} is readable")
        x = x.to(self.device, non_blocking=True)
        return to_model_input(x, self.mean, self.std), y.to(self.device, non_blocking=True)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._batches = None  # the next batch starts a DataLoader pass from the new position


def eval_batches(
    split: AnySplit, batch_size: int, device: torch.device, num_workers: int = 0
) -> Iterator[tuple[Tensor, Tensor]]:
    """The split in order, in batches on `device`: x as stored (uint8 images or float vectors), y int64.

    Tensor splits are sliced (free when already on `device`). Image splits are decoded with
    the eval transforms by a DataLoader made for this pass; unreadable images are left out
    (`dataset.on_corrupt`).
    """
    if isinstance(split, Split):
        for start in range(0, len(split), batch_size):
            yield (
                split.inputs[start : start + batch_size].to(device, non_blocking=True),
                split.labels[start : start + batch_size].to(device, non_blocking=True),
            )
        return
    device = torch.device(device)
    keys = [(0, i) for i in range(len(split))]
    loader = DataLoader(
        ImageFiles(split, seed=0, substitute=False),
        batch_sampler=[keys[s : s + batch_size] for s in range(0, len(keys), batch_size)],
        num_workers=worker_count(num_workers),
        collate_fn=collate_images,
        pin_memory=device.type == "cuda",
    )
    for x, y, failures in loader:
        record_unreadable(split, failures)
        if len(y):
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)
