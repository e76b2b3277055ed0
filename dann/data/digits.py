"""The digit domains of Ganin et al. (JMLR 2016, §5.2): MNIST, MNIST-M, USPS and SVHN.

Files live under `dataset.root`, each dataset in its usual layout (torchvision's, or the
original release's for MNIST-M), so that existing downloads can be shared:

    MNIST     <root>/MNIST/raw/{train,t10k}-images-idx3-ubyte, {train,t10k}-labels-idx1-ubyte
    MNIST-M   <root>/mnist_m/mnist_m_{train,test}/*.png, <root>/mnist_m/mnist_m_{train,test}_labels.txt
    USPS      <root>/usps/usps.bz2 (train), <root>/usps/usps.t.bz2 (test)
    SVHN      <root>/svhn/train_32x32.mat, <root>/svhn/test_32x32.mat

Missing files are downloaded when `dataset.download` is true. Every domain is returned as
uint8 [N, C, H, W] with the side (`dataset.image_size`) and channel count (`dataset.channels`)
the dataset config asks for, so that a source and a target always match.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from PIL import Image
from torch import Tensor
from torchvision.datasets import MNIST, SVHN, USPS
from torchvision.datasets.utils import download_url

from dann.data.base import DomainSpec, ListedPaths, Split, data_root, register_domain
from dann.download import download_file, extract_tar, network_timeout
from dann.errors import ConfigError, DataError, describe_error

NUM_CLASSES = 10

# MNIST-M (Ganin et al.): the mirror pytorch-adapt uses; the archive unpacks to mnist_m/.
MNISTM_URLS = ["https://cornell.box.com/shared/static/jado7quprg6hzzdubvwzh9umr75damwi"]
MNISTM_MD5 = "859df31c91afe82e80e5012ba928f279"
MNISTM_ARCHIVE = "mnist_m.tar.gz"
MNISTM_HOME = "http://yaroslav.ganin.net/"  # links the original release
MNISTM_SIZE = 28  # every image of the release is 28×28 RGB
_PNG_CHUNK = 1024  # MNIST-M files decoded per thread-pool task

# ITU-R BT.601 luma: the weights PIL's convert("L") uses too.
_LUMA = (0.299, 0.587, 0.114)
_CHUNK = 8192  # images converted at once, so that float copies of a whole split are never held


# --- Config ------------------------------------------------------------------------------


def _image_format(cfg: DictConfig) -> tuple[int, int]:
    """(side, channels) from the dataset config.

    Checks every key the digit loaders read, before any file is touched, so that a config
    typo is reported as one and not as missing or unreadable data.
    """
    size, channels = cfg.get("image_size"), cfg.get("channels")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigError(f"dataset.image_size: expected a positive integer (square side in pixels), got {size!r}")
    if isinstance(channels, bool) or not isinstance(channels, int) or channels not in (1, 3):
        raise ConfigError(f"dataset.channels: expected 1 (grey) or 3 (RGB), got {channels!r}")
    if not isinstance(cfg.get("download"), bool):
        raise ConfigError(f"dataset.download: expected true or false, got {cfg.get('download')!r}")
    return size, channels


# --- Finding and fetching files ---------------------------------------------------------


def _ensure_files(cfg: DictConfig, title: str, files: list[Path], by_hand: str, download: Callable[[], Any]) -> None:
    """Make sure `files` exist: download them if allowed, else raise a `DataError` saying how to get them.

    `by_hand` says where the files come from (URLs, and what to do with them).
    """
    missing = [f for f in files if not f.exists()]
    if not missing:
        return
    folder = files[0].parent  # a dataset's files share one folder
    listing = ", ".join(str(f) for f in missing)
    elsewhere = "or point dataset.root= (or the DANN_DATA environment variable) at a directory that already holds it"
    if not cfg.download:
        raise DataError(
            f"{title} not found: missing {listing}. Set dataset.download=true to fetch it, "
            f"or get it by hand from {by_hand} into {folder}, {elsewhere}."
        )
    try:
        with network_timeout():
            download()
    except Exception as e:  # offline, a dead mirror, a checksum mismatch: all end in the same advice
        raise DataError(
            f"{title} not found under {folder} and downloading it failed: {describe_error(e)}. "
            f"Expected {listing}. Get it by hand from {by_hand} into {folder}, {elsewhere}; "
            f"dataset.download=false stops download attempts."
        ) from e
    still_missing = [f for f in files if not f.exists()]
    if still_missing:
        raise DataError(
            f"{title}: the download finished but {', '.join(map(str, still_missing))} is still missing. "
            f"Get it by hand from {by_hand} into {folder}, {elsewhere}."
        )


def _ensure_torchvision_splits(cfg: DictConfig, title: str, folder: Path, entries: list[list[str]]) -> list[Path]:
    """The train and test files of torchvision's (url, filename, md5) `entries`, fetched if allowed.

    Both splits are checked (and fetched) at once: a task always reads both.
    """
    files = [folder / filename for _, filename, _ in entries]
    by_hand = " and ".join(url for url, _, _ in entries)
    _ensure_files(cfg, title, files, by_hand, lambda: _download_torchvision_files(folder, entries))
    return files


def _download_torchvision_files(folder: Path, entries: list[list[str]]) -> None:
    """Download the missing ones of torchvision's (url, filename, md5) entries with torchvision's `download_url`."""
    for url, filename, md5 in entries:
        path = folder / filename
        if path.exists():
            continue
        try:
            download_url(url, folder, filename, md5)
        except BaseException:
            # download_url writes under the final name before checking the MD5: remove what a
            # failed attempt left, so that the next run does not take it for data.
            path.unlink(missing_ok=True)
            raise


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


# --- MNIST (torchvision) ----------------------------------------------------------------


def _load_mnist(cfg: DictConfig, train: bool) -> Split:
    image_format = _image_format(cfg)
    root = data_root(cfg)
    raw = root / "MNIST" / "raw"
    # torchvision wants all four files, whichever split is read.
    gz_names = [name for name, _ in MNIST.resources]
    by_hand = f"{MNIST.mirrors[0]} ({', '.join(gz_names)}; gunzip each)"
    files = [raw / name.removesuffix(".gz") for name in gz_names]
    _ensure_files(cfg, "MNIST", files, by_hand, lambda: MNIST(root, train=train, download=True))
    dataset = _read("MNIST", raw, lambda: MNIST(root, train=train, download=False))
    return _to_split(image_format, "MNIST", raw, dataset.data.unsqueeze(1), dataset.targets)


# --- USPS (torchvision) -----------------------------------------------------------------


def _load_usps(cfg: DictConfig, train: bool) -> Split:
    image_format = _image_format(cfg)
    folder = data_root(cfg) / "usps"
    _ensure_torchvision_splits(cfg, "USPS", folder, [USPS.split_list["train"], USPS.split_list["test"]])
    # torchvision maps the file's labels 1..10 to 0..9 and its values in [-1, 1] to 0..255.
    dataset = _read("USPS", folder, lambda: USPS(folder, train=train, download=False))
    images = torch.from_numpy(dataset.data).unsqueeze(1)
    return _to_split(image_format, "USPS", folder, images, torch.tensor(dataset.targets))


# --- SVHN (torchvision's files and download, read as torchvision does) -----------------


def _load_svhn(cfg: DictConfig, train: bool) -> Split:
    image_format = _image_format(cfg)
    folder = data_root(cfg) / "svhn"
    # The "extra" split is not used.
    train_file, test_file = _ensure_torchvision_splits(
        cfg, "SVHN", folder, [SVHN.split_list["train"], SVHN.split_list["test"]]
    )
    path = train_file if train else test_file
    images, labels = _read("SVHN", folder, lambda: _read_svhn_mat(path))
    return _to_split(image_format, "SVHN", folder, images, labels)


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


# --- MNIST-M (original release layout) ---------------------------------------------------


def _load_mnistm(cfg: DictConfig, train: bool) -> Split:
    image_format = _image_format(cfg)
    root = data_root(cfg)
    folder = root / "mnist_m"
    # Both splits are checked at once: a task always reads both, and one archive holds them.
    files = [folder / f"mnist_m_{split}{suffix}" for split in ("train", "test") for suffix in ("_labels.txt", "")]
    by_hand = (
        f"{MNISTM_URLS[0]} ({MNISTM_ARCHIVE}, unpack it in {root}) or from the original release linked at {MNISTM_HOME}"
    )
    _ensure_files(cfg, "MNIST-M", files, by_hand, lambda: _download_mnistm(root))
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
    return _to_split(image_format, "MNIST-M", folder, images, torch.tensor(labels))


def _download_mnistm(root: Path) -> None:
    archive = download_file(MNISTM_URLS, root / MNISTM_ARCHIVE, MNISTM_MD5)
    extract_tar(archive, root)


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


register_domain(DomainSpec("mnist", NUM_CLASSES, _load_mnist, aliases=("M",)))
register_domain(DomainSpec("mnistm", NUM_CLASSES, _load_mnistm, aliases=("MM",)))
register_domain(DomainSpec("usps", NUM_CLASSES, _load_usps, aliases=("U",)))
register_domain(DomainSpec("svhn", NUM_CLASSES, _load_svhn, aliases=("S",)))
