"""Every benchmark's files, declared once: where they go under the data root, the addresses they are
downloaded from (mirrors of one file, tried in turn), their checksums and sizes, and how they unpack.

The loaders (digits.py, office.py, visda.py, domainnet.py) take their addresses, checksums and
advice from here, and `python -m dann.data` (list, verify, fetch, where) reads the same
declarations, so the command cannot drift from what the loaders expect.

Only MD5 sums are known for the releases (those torchvision and pytorch-adapt check); a file
without a known sum is never downloaded, only described.
"""

from __future__ import annotations

import gzip
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from dann.data.download import download_file, extract_tar
from dann.data.fetch import Release
from dann.errors import DataError, describe_error


@dataclass(frozen=True)
class Download:
    """One file of a release, as it is downloaded.

    path: where it goes under the data root, e.g. "MNIST/raw/train-images-idx3-ubyte.gz".
    mirrors: addresses of the same file, tried in turn.
    md5: its checksum; None where none is known (then it is never downloaded).
    size: bytes, where known.
    unpack: None (read as it is), "gunzip" (beside itself, without .gz), "tar" or "zip" (into `into`).
    into: where it unpacks, under the data root ("" is the root itself).
    domain: the one domain it holds; None when it serves the whole benchmark.
    """

    path: str
    mirrors: tuple[str, ...] = ()
    md5: str | None = None
    size: int | None = None
    unpack: str | None = None
    into: str = ""
    domain: str | None = None

    def how(self, root: Path) -> str:
        """What to do with it by hand, e.g. "unpack it in /data"."""
        if self.unpack == "gunzip":
            return f"gunzip it in {(root / self.path).parent}"
        if self.unpack in ("tar", "zip"):
            return f"unpack it in {root / self.into}"
        return f"put it in {(root / self.path).parent}"


@dataclass(frozen=True)
class Benchmark:
    """A benchmark's files.

    name: what `python -m dann.data` takes, e.g. "mnistm".
    folder: its own folder under the data root.
    needs: what its loader reads, under the data root (files, or folders ending in "/").
    layout: the tree the files make under the data root, for `where`.
    home: the release's page.
    note: a step by hand beyond downloading and unpacking (a folder to rename).
    """

    name: str
    title: str
    folder: str
    downloads: tuple[Download, ...]
    needs: tuple[str, ...]
    layout: str
    home: str = ""
    note: str = ""

    @property
    def downloadable(self) -> bool:
        """Every file has a checksum and an address: nothing unverified is ever downloaded."""
        return all(d.md5 and d.mirrors for d in self.downloads)

    def files(self, domain: str | None = None) -> tuple[Download, ...]:
        """Its downloads, or those of one domain (with those serving every domain)."""
        return tuple(d for d in self.downloads if domain is None or d.domain in (None, domain))

    def by_hand(self, root: Path, domain: str | None = None) -> str:
        """Where to get the files by hand and what to do with them, in one line."""
        parts = [f"{d.mirrors[0]} ({Path(d.path).name}: {d.how(root)})" for d in self.files(domain) if d.mirrors]
        unlisted = [Path(d.path).name for d in self.files(domain) if not d.mirrors]
        if unlisted:
            parts.append(f"{self.home} ({', '.join(unlisted)}: {self.files(domain)[0].how(root)})")
        elif self.home:
            parts.append(f"see {self.home}")
        advice = " and ".join(parts)
        return f"{advice}; {self.note}" if self.note else advice

    def release(self, root: Path, domain: str | None = None, title: str | None = None) -> Release:
        """The `Release` the loaders hand to `ensure_files`: downloadable only with every checksum known."""
        download = partial(fetch, self, root, domain) if self.downloadable else None
        return Release(title or self.title, root / self.folder, self.by_hand(root, domain), download)


def fetch(benchmark: Benchmark, root: Path, domain: str | None = None, report: Callable[[str], None] | None = None):
    """Download (checksummed, mirrors in turn) and unpack the files of `benchmark` that are missing.

    `report` is told each mirror that failed, in one line. Raises `DataError` when a file has no
    known checksum or every mirror failed.
    """
    for item in benchmark.files(domain):
        if not (item.md5 and item.mirrors):
            raise DataError(f"{benchmark.title}: {Path(item.path).name} is not downloaded (no checksum of it is known)")
        path = Path(root) / item.path
        if item.unpack == "gunzip" and path.with_suffix("").exists():
            continue  # unpacked already (the archive may have been deleted since)
        download_file(list(item.mirrors), path, item.md5, report=report)
        unpack(item, Path(root))


def unpack(item: Download, root: Path) -> None:
    """Unpack a downloaded file as its declaration says (nothing for a file read as it is)."""
    path = root / item.path
    if item.unpack == "gunzip":
        try:
            with gzip.open(path) as packed, open(path.with_suffix(""), "wb") as out:
                shutil.copyfileobj(packed, out)
        except (OSError, EOFError) as e:
            path.with_suffix("").unlink(missing_ok=True)
            raise DataError(f"could not gunzip {path} ({describe_error(e)}); delete it so that it is downloaded again")
    elif item.unpack == "tar":
        extract_tar(path, root / item.into)
    elif item.unpack == "zip":
        try:
            with zipfile.ZipFile(path) as archive:
                archive.extractall(root / item.into)
        except (zipfile.BadZipFile, OSError) as e:
            raise DataError(f"could not unpack {path} ({describe_error(e)}); delete it so that it is downloaded again")


# --- The declarations ---------------------------------------------------------------------

MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")  # torchvision's
MNIST_FILES = {  # name: (MD5, bytes), torchvision's MNIST.resources
    "train-images-idx3-ubyte.gz": ("f68b3c2dcbeaaa9fbdd348bbdeb94873", 9_912_422),
    "train-labels-idx1-ubyte.gz": ("d53e105ee54ea40749a09fcbcd1e9432", 28_881),
    "t10k-images-idx3-ubyte.gz": ("9fb629c4189551a2d022fa330f9573f3", 1_648_877),
    "t10k-labels-idx1-ubyte.gz": ("ec29112dd5afa0611ce80d1b7f02629c", 4_542),
}
MNIST = Benchmark(
    "mnist",
    "MNIST",
    "MNIST",
    tuple(
        Download(f"MNIST/raw/{name}", tuple(m + name for m in MNIST_MIRRORS), md5, size, unpack="gunzip")
        for name, (md5, size) in MNIST_FILES.items()
    ),
    needs=tuple(f"MNIST/raw/{name.removesuffix('.gz')}" for name in MNIST_FILES),
    layout="MNIST/raw/\n  train-images-idx3-ubyte  train-labels-idx1-ubyte\n"
    "  t10k-images-idx3-ubyte   t10k-labels-idx1-ubyte",
    home="http://yann.lecun.com/exdb/mnist/",
)

MNISTM = Benchmark(
    "mnistm",
    "MNIST-M",
    "mnist_m",
    # The mirror pytorch-adapt uses; the archive unpacks to mnist_m/.
    (
        Download(
            "mnist_m.tar.gz",
            ("https://cornell.box.com/shared/static/jado7quprg6hzzdubvwzh9umr75damwi",),
            "859df31c91afe82e80e5012ba928f279",
            unpack="tar",
        ),
    ),
    needs=tuple(f"mnist_m/mnist_m_{split}{suffix}" for split in ("train", "test") for suffix in ("_labels.txt", "/")),
    layout="mnist_m/\n  mnist_m_train/*.png  mnist_m_train_labels.txt\n  mnist_m_test/*.png   mnist_m_test_labels.txt",
    home="http://yaroslav.ganin.net/",  # links the original release
)

_USPS_URL = "https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/multiclass/"  # torchvision's USPS.split_list
USPS = Benchmark(
    "usps",
    "USPS",
    "usps",
    (
        Download("usps/usps.bz2", (_USPS_URL + "usps.bz2",), "ec16c51db3855ca6c91edd34d0e9b197"),
        Download("usps/usps.t.bz2", (_USPS_URL + "usps.t.bz2",), "8ea070ee2aca1ac39742fdd1ef5ed118"),
    ),
    needs=("usps/usps.bz2", "usps/usps.t.bz2"),
    layout="usps/\n  usps.bz2  usps.t.bz2        (kept compressed)",
)

_SVHN_URL = "http://ufldl.stanford.edu/housenumbers/"  # torchvision's SVHN.split_list; the "extra" split is not used
SVHN = Benchmark(
    "svhn",
    "SVHN",
    "svhn",
    (
        Download(
            "svhn/train_32x32.mat", (_SVHN_URL + "train_32x32.mat",), "e26dedcc434d2e4c54c9b2d4a06d8373", 182_040_794
        ),
        Download(
            "svhn/test_32x32.mat", (_SVHN_URL + "test_32x32.mat",), "eb5a983be6a315427106f1b164d9cef3", 64_275_384
        ),
    ),
    needs=("svhn/train_32x32.mat", "svhn/test_32x32.mat"),
    layout="svhn/\n  train_32x32.mat  test_32x32.mat",
    home="http://ufldl.stanford.edu/housenumbers/",
)

OFFICE31_DOMAINS = ("amazon", "dslr", "webcam")
OFFICE31 = Benchmark(
    "office31",
    "Office-31",
    "office31",
    # The mirror and checksum pytorch-adapt uses (its archive unpacks to office31/<domain>/images/).
    (
        Download(
            "office31.tar.gz",
            ("https://cornell.box.com/shared/static/3v2ftdkdhpz1lbbr4uhu0135w7m79p7q",),
            "89818e596f3cdda1d56da0f077435faa",
            unpack="tar",
        ),
    ),
    needs=tuple(f"office31/{d}/images/" for d in OFFICE31_DOMAINS),
    layout="office31/\n  amazon/images/<class>/*.jpg\n  dslr/images/<class>/*.jpg\n  webcam/images/<class>/*.jpg",
    home="https://faculty.cc.gatech.edu/~judy/domainadapt/",
    note="the original release linked there also does (domain_adaptation_images.tar.gz: unpack it in the "
    "data root and rename domain_adaptation_images to office31)",
)

OFFICE_HOME_DOMAINS = ("Art", "Clipart", "Product", "Real_World")
OFFICE_HOME = Benchmark(
    "office_home",
    "Office-Home",
    "office_home",
    (Download("OfficeHomeDataset_10072016.zip", unpack="zip"),),  # behind a form: no address, no checksum
    needs=tuple(f"office_home/{d}/" for d in OFFICE_HOME_DOMAINS),
    layout="office_home/\n  Art/<class>/<image>\n  Clipart/<class>/<image>\n  Product/<class>/<image>\n"
    "  Real_World/<class>/<image>   (or 'Real World', as the archive writes it)",
    home="https://www.hemanthdv.org/officeHomeDataset.html",
    note="rename the unpacked OfficeHomeDataset_10072016 folder to office_home",
)

VISDA_SPLITS = ("train", "validation")
VISDA2017 = Benchmark(
    "visda2017",
    "VisDA-2017",
    "visda2017",
    tuple(
        Download(f"visda2017/{s}.tar", (f"http://csr.bu.edu/ftp/visda17/clf/{s}.tar",), unpack="tar", into="visda2017")
        for s in VISDA_SPLITS
    ),
    needs=tuple(f"visda2017/{s}/" for s in VISDA_SPLITS),
    layout="visda2017/\n  train/image_list.txt  train/<class>/<image>\n"
    "  validation/image_list.txt  validation/<class>/<image>",
    home="http://ai.bu.edu/visda-2017/",
)

_FTP = "http://csr.bu.edu/ftp/visda/2019/multi-source"
# The cleaned release, at the addresses the project page gives (clipart and painting under groundtruth/).
DOMAINNET_ZIPS = {
    "clipart": f"{_FTP}/groundtruth/clipart.zip",
    "infograph": f"{_FTP}/infograph.zip",
    "painting": f"{_FTP}/groundtruth/painting.zip",
    "quickdraw": f"{_FTP}/quickdraw.zip",
    "real": f"{_FTP}/real.zip",
    "sketch": f"{_FTP}/sketch.zip",
}
DOMAINNET = Benchmark(
    "domainnet",
    "DomainNet",
    "domainnet",
    tuple(
        item
        for d, url in DOMAINNET_ZIPS.items()
        for item in (
            Download(f"domainnet/{d}.zip", (url,), unpack="zip", into="domainnet", domain=d),
            *(
                Download(f"domainnet/{d}_{s}.txt", (f"{_FTP}/domainnet/txt/{d}_{s}.txt",), domain=d)
                for s in ("train", "test")
            ),
        )
    ),
    needs=tuple(
        p for d in DOMAINNET_ZIPS for p in (f"domainnet/{d}/", f"domainnet/{d}_train.txt", f"domainnet/{d}_test.txt")
    ),
    layout="domainnet/\n  <domain>/<class>/<image>.jpg\n  <domain>_train.txt  <domain>_test.txt\n"
    "  domain: " + ", ".join(DOMAINNET_ZIPS),
    home="http://ai.bu.edu/M3SDA/",
)

BENCHMARKS = {b.name: b for b in (MNIST, MNISTM, USPS, SVHN, OFFICE31, OFFICE_HOME, VISDA2017, DOMAINNET)}
