"""Inputs a run must not take at face value: pixel formats PIL would clip, and datasets or splits too
degenerate to train or evaluate on (one class, a single test example).

Images are real files in the on-disk layouts (`tests/helpers/image_files.py`), decoded by the real
pipeline; the dataset checks run `python -m dann.run` as a user would and read its one error line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dann.builders import build_dataset
from dann.data import eval_batches
from dann.errors import DataError
from tests.helpers import compose_config
from tests.helpers.image_files import write_office31

CPU = torch.device("cpu")
SMALL = ["dataset.num_workers=0", "dataset.image_size=16", "dataset.resize_size=16"]


def decoded(root: Path, *overrides: str) -> dict[str, torch.Tensor]:
    """Each target image of office31 under `root` (amazon → webcam), decoded as a run's evaluation
    decodes it: file name → uint8 [3, 16, 16]."""
    cfg = compose_config("dataset=office31", f"dataset.root={root}", *SMALL, *overrides)
    split = build_dataset(cfg).load().target_test
    images = torch.cat([x for x, _ in eval_batches(split, 64, CPU)])
    return {split.path(i).name: image for i, image in enumerate(images)}


def gradient(size: int = 16) -> np.ndarray:
    """A horizontal ramp over the full 16-bit range, uint16 [size, size]."""
    return np.tile(np.linspace(0, 65535, size), (size, 1)).round().astype(np.uint16)


def test_a_16_bit_png_keeps_its_contrast(tmp_path):
    write_office31(tmp_path, images_per_class=1, domains=("amazon", "webcam"))
    folder = tmp_path / "office31" / "webcam" / "images" / "back_pack"
    ramp = gradient()
    Image.fromarray(ramp).save(folder / "deep.png")  # 16-bit greyscale, as scanners and microscopes write
    Image.fromarray((ramp / 257).round().astype(np.uint8)).save(folder / "shallow.png")  # the same, 8-bit
    with Image.open(folder / "deep.png") as check:
        assert check.mode == "I;16"  # the on-disk format under test

    images = decoded(tmp_path)

    deep = images["deep.png"]
    assert (deep == 255).float().mean() < 0.1  # PIL's own conversion made 99.6% of it white
    assert deep.min() == 0 and deep.max() == 255
    assert torch.equal(deep, images["shallow.png"])  # exactly its 8-bit equivalent


def test_floating_point_pixels_are_refused_naming_the_file(tmp_path):
    write_office31(tmp_path, images_per_class=1, domains=("amazon", "webcam"))
    bad = tmp_path / "office31" / "webcam" / "images" / "back_pack" / "depth.tif"
    Image.fromarray(np.linspace(0, 1, 256, dtype=np.float32).reshape(16, 16)).save(bad)  # mode F: no fixed range

    with pytest.raises(DataError, match=f"unreadable image {bad} .*mode F"):
        decoded(tmp_path, "dataset.on_corrupt=error")
