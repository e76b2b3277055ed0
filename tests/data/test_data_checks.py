"""Inputs a run must not take at face value: pixel formats PIL would clip, and datasets or splits too
degenerate to train or evaluate on (one class, a single test example).

Images are real files in the on-disk layouts (`tests/helpers/image_files.py`), decoded by the real
pipeline; the dataset checks run `python -m dann.run` as a user would and read its one error line.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dann.builders import build_dataset
from dann.config.validate import validate_against_data
from dann.data import Split, eval_batches
from dann.errors import DataError
from tests.helpers import SHORT_RUN, compose_config, run_cli
from tests.helpers.image_files import write_class_folders, write_office31

CPU = torch.device("cpu")
SMALL = ["dataset.num_workers=0", "dataset.image_size=16", "dataset.resize_size=16"]
# A backbone with no weights to download, on images it can take.
SMALL_RESNET = [
    "model.feature_extractor.arch=resnet18",
    "model.feature_extractor.weights=null",
    "dataset.num_workers=0",
    "dataset.image_size=32",
    "dataset.resize_size=32",
]


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


# --- Datasets and splits too degenerate to give a result -------------------------------------------


def error_line(result) -> str:
    """The run's one error line; it must be the whole of stderr's last line, with no traceback."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result.stderr.strip().splitlines()[-1]


def test_a_single_test_point_is_refused_naming_the_key(tmp_path):
    result = run_cli("dataset.num_test=1", *SHORT_RUN, cwd=tmp_path)  # finished with accuracy 0.0 and SND NaN

    line = error_line(result)
    assert line.startswith("error: dataset.num_test: 1 is too few; every split needs at least 2 points")
    assert "dataset.num_test=2 or more" in line


def test_a_one_class_dataset_is_refused_with_its_class_counts(tmp_path):
    write_class_folders(tmp_path / "photos", ["cat"], 3, seed=0)
    write_class_folders(tmp_path / "sketches", ["cat"], 3, seed=1)

    result = run_cli(  # finished with target accuracy 1.0
        "dataset=folder",
        f"dataset.source_dir={tmp_path / 'photos'}",
        f"dataset.target_dir={tmp_path / 'sketches'}",
        *SMALL_RESNET,
        *SHORT_RUN,
        "trainer.batch_size=2",
        cwd=tmp_path,
    )

    line = error_line(result)
    assert line.startswith(
        f"error: source 'source' train split (folder/source (train), under {tmp_path / 'photos'}) has 3 examples "
        "of 1 class (cat: 3; the task has 1); training and evaluating need at least 2 examples of at least 2 classes"
    )


def test_a_target_test_split_of_one_class_is_refused_naming_it():
    cfg = compose_config("logger=none")
    data = build_dataset(cfg).load()
    target_test = Split(data.target_test.inputs[:5], torch.ones(5, dtype=torch.int64))  # 5 points, all class 1
    with pytest.raises(DataError) as error:
        validate_against_data(cfg, replace(data, target_test=target_test))
    assert str(error.value).startswith(
        "target 'moons_rotated' test split has 5 examples of 1 class (1: 5; the task has 2)"
    )
