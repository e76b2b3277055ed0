"""The digit domains of Ganin et al. (JMLR 2016, §5.2): MNIST, MNIST-M, USPS and SVHN.

Files live under `root` (`dataset.root`), each dataset in its usual layout (torchvision's, or the
original release's for MNIST-M), so that existing downloads can be shared:

    MNIST     <root>/MNIST/raw/{train,t10k}-images-idx3-ubyte, {train,t10k}-labels-idx1-ubyte
    MNIST-M   <root>/mnist_m/mnist_m_{train,test}/*.png, <root>/mnist_m/mnist_m_{train,test}_labels.txt
    USPS      <root>/usps/usps.bz2 (train), <root>/usps/usps.t.bz2 (test)
    SVHN      <root>/svhn/train_32x32.mat, <root>/svhn/test_32x32.mat

Missing files are downloaded (checksummed, from the addresses in catalog.py) when `download` is true.
Every domain is returned as uint8 [N, C, H, W] with the side (`image_size`) and channel count (`channels`) the dataset
config asks for, so that a source and a target always match.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from dann.config.spec import Setting
from dann.data import catalog
from dann.data.base import DomainPair, DomainSpec, Split, per_channel, register_domain
from dann.data.fetch import ensure_files
from dann.data.files import ListedPaths
from dann.errors import DataError, describe_error

NUM_CLASSES = 10

MNISTM_SIZE = 28  # every image of the release is 28×28 RGB
_PNG_CHUNK = 1024  # MNIST-M files decoded per thread-pool task

# ITU-R BT.601 luma: the weights PIL's convert("L") uses too.
_LUMA = (0.299, 0.587, 0.114)
_CHUNK = 8192  # images converted at once, so that float copies of a whole split are never held


@dataclass(kw_only=True)
class Digits(DomainPair):
    """The digit pairs (`dataset=mnist_mnistm`, `svhn_mnist`, `mnist_usps`, `usps_mnist`): uint8 [N, channels,
    image_size, image_size] images. The defaults are mnist_mnistm's."""

    loads = ("mnist", "mnistm", "usps", "svhn")

    source: str | DomainSpec = "mnist"
    target: str | DomainSpec = "mnistm"
    image_size: Annotated[int, Setting("square side in pixels every domain is brought to", ge=1)] = 28
    channels: Annotated[Literal[1, 3], Setting("1: grey (RGB reduced by BT.601 luma), 3: RGB (grey repeated)")] = 3
    download: Annotated[bool, Setting("fetch missing files (checksummed); false: fail listing what is missing")] = True
    mean: Annotated[Sequence[float] | None, Setting("per channel, after scaling pixels to [0, 1]; null: 0.5 each")] = (
        None
    )
    std: Annotated[Sequence[float] | None, Setting("per channel; null: 0.5 each (pixels in [-1, 1])", gt=0)] = None

    def __post_init__(self) -> None:
        super().__post_init__()
        half = [0.5] * self.channels
        self.mean, self.std = per_channel(
            half if self.mean is None else self.mean, half if self.std is None else self.std, self.channels
        )

    def normalisation(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return self.mean, self.std

    def load_split(self, domain: DomainSpec, train: bool) -> Split:
        title, folder, images, labels = _READERS[domain.name](self.root, train, self.download)
        return _to_split((self.image_size, self.channels), title, folder, images, labels)


# --- Finding and fetching files ---------------------------------------------------------


def _ensure_files(benchmark: catalog.Benchmark, root: Path, download: bool) -> list[Path]:
    """The files the loader reads (catalog.py's `needs`, both splits: a task always reads both), fetched if allowed."""
    files = [root / need for need in benchmark.needs]
    ensure_files(benchmark.release(root), files, download)
    return files


def _read(title: str, folder: Path, read: Callable[[], Any]) -> Any:
    """Run a library reader; turn whatever a truncated or corrupt file makes it raise into a `DataError`."""
    try:
        return read()
    except DataError:
        raise
    except Exception as e:
        raise DataError(
            f"{title} files in {folder} are unreadable ({describe_error(e)}); they may be truncated or corrupt: "
            f"delete them and run again with dataset.download=true, or replace them by hand."
        ) from e


# --- From raw arrays to a Split ---------------------------------------------------------


def _to_split(image_format: tuple[int, int], title: str, folder: Path, images: Tensor, labels: Tensor) -> Split:
    """Check what a reader returned, then bring the uint8 [N, C, H, W] images to (side, channels)."""
    labels = labels.to(torch.int64)
    if len(labels) == 0:
        raise DataError(f"{title} in {folder} holds no examples; delete the files and download them again")
    if len(images) != len(labels):
        raise DataError(
            f"{title} in {folder}: {len(images)} images but {len(labels)} labels; "
            "the files are incomplete or do not belong together: delete them and download them again"
        )
    if labels.min() < 0 or labels.max() >= NUM_CLASSES:
        # Caught here: an out-of-range label would only fail much later, inside the loss.
        raise DataError(
            f"{title} in {folder}: labels must be 0-{NUM_CLASSES - 1}, found {int(labels.min())}..{int(labels.max())}"
        )
    return Split(convert_images(images, *image_format), labels)


def convert_images(images: Tensor, size: int, channels: int) -> Tensor:
    """uint8 [N, C, H, W] → uint8 [N, channels, size, size].

    RGB → grey by BT.601 luma, grey → RGB by repeating the channel; bilinear antialiased
    resizing only when the side differs. Colour reduction comes before resizing and
    expansion after it, so that the float work is done on the fewest channels.
    """
    if images.shape[1] == 3 and channels == 1:
        images = _in_chunks(_to_grey, images)
    if tuple(images.shape[2:]) != (size, size):
        images = _in_chunks(lambda x: _resize(x, size), images)
    if images.shape[1] == 1 and channels == 3:
        images = images.expand(-1, 3, -1, -1)
    return images.contiguous()


def _in_chunks(fn: Callable[[Tensor], Tensor], images: Tensor) -> Tensor:
    return torch.cat([fn(chunk) for chunk in images.split(_CHUNK)])


def _to_grey(rgb: Tensor) -> Tensor:
    weights = torch.tensor(_LUMA).view(1, 3, 1, 1)
    return _to_uint8((rgb.float() * weights).sum(dim=1, keepdim=True))


def _resize(images: Tensor, size: int) -> Tensor:
    resized = F.interpolate(images.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return _to_uint8(resized)


def _to_uint8(x: Tensor) -> Tensor:
    return x.round_().clamp_(0, 255).to(torch.uint8)


# --- The readers: (title, folder, uint8 [N, C, H, W] images, [N] labels) of one split -------


def _load_mnist(root: Path, train: bool, download: bool) -> tuple[str, Path, Tensor, Tensor]:
    """MNIST, read by torchvision."""
    from torchvision.datasets import MNIST

    raw = root / "MNIST" / "raw"
    _ensure_files(catalog.MNIST, root, download)  # torchvision wants all four files, whichever split is read
    dataset = _read("MNIST", raw, lambda: MNIST(root, train=train, download=False))
    return "MNIST", raw, dataset.data.unsqueeze(1), dataset.targets


def _load_usps(root: Path, train: bool, download: bool) -> tuple[str, Path, Tensor, Tensor]:
    """USPS, read by torchvision."""
    from torchvision.datasets import USPS

    folder = root / "usps"
    _ensure_files(catalog.USPS, root, download)
    # torchvision maps the file's labels 1..10 to 0..9 and its values in [-1, 1] to 0..255.
    dataset = _read("USPS", folder, lambda: USPS(folder, train=train, download=False))
    return "USPS", folder, torch.from_numpy(dataset.data).unsqueeze(1), torch.tensor(dataset.targets)


def _load_svhn(root: Path, train: bool, download: bool) -> tuple[str, Path, Tensor, Tensor]:
    """SVHN: torchvision's files, read as torchvision does."""
    folder = root / "svhn"
    train_file, test_file = _ensure_files(catalog.SVHN, root, download)
    path = train_file if train else test_file
    images, labels = _read("SVHN", folder, lambda: _read_svhn_mat(path))
    return "SVHN", folder, images, labels


def _read_svhn_mat(path: Path) -> tuple[Tensor, Tensor]:
    """What torchvision's SVHN reads, without its MD5 check of the whole file on every load.

    That check also rejects any file but the official release, such as a re-saved subset;
    a corrupt file still fails here, in scipy's reader.
    """
    import scipy.io  # as in torchvision: only SVHN needs scipy

    mat = scipy.io.loadmat(path)
    images = torch.from_numpy(np.transpose(mat["X"], (3, 2, 0, 1)))  # (H, W, C, N) → (N, C, H, W)
    labels = torch.from_numpy(mat["y"].astype(np.int64).reshape(-1))
    labels[labels == 10] = 0  # the release stores digit 0 as 10
    return images, labels


def _load_mnistm(root: Path, train: bool, download: bool) -> tuple[str, Path, Tensor, Tensor]:
    """MNIST-M, in the original release's layout."""
    folder = root / "mnist_m"
    # Both splits are checked at once: a task always reads both, and one archive holds them.
    files = _ensure_files(catalog.MNISTM, root, download)
    labels_file, image_dir = files[:2] if train else files[2:]
    names, labels = _read_mnistm_labels(labels_file, image_dir, folder)
    images = _read_pngs([image_dir / name for name in names], folder)
    # Every listed image was read; an image the labels file does not list would be silently left out.
    pngs = sum(1 for entry in os.scandir(image_dir) if entry.name.endswith(".png"))
    if pngs != len(names):
        raise DataError(
            f"MNIST-M labels file {labels_file} has {len(names)} lines but {image_dir} holds {pngs} "
            f"PNG images; each image needs exactly one line: the copy is partial or mixed. "
            f"Delete {folder} and download it again"
        )
    return "MNIST-M", folder, images, torch.tensor(labels)


def _read_mnistm_labels(path: Path, image_dir: Path, folder: Path) -> tuple[list[str], list[int]]:
    """Parse lines `filename label` (e.g. `00000000.png 5`) naming files in `image_dir`; blank lines are skipped.

    `folder` is MNIST-M's own folder, the one the messages say to download again.
    """
    names, labels = [], []
    inside = ListedPaths(path, image_dir)
    text = _read("MNIST-M", folder, lambda: path.read_text())
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2 or not fields[1].isdecimal() or int(fields[1]) >= NUM_CLASSES:
            raise DataError(
                f"MNIST-M labels file {path}, line {number}: expected 'filename label' with a label 0-9, "
                f"got {line.strip()!r}; the file is corrupt: delete {folder} and download it again"
            )
        inside.check(fields[0], number)
        names.append(fields[0])
        labels.append(int(fields[1]))
    if not names:
        raise DataError(f"MNIST-M labels file {path} lists no images; delete {folder} and download it again")
    return names, labels


def _read_pngs(paths: list[Path], folder: Path) -> Tensor:
    """Decode RGB PNGs into uint8 [N, 3, H, W] (the real train split: 59,001 files, a few seconds).

    Decoding a 28×28 PNG is mostly Python work under the GIL, so threads beyond a few only
    contend; a few overlap file reads (a cold cache, a network disk). Each task reads a chunk
    of files, as one task per file costs more in scheduling than the decoding itself.
    """
    chunks = [paths[i : i + _PNG_CHUNK] for i in range(0, len(paths), _PNG_CHUNK)]
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        arrays = [array for chunk in pool.map(partial(_read_png_chunk, folder=folder), chunks) for array in chunk]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)


def _read_png_chunk(paths: list[Path], folder: Path) -> list[np.ndarray]:
    return [_read_png(path, folder) for path in paths]


def _read_png(path: Path, folder: Path) -> np.ndarray:
    """One MNIST-M image; `folder` (MNIST-M's own) is what the message says to download again."""
    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"))
    except (OSError, ValueError, SyntaxError) as e:  # missing, truncated, not an image: PIL raises all three
        raise DataError(
            f"MNIST-M image {path} is missing or unreadable ({describe_error(e)}); "
            f"delete {folder} and download it again"
        ) from e
    if array.shape != (MNISTM_SIZE, MNISTM_SIZE, 3):
        raise DataError(
            f"MNIST-M image {path} is {array.shape[1]}×{array.shape[0]}; "
            f"the release's images are all {MNISTM_SIZE}×{MNISTM_SIZE}"
        )
    return array


_READERS = {"mnist": _load_mnist, "mnistm": _load_mnistm, "usps": _load_usps, "svhn": _load_svhn}

register_domain(DomainSpec("mnist", NUM_CLASSES, aliases=("M",)))
register_domain(DomainSpec("mnistm", NUM_CLASSES, aliases=("MM",)))
register_domain(DomainSpec("usps", NUM_CLASSES, aliases=("U",)))
register_domain(DomainSpec("svhn", NUM_CLASSES, aliases=("S",)))
