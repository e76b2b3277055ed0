"""`dataset=folder`: any two directories of class sub-folders, as source and target.

    dataset.source_dir/<class>/<image>     labeled source images
    dataset.target_dir/<class>/<image>     target images (their labels are used for evaluation only)

Classes are matched by folder name and numbered in sorted order; both directories must
have the same class folders, none empty. Images may sit in sub-folders of a class folder.
The protocol is transductive, as for the Office benchmarks (see office.py): each domain's
training and evaluation splits are its images under the training and evaluation transforms.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from omegaconf import DictConfig

from dann.data.base import DomainSpec, ImageSplit, register_domain
from dann.data.images import check_class_folders, check_image_config, image_split, labeled_files, scan_class_folders
from dann.errors import ConfigError, DataError


def _load_folder(cfg: DictConfig, train: bool, side: str) -> ImageSplit:
    source, target = _directory(cfg, "source_dir"), _directory(cfg, "target_dir")
    same = source.resolve()  # resolved, so that ./x, x/ and a symlink to x are all seen as x
    if same == target.resolve():
        raise ConfigError(
            f"dataset.source_dir and dataset.target_dir are the same directory ({same}): "
            "a source domain would be adapted to itself; point dataset.target_dir at the target "
            "domain's class folders"
        )
    directory = source if side == "source" else target
    check_image_config(cfg)
    by_class = scan_class_folders(directory)
    fix = "Expected one sub-folder per class, each holding that class's images"
    if not by_class:
        raise DataError(f"dataset.{side}_dir: {directory} has no class sub-folders. {fix}: {directory}/<class>/<image>")
    check_class_folders(by_class, None, directory, f"dataset.{side}_dir", f"{fix}.")
    classes = sorted(by_class)
    files, labels = labeled_files(by_class, classes)
    return image_split(cfg, f"folder/{side} ({'train' if train else 'eval'})", directory, files, labels, classes, train)


def _directory(cfg: DictConfig, key: str) -> Path:
    value = cfg.get(key)
    if not value:
        raise ConfigError(
            f"dataset.{key}: required for dataset=folder: a directory of class sub-folders, "
            "e.g. dataset=folder dataset.source_dir=/data/photos dataset.target_dir=/data/sketches"
        )
    directory = Path(str(value)).expanduser().absolute()
    if not directory.is_dir():
        raise DataError(f"dataset.{key}: {directory} is not a directory")
    return directory


# The task is the two directories; "source" and "target" name them (num_classes: known once scanned).
for _side in ("source", "target"):
    register_domain(DomainSpec(_side, None, partial(_load_folder, side=_side), dataset="folder"))
