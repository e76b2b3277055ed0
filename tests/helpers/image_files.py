"""Tiny image benchmarks written in the exact on-disk layouts that `dann.data` reads.

    from tests.helpers.image_files import write_office31, write_office_home, write_visda2017
    from tests.helpers.image_files import write_domainnet, write_class_folders

Each writer puts small images (default 32×32) under `root` (what `dataset.root` points at)
and returns what it wrote: domain → [(path, label)], labels being indices into the
dataset's class list. The images are learnable: each class is a square of its own colour
on a background whose brightness depends on the domain, with noise, so a small network
beats chance quickly and the domains differ.

    write_office31(root)                   <root>/office31/<domain>/images/<class>/*.jpg
    write_office_home(root)                <root>/office_home/<Domain>/<class>/*.jpg
    write_visda2017(root)                  <root>/visda2017/<split>/<class>/*, <split>/image_list.txt
    write_domainnet(root)                  <root>/domainnet/<domain>/<class>/*.jpg, <domain>_{train,test}.txt
    write_class_folders(dir, classes)      <dir>/<class>/*.jpg (dataset=folder)

`paths_touched()` records every file this process opens and every directory it lists, to
check that a loader reads nothing outside its dataset's folder.
"""

from __future__ import annotations

import colorsys
import hashlib
import os
import sys
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

from dann.data.class_names import DOMAINNET_CLASSES, OFFICE31_CLASSES, OFFICE_HOME_CLASSES, VISDA2017_CLASSES

Written = dict[str, list[tuple[Path, int]]]  # domain → [(image path, label)]

OFFICE31_DOMAINS = ("amazon", "dslr", "webcam")
OFFICE_HOME_DOMAINS = ("Art", "Clipart", "Product", "Real_World")
VISDA2017_DOMAINS = ("train", "validation")
DOMAINNET_DOMAINS = ("clipart", "infograph", "painting", "quickdraw", "real", "sketch")


def write_office31(
    root: Path | str,
    images_per_class: int = 2,
    size: int = 32,
    classes: Sequence[str] | None = None,
    domains: Sequence[str] = OFFICE31_DOMAINS,
    seed: int = 0,
) -> Written:
    """<root>/office31/<domain>/images/<class>/frame_NNNN.jpg; `classes`: a subset (default all 31)."""
    return {
        domain: write_class_folders(
            Path(root) / "office31" / domain / "images",
            classes or OFFICE31_CLASSES,
            images_per_class,
            size,
            seed=seed + i,
            label_order=OFFICE31_CLASSES,
        )
        for i, domain in enumerate(domains)
    }


def write_office31_archive(path: Path | str, images_per_class: int = 1, size: int = 16) -> str:
    """Write `path` as the mirror's office31.tar.gz (it unpacks to office31/...); return its MD5."""
    with tempfile.TemporaryDirectory() as tmp:
        write_office31(tmp, images_per_class, size)
        with tarfile.open(path, "w:gz") as tar:
            tar.add(Path(tmp) / "office31", arcname="office31")
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def write_office_home(
    root: Path | str,
    images_per_class: int = 2,
    size: int = 32,
    classes: Sequence[str] | None = None,
    domains: Sequence[str] = OFFICE_HOME_DOMAINS,
    seed: int = 0,
) -> Written:
    """<root>/office_home/<Domain>/<class>/NNNNN.jpg; `classes`: a subset (default all 65)."""
    return {
        domain: write_class_folders(
            Path(root) / "office_home" / domain,
            classes or OFFICE_HOME_CLASSES,
            images_per_class,
            size,
            seed=seed + i,
            label_order=OFFICE_HOME_CLASSES,
        )
        for i, domain in enumerate(domains)
    }


def write_visda2017(
    root: Path | str,
    images_per_class: int = 2,
    size: int = 32,
    classes: Sequence[str] | None = None,
    domains: Sequence[str] = VISDA2017_DOMAINS,
    list_file: bool = True,
    seed: int = 0,
) -> Written:
    """<root>/visda2017/<split>/<class>/* (train PNG, validation JPEG, as released) and, with
    `list_file`, <split>/image_list.txt of lines `<class>/<file> <label>`."""
    written = {}
    for i, domain in enumerate(domains):
        folder = Path(root) / "visda2017" / domain
        suffix = ".png" if domain == "train" else ".jpg"
        written[domain] = write_class_folders(
            folder,
            classes or VISDA2017_CLASSES,
            images_per_class,
            size,
            seed=seed + i,
            label_order=VISDA2017_CLASSES,
            suffix=suffix,
        )
        if list_file:
            lines = [f"{path.relative_to(folder).as_posix()} {label}\n" for path, label in written[domain]]
            (folder / "image_list.txt").write_text("".join(lines))
    return written


def write_domainnet(
    root: Path | str,
    domains: Sequence[str] = ("clipart", "painting"),
    train_per_class: int = 1,
    test_per_class: int = 1,
    size: int = 16,
    classes: Sequence[str] | None = None,
    seed: int = 0,
) -> dict[str, Written]:
    """<root>/domainnet/<domain>/<class>/<domain>_<label>_<n>.jpg and <domain>_{train,test}.txt.

    Returns split ("train", "test") → domain → [(path, label)]. All 345 class folders are
    made; `classes` (default all) get images.
    """
    base = Path(root) / "domainnet"
    written: dict[str, Written] = {"train": {}, "test": {}}
    for i, domain in enumerate(domains):
        for name in DOMAINNET_CLASSES:
            (base / domain / name).mkdir(parents=True, exist_ok=True)
        images = write_class_folders(
            base / domain,
            classes or DOMAINNET_CLASSES,
            train_per_class + test_per_class,
            size,
            seed=seed + i,
            label_order=DOMAINNET_CLASSES,
            prefix=f"{domain}_",
        )
        per_class = train_per_class + test_per_class
        written["train"][domain] = [item for n, item in enumerate(images) if n % per_class < train_per_class]
        written["test"][domain] = [item for n, item in enumerate(images) if n % per_class >= train_per_class]
        for split in ("train", "test"):
            lines = [f"{path.relative_to(base).as_posix()} {label}\n" for path, label in written[split][domain]]
            (base / f"{domain}_{split}.txt").write_text("".join(lines))
    return written


def write_class_folders(
    directory: Path | str,
    classes: Sequence[str],
    images_per_class: int = 2,
    size: int = 32,
    seed: int = 0,
    label_order: Sequence[str] | None = None,
    suffix: str = ".jpg",
    prefix: str = "",
) -> list[tuple[Path, int]]:
    """<directory>/<class>/<prefix><label>_<n><suffix> for each class; labels index `label_order` (default sorted)."""
    label_order = list(label_order or sorted(classes))
    rng = np.random.default_rng(seed)
    brightness = rng.uniform(0.2, 0.8)  # one background per call: one domain
    written = []
    for name in classes:
        label = label_order.index(name)
        folder = Path(directory) / name
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(images_per_class):
            path = folder / f"{prefix}{label:03d}_{n:04d}{suffix}"
            Image.fromarray(_image(label, len(label_order), size, brightness, rng)).save(path)
            written.append((path, label))
    return written


def _image(label: int, num_classes: int, size: int, brightness: float, rng: np.random.Generator) -> np.ndarray:
    """uint8 [size, size, 3]: a square of the class's hue at a random place, on a grey background, plus noise."""
    image = np.full((size, size, 3), brightness)
    side = size // 2
    top, left = rng.integers(0, size - side + 1, size=2)
    image[top : top + side, left : left + side] = colorsys.hsv_to_rgb(label / num_classes, 1.0, 1.0)
    image += rng.normal(0, 0.03, size=image.shape)
    return np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)


_TOUCHED: list[list[str]] = []  # one list per open paths_touched() block


def _audit(event: str, args: tuple) -> None:
    # Python raises these audit events for open()/io.open (PIL and Path.read_text included)
    # and for directory listings (os.walk lists through os.scandir).
    if _TOUCHED and event in ("open", "os.listdir", "os.scandir") and isinstance(args[0], (str, bytes, os.PathLike)):
        _TOUCHED[-1].append(os.fsdecode(args[0]))


sys.addaudithook(_audit)  # once per process: audit hooks cannot be removed


@contextmanager
def paths_touched() -> Iterator[list[str]]:
    """The paths this process opens or lists inside the block, as given (not resolved)."""
    touched: list[str] = []
    _TOUCHED.append(touched)
    try:
        yield touched
    finally:
        _TOUCHED.remove(touched)


def corrupt(path: Path, how: str = "garbage") -> None:
    """Make an image unreadable: `garbage` (not an image at all) or `truncated` (a valid header, half the data)."""
    data = Path(path).read_bytes()
    Path(path).write_bytes(b"this is not an image" if how == "garbage" else data[: len(data) // 2])
