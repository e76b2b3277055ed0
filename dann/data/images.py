"""Image-file benchmarks: the settings they share (transforms, normalisation, workers, unreadable images).

A benchmark class (office.py, visda.py, domainnet.py, folder.py) finds a split's files and
labels (files.py) and makes them an `ImageSplit` with `ImageDataset.image_split`; the streams
(stream.py) and `dann.training.evaluate` decode them batch by batch in DataLoader workers (decode.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, get_args

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from dann.config.spec import Setting, Spec
from dann.data.base import DomainPair, EvaluationProtocol, ImageSplit, per_channel
from dann.data.files import check_class_folders, labeled_files, scan_class_folders, warn_if_count_differs
from dann.errors import ConfigError, DataError

OnCorrupt = Literal["skip", "error"]  # what an unreadable image does: see decode.py
ON_CORRUPT = get_args(OnCorrupt)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_PROBE_SIZE = (320, 240)  # a non-square probe image: a transform list without a crop shows up

Transform = Callable[[Image.Image], Image.Image]


@dataclass(kw_only=True)
class ImageDataset(DomainPair):
    """A benchmark of image files, decoded per batch; the settings every image benchmark takes.

    Images reach the network as uint8 [3, image_size, image_size] tensors, scaled to [0, 1]
    and normalised by `mean`/`std` on the device.
    """

    protocol: EvaluationProtocol = "transductive"
    on_corrupt: Annotated[OnCorrupt, Setting("an unreadable image: skip (warn and count it) or error (stop)")] = "skip"
    num_workers: Annotated[
        int, Setting("DataLoader worker processes per image stream (source and target each); 0: none", ge=0)
    ] = 4
    image_size: Annotated[int, Setting("side of the square crops the network sees, in pixels", ge=1)] = 224
    resize_size: Annotated[
        int, Setting("evaluation: the shorter side resized to this, then centre-cropped to image_size", ge=1)
    ] = 256
    mean: Annotated[Sequence[float], Setting("per channel, after scaling pixels to [0, 1]")] = IMAGENET_MEAN
    std: Annotated[Sequence[float], Setting("per channel", gt=0)] = IMAGENET_STD
    # Each list ends at an image_size square (checked here, on a probe image).
    transforms: Annotated[
        Mapping[str, Sequence[Transform]] | None,
        Setting(
            "{train: […], eval: […]}: transforms of an RGB PIL image; null: the defaults",
            spec=Spec("transforms", null=True),
        ),
    ] = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self.mean, self.std = per_channel(self.mean, self.std, channels=3)
        given = self.transforms
        if given is None:
            given = default_transforms(self.image_size, self.resize_size)
        self.train_transform = compose_transform(given.get("train"), self.image_size, "dataset.transforms.train")
        self.eval_transform = compose_transform(given.get("eval"), self.image_size, "dataset.transforms.eval")

    def normalisation(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return self.mean, self.std

    def workers(self) -> int:
        return self.num_workers

    def image_split(
        self, domain: str, root: Path, files: Sequence[str], labels: Sequence[int], classes: Sequence[str], train: bool
    ) -> ImageSplit:
        """An `ImageSplit` of `files` (relative to `root`) with the training or the evaluation transforms."""
        name = f"{self.benchmark}/{domain} ({'train' if train else 'eval'})"
        if not files:
            raise DataError(f"{name}: no images found under {root}")
        return ImageSplit(
            name=name,
            root=root,
            files=np.array(files),
            labels=torch.tensor(labels, dtype=torch.int64),
            classes=tuple(classes),
            transform=self.train_transform if train else self.eval_transform,
            input_shape=(3, self.image_size, self.image_size),
            on_corrupt=self.on_corrupt,
        )

    def class_folder_split(
        self, domain: str, folder: Path, classes: Sequence[str], release_size: int, train: bool, fix: str
    ) -> ImageSplit:
        """A split of all images under `folder`/<class>/, checked against `classes`; `fix` says how to repair a copy."""
        title = f"{self.benchmark} domain '{domain}'"
        by_class = scan_class_folders(folder)
        check_class_folders(by_class, classes, folder, title, fix)
        files, labels = labeled_files(by_class, classes)
        if train:  # once per domain
            warn_if_count_differs(title, len(files), release_size)
        return self.image_split(domain, folder, files, labels, classes, train)


def default_transforms(image_size: int, resize_size: int) -> dict[str, list[Transform]]:
    """What the image configs set: a random resized crop and flip to train, resize and centre crop to evaluate."""
    # torchvision is imported where it is used: importing it costs seconds, which runs on the moons skip.
    from torchvision import transforms as T

    return {
        "train": [T.RandomResizedCrop(image_size), T.RandomHorizontalFlip()],
        "eval": [T.Resize(resize_size), T.CenterCrop(image_size)],
    }


def compose_transform(steps: Sequence[Transform] | None, size: int, key: str) -> Callable[[Image.Image], Tensor]:
    """`steps`, then PIL → uint8 tensor; checked on a probe image to give uint8 [3, size, size].

    Scaling and normalisation happen on the device (`dataset.mean`/`std`), so the steps must
    take a PIL image to a PIL image. `key` names the config key in errors.
    """
    if steps is None:
        raise ConfigError(
            f"{key}: missing; expected a list of torchvision transforms, "
            "e.g. [{_target_: torchvision.transforms.CenterCrop, size: 224}]"
        )
    from torchvision import transforms as T  # here, not at the top: see default_transforms

    transform = T.Compose([*steps, T.PILToTensor()])
    with torch.random.fork_rng(devices=[]):  # random transforms must not shift the run's random stream
        try:
            probe = transform(Image.new("RGB", _PROBE_SIZE))
        except (TypeError, ValueError) as e:
            raise ConfigError(
                f"{key}: must take a PIL image to a PIL image (no ToTensor or Normalize: "
                f"dataset.mean and dataset.std normalise on the device); it fails with {e}"
            ) from e
    if tuple(probe.shape) != (3, size, size):
        raise ConfigError(
            f"{key}: turns a {_PROBE_SIZE[0]}×{_PROBE_SIZE[1]} image into "
            f"{'×'.join(map(str, probe.shape))}, but dataset.image_size is {size}: "
            f"every image must come out 3×{size}×{size} (end the list with a crop to image_size)"
        )
    return transform
