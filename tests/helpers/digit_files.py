"""Tiny digit datasets written in the exact on-disk formats that `dann.data.digits` reads.

    from tests.helpers.digit_files import write_mnist, write_mnistm, write_usps, write_svhn, write_mnistm_archive

Each `write_*(root, n_train, n_test, seed=0)` writes both splits of one dataset under `root`
(the directory `dataset.root` points at) and returns a `Written`: the images and labels a
loader should read back. Labels cycle through all ten classes in shuffled order.

The images are learnable: every class is its digit drawn as a seven-segment glyph, jittered
in position and scale, plus noise, so a small CNN beats chance within a few hundred steps.
The domains differ as the real ones do: MNIST is white on black, MNIST-M is the glyph blended
(|background - glyph|) over smooth colour textures, USPS fills a 16×16 frame, SVHN is a
coloured glyph on a coloured 32×32 background.
"""

from __future__ import annotations

import hashlib
import struct
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import scipy.io
import scipy.ndimage
from PIL import Image


class Written(NamedTuple):
    """What a writer wrote, as the loader returns it at the dataset's native size and channels."""

    train_images: np.ndarray  # uint8 [N, C, H, W]
    train_labels: np.ndarray  # int64 [N], 0-9
    test_images: np.ndarray
    test_labels: np.ndarray


# Seven-segment layout in the unit square, (x0, y0, x1, y1) with y pointing down.
_SEGMENTS = {
    "a": (0.30, 0.15, 0.70, 0.27),  # top
    "b": (0.58, 0.15, 0.70, 0.56),  # upper right
    "c": (0.58, 0.44, 0.70, 0.85),  # lower right
    "d": (0.30, 0.73, 0.70, 0.85),  # bottom
    "e": (0.30, 0.44, 0.42, 0.85),  # lower left
    "f": (0.30, 0.15, 0.42, 0.56),  # upper left
    "g": (0.30, 0.44, 0.70, 0.56),  # middle
}
_DIGITS = ["abcdef", "bc", "abdeg", "abcdg", "bcfg", "acdfg", "acdefg", "abc", "abcdefg", "abcdfg"]
_SUPERSAMPLE = 4  # glyphs are drawn at 4× and averaged down: anti-aliased edges


# --- Writers ----------------------------------------------------------------------------


def write_mnist(root: Path | str, n_train: int, n_test: int, seed: int = 0) -> Written:
    """<root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte: uncompressed big-endian idx."""
    raw = Path(root) / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    written = _draw(n_train, n_test, seed, _mnist_images)
    for prefix, images, labels in _splits(written, train="train", test="t10k"):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images[:, 0])
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels.astype(np.uint8))
    return written


def write_mnistm(root: Path | str, n_train: int, n_test: int, seed: int = 0) -> Written:
    """<root>/mnist_m/mnist_m_{train,test}/NNNNNNNN.png (28×28 RGB) and mnist_m_{split}_labels.txt."""
    folder = Path(root) / "mnist_m"
    written = _draw(n_train, n_test, seed, _mnistm_images)
    for split, images, labels in _splits(written, train="train", test="test"):
        image_dir = folder / f"mnist_m_{split}"
        image_dir.mkdir(parents=True, exist_ok=True)
        lines = []
        for i, (image, label) in enumerate(zip(images, labels)):
            name = f"{i:08d}.png"
            Image.fromarray(image.transpose(1, 2, 0)).save(image_dir / name)
            lines.append(f"{name} {label}\n")
        (folder / f"mnist_m_{split}_labels.txt").write_text("".join(lines))
    return written


def write_mnistm_archive(path: Path | str, n_train: int, n_test: int, seed: int = 0) -> str:
    """Write `path` as the release's mnist_m.tar.gz (it unpacks to mnist_m/...); return its MD5.

    The contents are those `write_mnistm(root, n_train, n_test, seed)` writes.
    """
    with tempfile.TemporaryDirectory() as tmp:
        write_mnistm(tmp, n_train, n_test, seed)
        with tarfile.open(path, "w:gz") as tar:
            tar.add(Path(tmp) / "mnist_m", arcname="mnist_m")
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def write_usps(root: Path | str, n_train: int, n_test: int, seed: int = 0) -> Written:
    """<root>/usps/usps.bz2 and usps.t.bz2: bzip2 libsvm lines `label 1:v … 256:v`, label 1-10, v in [-1, 1]."""
    folder = Path(root) / "usps"
    folder.mkdir(parents=True, exist_ok=True)
    written = _draw(n_train, n_test, seed, _usps_images)
    for filename, images, labels in _splits(written, train="usps.bz2", test="usps.t.bz2"):
        _write_libsvm_bz2(folder / filename, images, labels)
    return written


def write_svhn(root: Path | str, n_train: int, n_test: int, seed: int = 0) -> Written:
    """<root>/svhn/{train,test}_32x32.mat: MATLAB v5, X uint8 (32, 32, 3, N), y uint8 (N, 1), digit 0 as 10."""
    folder = Path(root) / "svhn"
    folder.mkdir(parents=True, exist_ok=True)
    written = _draw(n_train, n_test, seed, _svhn_images)
    for split, images, labels in _splits(written, train="train", test="test"):
        y = np.where(labels == 0, 10, labels).astype(np.uint8).reshape(-1, 1)
        X = np.ascontiguousarray(images.transpose(2, 3, 1, 0))  # (N, C, H, W) → (H, W, C, N)
        scipy.io.savemat(folder / f"{split}_32x32.mat", {"X": X, "y": y}, format="5")
    return written


# --- File formats -----------------------------------------------------------------------


def _write_idx(path: Path, array: np.ndarray) -> None:
    # Magic: two zero bytes, type 0x08 (unsigned byte), the number of dimensions; then
    # each dimension as a big-endian uint32; then the data in row-major order.
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def _write_libsvm_bz2(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    # Pixel p is written as the centre of its bin in [-1, 1], so that torchvision's
    # ((v + 1) / 2 * 255).astype(uint8), which truncates, reads back exactly p.
    import bz2

    values = (images.reshape(len(images), -1).astype(np.float64) + 0.5) / 255 * 2 - 1
    lines = []
    for label, row in zip(labels, values):
        pixels = " ".join(f"{i}:{v:.6f}" for i, v in enumerate(row, start=1))
        lines.append(f"{label + 1} {pixels}\n")
    path.write_bytes(bz2.compress("".join(lines).encode()))


# --- Images -----------------------------------------------------------------------------


def _draw(
    n_train: int, n_test: int, seed: int, make: Callable[[np.ndarray, np.random.Generator], np.ndarray]
) -> Written:
    rng = np.random.default_rng(seed)
    train_labels, test_labels = _labels(n_train, rng), _labels(n_test, rng)
    return Written(make(train_labels, rng), train_labels, make(test_labels, rng), test_labels)


def _splits(written: Written, train: str, test: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
    return [(train, written.train_images, written.train_labels), (test, written.test_images, written.test_labels)]


def _labels(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(np.arange(n) % 10).astype(np.int64)


def _glyphs(labels: np.ndarray, size: int, rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
    """Seven-segment digits as float [N, size, size] in [0, 1], each jittered in position and scale."""
    fine = size * _SUPERSAMPLE
    centres = (np.arange(fine) + 0.5) / fine
    out = np.empty((len(labels), size, size), dtype=np.float64)
    for i, label in enumerate(labels):
        s = scale * rng.uniform(0.85, 1.1)
        dx, dy = rng.uniform(-0.08, 0.08, size=2)
        x = (centres - 0.5 - dx) / s + 0.5  # pixel centres in glyph coordinates
        y = (centres - 0.5 - dy) / s + 0.5
        mask = np.zeros((fine, fine), dtype=bool)
        for segment in _DIGITS[label]:
            x0, y0, x1, y1 = _SEGMENTS[segment]
            mask |= ((y >= y0) & (y <= y1))[:, None] & ((x >= x0) & (x <= x1))[None, :]
        out[i] = mask.reshape(size, _SUPERSAMPLE, size, _SUPERSAMPLE).mean(axis=(1, 3))
    return out


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)


def _noise(shape: tuple[int, ...], rng: np.random.Generator, std: float = 0.06) -> np.ndarray:
    return rng.normal(0.0, std, size=shape)


def _mnist_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    glyphs = _glyphs(labels, 28, rng)[:, None]
    return _to_uint8(glyphs + _noise(glyphs.shape, rng))


def _mnistm_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # As MNIST-M is made: |background − digit| per channel, over a colourful texture
    # (here smooth colour noise, 4×4 values interpolated up, mixed with one colour per image).
    # Backgrounds are darkish (0-0.7), so most glyphs stay brighter than what is behind them:
    # the shift is real but, as with the real MNIST-M, not so strong that no source model transfers.
    n = len(labels)
    glyphs = _glyphs(labels, 28, rng)[:, None]
    texture = scipy.ndimage.zoom(rng.uniform(0, 1, size=(n, 3, 4, 4)), (1, 1, 7, 7), order=1)
    background = 0.4 * rng.uniform(0, 1, size=(n, 3, 1, 1)) + 0.3 * texture
    return _to_uint8(np.abs(background - glyphs) + _noise((n, 3, 28, 28), rng))


def _usps_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # USPS digits fill their frame; 254 at most, so that every value stays inside [-1, 1].
    glyphs = _glyphs(labels, 16, rng, scale=1.3)[:, None]
    return np.minimum(_to_uint8(glyphs + _noise(glyphs.shape, rng)), 254)


def _svhn_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # A glyph of one colour on a background of another, at least 0.5 apart in brightness.
    n = len(labels)
    glyphs = _glyphs(labels, 32, rng)[:, None]
    background = rng.uniform(0, 1, size=(n, 3, 1, 1))
    offset = rng.uniform(0.5, 0.8, size=(n, 1, 1, 1)) * np.where(background.mean(1, keepdims=True) > 0.5, -1, 1)
    foreground = np.clip(background + offset, 0, 1)
    images = background * (1 - glyphs) + foreground * glyphs
    return _to_uint8(images + _noise((n, 3, 32, 32), rng))
