"""The transductive image benchmarks: Office-31, Office-Home and VisDA-2017.

Files live under `dataset.root`:

    Office-31    <root>/office31/<domain>/images/<class>/*.jpg          domain: amazon, dslr, webcam
    Office-Home  <root>/office_home/<Domain>/<class>/*                  Domain: Art, Clipart, Product, Real_World
    VisDA-2017   <root>/visda2017/<split>/<class>/*, <split>/image_list.txt    split: train, validation

Office-31's original archive (domain_adaptation_images.tar.gz) unpacks to
`domain_adaptation_images/<domain>/images/...`: rename that folder to `office31`. With
`dataset.download=true` a missing Office-31 is fetched from a mirror, MD5-checked. The
official Office-Home archive names its fourth domain `Real World`, which is accepted as it
is. VisDA-2017's `image_list.txt` (lines `<class>/<file> <label>`) is used where present,
else the class folders.

The protocol is transductive, as in the papers and public reproductions: a domain's
training split and its evaluation split are the same images, with the training and the
evaluation transforms. So the target is adapted on without its labels and evaluated with
them, and source validation is the source images seen through the evaluation transforms
(it measures fit, not generalisation).

Class folders are checked against each dataset's class list (class_names.py): a missing,
empty or unexpected class folder is a `DataError`, never trained on.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from omegaconf import DictConfig

from dann.data.base import DomainSpec, ImageSplit, data_root, register_domain
from dann.data.class_names import OFFICE31_CLASSES, OFFICE_HOME_CLASSES, VISDA2017_CLASSES
from dann.download import download_file, extract_tar
from dann.data.images import (
    check_class_folders,
    check_image_config,
    image_split,
    labeled_files,
    names,
    read_list_file,
    scan_class_folders,
    split_name,
    warn_if_count_differs,
)
from dann.errors import ConfigError, DataError, describe_error

# Office-31: the mirror and checksum pytorch-adapt uses (its archive unpacks to office31/<domain>/images/).
OFFICE31_URLS = ["https://cornell.box.com/shared/static/3v2ftdkdhpz1lbbr4uhu0135w7m79p7q"]
OFFICE31_MD5 = "89818e596f3cdda1d56da0f077435faa"
OFFICE31_ARCHIVE = "office31.tar.gz"
OFFICE31_HOME = "https://faculty.cc.gatech.edu/~judy/domainadapt/"
OFFICE_HOME_HOME = "https://www.hemanthdv.org/officeHomeDataset.html"
VISDA_HOME = "http://ai.bu.edu/visda-2017/"
VISDA_URL = "http://csr.bu.edu/ftp/visda17/clf/{split}.tar"

# Images per domain in the releases: a different count is only a warning (cleaned copies exist).
OFFICE31_SIZES = {"amazon": 2817, "dslr": 498, "webcam": 795}
OFFICE_HOME_SIZES = {"Art": 2427, "Clipart": 4365, "Product": 4439, "Real_World": 4357}
VISDA_SIZES = {"train": 152_397, "validation": 55_388}

_ELSEWHERE = "or point dataset.root= (or the DANN_DATA environment variable) at a directory that already holds it"


def _class_folder_split(
    cfg: DictConfig,
    train: bool,
    dataset: str,
    domain: str,
    folder: Path,
    classes: Sequence[str],
    release_size: int,
    fix: str,
) -> ImageSplit:
    """A split of all images under `folder`/<class>/, checked against `classes`."""
    title = f"{dataset} domain '{domain}'"
    by_class = scan_class_folders(folder)
    check_class_folders(by_class, classes, folder, title, fix)
    files, labels = labeled_files(by_class, classes)
    if train:  # once per domain
        warn_if_count_differs(title, len(files), release_size)
    return image_split(cfg, split_name(dataset, domain, train), folder, files, labels, classes, train)


# --- Office-31 ------------------------------------------------------------------------------


def _load_office31(cfg: DictConfig, train: bool, domain: str) -> ImageSplit:
    check_image_config(cfg)
    if not isinstance(cfg.get("download"), bool):
        raise ConfigError(f"dataset.download: expected true or false, got {cfg.get('download')!r}")
    root = data_root(cfg)
    folder = root / "office31" / domain / "images"
    if not folder.is_dir():
        _fetch_office31(cfg, root, folder)
    fix = (
        f"Delete {root / 'office31'} and run again with dataset.download=true, "
        f"or replace it by hand from {OFFICE31_HOME}"
    )
    return _class_folder_split(cfg, train, "office31", domain, folder, OFFICE31_CLASSES, OFFICE31_SIZES[domain], fix)


def _fetch_office31(cfg: DictConfig, root: Path, folder: Path) -> None:
    """Download and unpack Office-31 if allowed, else raise a `DataError` saying how to get it."""
    expected = f"{folder}/<class>/*.jpg"
    by_hand = (
        f"{OFFICE31_URLS[0]} ({OFFICE31_ARCHIVE}: unpack it in {root}), or the original release "
        f"linked at {OFFICE31_HOME} (domain_adaptation_images.tar.gz: unpack it in {root} and rename "
        f"domain_adaptation_images to office31)"
    )
    if not cfg.download:
        raise DataError(
            f"Office-31 not found: expected {expected}. Set dataset.download=true to fetch it, "
            f"or get it by hand from {by_hand}, {_ELSEWHERE}."
        )
    try:
        extract_tar(download_file(OFFICE31_URLS, root / OFFICE31_ARCHIVE, OFFICE31_MD5), root)
    except DataError as e:  # offline, a dead mirror, a checksum mismatch, a broken archive
        raise DataError(
            f"Office-31 not found under {root / 'office31'} and downloading it failed: "
            f"{describe_error(e)}. Expected {expected}. Get it by hand from {by_hand}, "
            f"{_ELSEWHERE}; dataset.download=false stops download attempts."
        ) from e
    if not folder.is_dir():
        raise DataError(
            f"Office-31: the download finished but {folder} is still missing. "
            f"Get it by hand from {by_hand}, {_ELSEWHERE}."
        )


# --- Office-Home ----------------------------------------------------------------------------


def _load_office_home(cfg: DictConfig, train: bool, domain: str) -> ImageSplit:
    check_image_config(cfg)
    base = data_root(cfg) / "office_home"
    # The official archive writes "Real World"; public reproductions rename it "Real_World".
    folder = next((base / name for name in (domain, domain.replace("_", " ")) if (base / name).is_dir()), None)
    get_it = (
        f"Get OfficeHomeDataset_10072016.zip from {OFFICE_HOME_HOME} (no download address with a "
        f"checksum is known, so it is not fetched), unpack it and rename its folder to {base}"
    )
    if folder is None:
        raise DataError(
            f"Office-Home domain '{domain}' not found: expected {base / domain}/<class>/<image>. "
            f"{get_it}, {_ELSEWHERE}."
        )
    return _class_folder_split(
        cfg, train, "office_home", domain, folder, OFFICE_HOME_CLASSES, OFFICE_HOME_SIZES[domain], f"{get_it} again."
    )


# --- VisDA-2017 -----------------------------------------------------------------------------


def _load_visda2017(cfg: DictConfig, train: bool, domain: str) -> ImageSplit:
    check_image_config(cfg)
    folder = data_root(cfg) / "visda2017" / domain
    get_it = (
        f"Get {VISDA_URL.format(split=domain)} (see {VISDA_HOME}; no checksum is known, so it is not "
        f"fetched) and unpack it in {folder.parent}"
    )
    if not folder.is_dir():
        raise DataError(
            f"VisDA-2017 '{domain}' not found: expected {folder}/image_list.txt and "
            f"{folder}/<class>/<image>. {get_it}, {_ELSEWHERE}."
        )
    list_file = folder / "image_list.txt"
    if not list_file.is_file():
        return _class_folder_split(
            cfg, train, "visda2017", domain, folder, VISDA2017_CLASSES, VISDA_SIZES[domain], f"{get_it} again."
        )
    title = f"visda2017 domain '{domain}'"
    files, labels = read_list_file(list_file, folder, VISDA2017_CLASSES, 0, title, f"{get_it} again.")
    unlisted = set(VISDA2017_CLASSES) - {VISDA2017_CLASSES[label] for label in set(labels)}
    if unlisted:
        raise DataError(
            f"{title}: {list_file} lists no image of the classes {names(unlisted)}: a partial copy. {get_it} again."
        )
    _check_list_covers_folders(list_file, files, folder, f"{get_it} again")
    if train:
        warn_if_count_differs(title, len(files), VISDA_SIZES[domain])
    return image_split(cfg, split_name("visda2017", domain, train), folder, files, labels, VISDA2017_CLASSES, train)


def _check_list_covers_folders(list_file: Path, files: Sequence[str], folder: Path, fix: str) -> None:
    """The list names each image of the class folders once: a truncated list or a partly
    replaced folder would otherwise train on a silent subset of the split."""
    by_class = scan_class_folders(folder)
    found = {path for name in VISDA2017_CLASSES for path in by_class.get(name, [])}
    listed = {os.path.normpath(path) for path in files}
    if len(files) != len(found) or listed != found:
        unlisted = f"; not listed: {names(found - listed, shown=5)}" if found - listed else ""
        raise DataError(
            f"{list_file} has {len(files)} image lines but the class folders of {folder} hold "
            f"{len(found)} images{unlisted}; each image needs exactly one line. {fix}, or remove the "
            f"images that are not listed."
        )


# --- Registration -------------------------------------------------------------------------


for _name, _alias in (("amazon", "A"), ("dslr", "D"), ("webcam", "W")):
    register_domain(
        DomainSpec(
            _name, len(OFFICE31_CLASSES), partial(_load_office31, domain=_name), aliases=(_alias,), dataset="office31"
        )
    )
for _name, _alias in (("Art", "Ar"), ("Clipart", "Cl"), ("Product", "Pr"), ("Real_World", "Rw")):
    register_domain(
        DomainSpec(
            _name,
            len(OFFICE_HOME_CLASSES),
            partial(_load_office_home, domain=_name),
            aliases=(_alias,),
            dataset="office_home",
        )
    )
for _name, _alias in (("train", "T"), ("validation", "V")):  # synthetic renderings → real photos (COCO crops)
    register_domain(
        DomainSpec(
            _name,
            len(VISDA2017_CLASSES),
            partial(_load_visda2017, domain=_name),
            aliases=(_alias,),
            dataset="visda2017",
        )
    )
