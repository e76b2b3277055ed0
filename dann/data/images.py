"""Image-file datasets: finding the files, checking the classes, transforms, and decoding in workers.

A benchmark module (office.py, domainnet.py, folder.py) finds a split's files and labels
and calls `image_split`; the streams (stream.py) and `evaluate` decode them through
`ImageFiles` in DataLoader workers.

Unreadable images. Decoding DomainNet's ~600k images once just to check them would cost
as much as an epoch of training, so images are checked where they are decoded anyway: a worker
that cannot read a file never raises, it returns the path and the reason with the batch,
and the main process applies `dataset.on_corrupt`:

- `skip` (default): a warning naming the file the first time it is met, and a count per
  split (`ImageSplit.skipped`, summed in `DomainData.skipped_images`). A training batch
  stays full: the worker decodes the split's next image in its place. An evaluation
  leaves the image out, so that no image is counted twice.
- `error`: a `DataError` naming the file, the first time it is met (in the first epoch of
  a training split, at the first evaluation of an evaluation split).

Missing files, empty or missing class folders and malformed list files are found at load
time, before training, from directory listings alone.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import transforms as T

from dann.data.base import ImageSplit, ListedPaths
from dann.errors import ConfigError, DataError, describe_error

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
ON_CORRUPT = ("skip", "error")
# What PIL raises for a missing, truncated or non-image file.
UNREADABLE = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)
_PROBE_SIZE = (320, 240)  # a non-square probe image: a transform list without a crop shows up


# --- Config ------------------------------------------------------------------------------


def check_image_config(cfg: DictConfig) -> None:
    """Every image key, checked before any file is touched: a typo is reported as one, not as bad data."""
    image_size(cfg)
    num_workers(cfg)
    on_corrupt(cfg)
    normalisation(cfg)
    build_transform(cfg, train=True)
    build_transform(cfg, train=False)


def image_size(cfg: DictConfig) -> int:
    return _positive_int(cfg, "image_size")


def num_workers(cfg: DictConfig) -> int:
    """`dataset.num_workers`, checked; 0 (decode in the main process) where the config has none."""
    value = cfg.get("num_workers", 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"dataset.num_workers: expected an integer >= 0 (DataLoader worker processes), got {value!r}")
    return value


def on_corrupt(cfg: DictConfig) -> str:
    value = cfg.get("on_corrupt")
    if value not in ON_CORRUPT:
        raise ConfigError(f"dataset.on_corrupt: expected skip or error (what an unreadable image does), got {value!r}")
    return value


def normalisation(cfg: DictConfig, channels: int = 3) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) per channel, as applied on the device after scaling pixels to [0, 1]."""
    stats = {}
    for key in ("mean", "std"):
        value = cfg.get(key)
        ok = value is not None and len(value) == channels and all(isinstance(v, (int, float)) for v in value)
        if not ok or (key == "std" and min(value) <= 0):
            example = (
                "ImageNet's mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225]"
                if channels == 3
                else f"[{', '.join(['0.5'] * channels)}]"
            )
            raise ConfigError(
                f"dataset.{key}: expected {channels} numbers, one per channel"
                f"{', all > 0' if key == 'std' else ''}, got {value!r}; e.g. {example}"
            )
        stats[key] = tuple(float(v) for v in value)
    return stats["mean"], stats["std"]


def build_transform(cfg: DictConfig, train: bool) -> Callable[[Image.Image], Tensor]:
    """`dataset.transforms.train` or `.eval` (a list of torchvision transforms), then PIL → uint8 tensor.

    Checked on a probe image: the list must take an RGB PIL image to an `image_size` square
    PIL image (scaling and normalisation happen on the device, from `dataset.mean`/`std`).
    """
    key = f"dataset.transforms.{'train' if train else 'eval'}"
    spec = cfg.get("transforms", {}).get("train" if train else "eval")
    if spec is None:
        raise ConfigError(
            f"{key}: missing; expected a list of torchvision transforms, "
            "e.g. [{_target_: torchvision.transforms.CenterCrop, size: 224}]"
        )
    if not all(isinstance(step, Mapping) and "_target_" in step for step in spec):
        raise ConfigError(
            f"{key}: expected a list of transforms, each with a _target_, e.g. "
            f"[{{_target_: torchvision.transforms.CenterCrop, size: 224}}]; got {spec}"
        )
    try:
        steps = [instantiate(step) for step in spec]
    except (InstantiationException, TypeError, AttributeError) as e:
        raise ConfigError(f"{key}: cannot build the transforms ({describe_error(e)})") from e
    transform = T.Compose([*steps, T.PILToTensor()])
    size = image_size(cfg)
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


def _positive_int(cfg: DictConfig, key: str) -> int:
    value = cfg.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"dataset.{key}: expected a positive integer (pixels), got {value!r}")
    return value


# --- Building a split ---------------------------------------------------------------------


def image_split(
    cfg: DictConfig,
    name: str,
    root: Path,
    files: Sequence[str],
    labels: Sequence[int],
    classes: Sequence[str],
    train: bool,
) -> ImageSplit:
    """An `ImageSplit` of `files` (relative to `root`) with the train or eval transforms of `cfg`."""
    if not files:
        raise DataError(f"{name}: no images found under {root}")
    size = image_size(cfg)
    return ImageSplit(
        name=name,
        root=root,
        files=np.array(files),
        labels=torch.tensor(labels, dtype=torch.int64),
        classes=tuple(classes),
        transform=build_transform(cfg, train),
        input_shape=(3, size, size),
        on_corrupt=on_corrupt(cfg),
    )


def split_name(dataset: str, domain: str, train: bool) -> str:
    return f"{dataset}/{domain} ({'train' if train else 'eval'})"


# --- Finding files ------------------------------------------------------------------------


def scan_class_folders(directory: Path) -> dict[str, list[str]]:
    """Class folder name → its image files (paths relative to `directory`, subfolders included), sorted.

    Hidden entries are skipped and files that are not images by extension are ignored.
    """
    classes = {}
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        if entry.is_dir() and not entry.name.startswith("."):
            classes[entry.name] = _image_files(directory, entry.name)
    return classes


def _image_files(directory: Path, class_name: str) -> list[str]:
    files = []
    for folder, subfolders, filenames in os.walk(directory / class_name):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        relative = Path(folder).relative_to(directory)
        files += [
            str(relative / f)
            for f in sorted(filenames)
            if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith(".")
        ]
    return files


def check_class_folders(
    found: dict[str, list[str]], expected: Sequence[str] | None, where: Path, title: str, fix: str
) -> None:
    """Every expected class has a non-empty folder and no other class folder exists.

    `expected` None: any names (dataset=folder), but still no empty folder. `fix` says how
    to repair the copy.
    """
    problems = []
    if expected is not None:
        problems += _differences(set(expected), set(found), "missing class folders", "unexpected class folders")
    empty = [name for name, files in found.items() if not files]
    if empty:
        problems.append(f"empty class folders (no {'/'.join(IMAGE_EXTENSIONS)} files): {names(empty)}")
    if problems:
        raise DataError(f"{title}: {where} has {'; '.join(problems)}. {fix}")


def _differences(expected: set[str], found: set[str], missing_label: str, extra_label: str) -> list[str]:
    problems = []
    if expected - found:
        problems.append(f"{missing_label}: {names(expected - found)}")
    if found - expected:
        problems.append(f"{extra_label}: {names(found - expected)}")
    return problems


def names(items: Iterable[str], shown: int = 20) -> str:
    """Sorted, comma-separated, at most `shown` of them (DomainNet has 345 classes)."""
    items = sorted(items)
    more = f" and {len(items) - shown} more" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


def labeled_files(by_class: dict[str, list[str]], classes: Sequence[str]) -> tuple[list[str], list[int]]:
    """Files in class order, each with its class's index in `classes`."""
    files, labels = [], []
    for index, name in enumerate(classes):
        files += by_class[name]
        labels += [index] * len(by_class[name])
    return files, labels


def read_list_file(
    list_file: Path, base: Path, classes: Sequence[str], class_part: int, title: str, fix: str
) -> tuple[list[str], list[int]]:
    """Files and labels of a list file of lines `relative/path label` (paths relative to `base`).

    The class is the path's `class_part`-th component; its label must be its index in
    `classes`, so that a list and the class order can never silently disagree. Every
    path must stay inside `base` (checked before anything it names is touched), and every
    listed file must exist (checked from the listings of the folders the list names).
    """
    files, labels = [], []
    label_of = {name: index for index, name in enumerate(classes)}
    inside = ListedPaths(list_file, base)
    listings: dict[Path, set[str]] = {}
    missing = []
    for number, line in enumerate(list_file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        path, label = _parse_line(list_file, number, line, label_of, class_part, inside)
        folder = (base / path).parent
        if folder not in listings:
            listings[folder] = set(os.listdir(folder)) if folder.is_dir() else set()
        if Path(path).name not in listings[folder]:
            missing.append(str(base / path))
        files.append(path)
        labels.append(label)
    if not files:
        raise DataError(f"{title}: {list_file} lists no images. {fix}")
    if missing:
        raise DataError(
            f"{title}: {len(missing)} images listed in {list_file} are missing: {names(missing, shown=5)}. {fix}"
        )
    return files, labels


def _parse_line(
    list_file: Path, number: int, line: str, label_of: dict[str, int], class_part: int, inside: ListedPaths
) -> tuple[str, int]:
    fields = line.rsplit(maxsplit=1)
    where = f"{list_file}, line {number}"
    if len(fields) != 2 or not fields[1].isdecimal():
        raise DataError(f"{where}: expected 'relative/path label', got {line.strip()!r}")
    path, label = fields[0], int(fields[1])
    inside.check(path, number)
    parts = Path(path).parts
    name = parts[class_part] if len(parts) > class_part + 1 else None
    if name not in label_of:
        raise DataError(
            f"{where}: {path!r} is not under a folder of one of the {len(label_of)} classes "
            f"(expected <class>/<file> at path component {class_part + 1})"
        )
    if label != label_of[name]:
        raise DataError(
            f"{where}: label {label} for class '{name}', whose label is {label_of[name]}; "
            "the list file does not belong to this dataset or is corrupt"
        )
    return path, label


def check_same_classes(source: Iterable[str], target: Iterable[str], source_where: str, target_where: str) -> None:
    """Source and target must name the same classes (classes are matched by name)."""
    problems = _differences(
        set(source), set(target), f"only in the source ({source_where})", f"only in the target ({target_where})"
    )
    if problems:
        raise DataError(
            f"the source and target classes differ: {'; '.join(problems)}. Classes are matched by "
            "folder name: rename, add or remove class folders so that both domains have the same ones"
        )


def warn_if_count_differs(title: str, found: int, release: int) -> None:
    """A different image count is legal (a cleaned copy) but worth a line in the log."""
    if found != release:
        log.warning("%s: %d images, the release has %d; a partial or modified copy?", title, found, release)


# --- Decoding -------------------------------------------------------------------------------


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


def _decode(path: Path) -> Image.Image:
    with Image.open(path) as image:
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
