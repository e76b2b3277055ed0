"""Decoding an `ImageSplit`'s files in DataLoader workers, and what an unreadable image does.

Decoding DomainNet's ~600k images once just to check them would cost as much as an epoch
of training, so images are checked where they are decoded anyway: a worker that cannot
read a file never raises, it returns the path and the reason with the batch, and the main
process applies the split's `on_corrupt` (`dataset.on_corrupt`):

- `skip` (default): a warning naming the file the first time it is met, and a count per
  split (`ImageSplit.skipped`, summed in `DomainData.skipped_images`). A training batch
  stays full: the worker decodes the split's next image in its place. An evaluation
  leaves the image out, so that no image is counted twice.
- `error`: a `DataError` naming the file, the first time it is met (in the first epoch of
  a training split, at the first evaluation of an evaluation split).

Every pixel format is decoded to 8-bit RGB at its real contrast (16-bit greyscale scaled, not
clipped), or refused as unreadable with the reason (`_decode`).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from dann.data.base import ImageSplit
from dann.errors import DataError, describe_error

log = logging.getLogger(__name__)

# What PIL raises for a missing, truncated or non-image file.
UNREADABLE = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


class ImageFiles(Dataset):
    """An `ImageSplit`'s images, decoded and transformed in the DataLoader's workers.

    Items are keyed by (epoch, index): random transforms are seeded from (seed, epoch,
    index), so an image's augmentation depends neither on the worker count nor on which
    worker decodes it, and a resumed stream reproduces it exactly.

    An item is (uint8 [3, H, W] or None, label, [(path, reason) of unreadable files]).
    With `substitute`, an unreadable image is replaced by the split's next readable one.
    """

    def __init__(self, split: ImageSplit, seed: int, substitute: bool):
        self.split = split
        self.seed = seed
        self.substitute = substitute

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, key: tuple[int, int]) -> tuple[Tensor | None, int, list[tuple[str, str]]]:
        epoch, index = key
        failures = []
        tries = len(self.split) if self.substitute else 1
        for offset in range(tries):
            i = (index + offset) % len(self.split)
            path = self.split.path(i)
            try:
                image = _decode(path)
            except UNREADABLE as e:
                failures.append((str(path), describe_error(e)))
                continue
            with _seeded(int(np.random.SeedSequence((self.seed, epoch, index)).generate_state(1)[0])):
                return self.split.transform(image), int(self.split.labels[i]), failures
        return None, -1, failures


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed torch's and Python's generators (torchvision's random transforms use both) for one image.

    Both are restored afterwards: with num_workers=0 this runs in the main process.
    """
    python_state = random.getstate()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        random.seed(seed)
        try:
            yield
        finally:
            random.setstate(python_state)


# 16-bit greyscale modes (a 16-bit PNG or TIFF): values 0 … 65535.
SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")


def _decode(path: Path) -> Image.Image:
    """The file as an 8-bit RGB image, each pixel at the same fraction of its format's full range.

    PIL's own conversion clips 16-bit values at 255, so a 16-bit greyscale image is scaled
    (65535 → 255) instead. 32-bit integer and float pixels (TIFF modes I and F) have no fixed
    range to scale from: refused as unreadable, with the reason (`dataset.on_corrupt`).
    """
    with Image.open(path) as image:
        # A PNG holds at most 16 bits per sample: an older Pillow opens a 16-bit one as mode I.
        if image.mode in SIXTEEN_BIT or (image.mode == "I" and image.format == "PNG"):
            pixels = np.asarray(image).astype(np.float64)  # decodes the whole file: a truncated one fails here
            return Image.fromarray(np.round(pixels.clip(0, 65535) / 257).astype(np.uint8)).convert("RGB")
        if image.mode in ("I", "F"):
            raise ValueError(
                f"mode {image.mode} ({'32-bit integer' if image.mode == 'I' else 'floating-point'} pixels) has no "
                "fixed range to scale to 8 bits; save it as an 8- or 16-bit image"
            )
        return image.convert("RGB")  # decodes the whole file: a truncated one fails here


def collate_images(items: list) -> tuple[Tensor, Tensor, list[tuple[str, str]]]:
    """Readable images → uint8 [B, 3, H, W] and int64 [B] (B may be 0); every unreadable file met."""
    kept = [(x, y) for x, y, _ in items if x is not None]
    failures = [failure for _, _, item_failures in items for failure in item_failures]
    if not kept:
        return torch.empty(0, dtype=torch.uint8), torch.empty(0, dtype=torch.int64), failures
    return torch.stack([x for x, _ in kept]), torch.tensor([y for _, y in kept], dtype=torch.int64), failures


def record_unreadable(split: ImageSplit, failures: list[tuple[str, str]]) -> None:
    """Apply `dataset.on_corrupt` to the unreadable files a batch met (in the main process)."""
    for path, reason in failures:
        if split.on_corrupt == "error":
            raise DataError(
                f"{split.name}: unreadable image {path} ({reason}); replace or delete it, "
                "or set dataset.on_corrupt=skip to train and evaluate without it"
            )
        if path not in split.skipped:
            split.skipped[path] = reason
            log.warning("%s: skipping unreadable image %s (%s)", split.name, path, reason)
