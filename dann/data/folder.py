"""`dataset=folder`: any two directories of class sub-folders, as source and target.

    source_dir/<class>/<image>     labeled source images (`dataset.source_dir`)
    target_dir/<class>/<image>     target images, their labels used for evaluation only (`dataset.target_dir`)

Classes are matched by folder name and numbered in sorted order; both directories must
have the same class folders, none empty. Images may sit in sub-folders of a class folder.
The protocol is transductive, as for the Office benchmarks (see office.py): each domain's
training and evaluation splits are its images under the training and evaluation transforms.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from dann.config.spec import Setting
from dann.data.base import DomainSpec, ImageSplit, register_domain
from dann.data.files import check_class_folders, labeled_files, scan_class_folders
from dann.data.images import ImageDataset
from dann.errors import ConfigError, DataError


@dataclass(kw_only=True)
class Folder(ImageDataset):
    """`dataset=folder`: the task is the two directories; its domains are named "source" and "target"."""

    benchmark = "folder"
    loads = ("source", "target")

    source: str | DomainSpec = "source"  # the domain read from source_dir (fixed: set the directories instead)
    target: str | DomainSpec = "target"  # the domain read from target_dir
    source_dir: Annotated[
        str | None, Setting("required: <source_dir>/<class>/<image>, the labeled source images", noun="a directory")
    ] = None
    target_dir: Annotated[
        str | None, Setting("required: <target_dir>/<class>/<image>; labels for evaluation only", noun="a directory")
    ] = None

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("source_dir", "target_dir"):
            if not getattr(self, key):
                raise ConfigError(
                    f"dataset.{key}: required for dataset=folder: a directory of class sub-folders, "
                    "e.g. dataset=folder dataset.source_dir=/data/photos dataset.target_dir=/data/sketches"
                )

    def load_split(self, domain: DomainSpec, train: bool) -> ImageSplit:
        source, target = _directory(self.source_dir, "source_dir"), _directory(self.target_dir, "target_dir")
        same = source.resolve()  # resolved, so that ./x, x/ and a symlink to x are all seen as x
        if same == target.resolve():
            raise ConfigError(
                f"dataset.source_dir and dataset.target_dir are the same directory ({same}): "
                "a source domain would be adapted to itself; point dataset.target_dir at the target "
                "domain's class folders"
            )
        side = domain.name
        directory = source if side == "source" else target
        by_class = scan_class_folders(directory)
        fix = "Expected one sub-folder per class, each holding that class's images"
        if not by_class:
            raise DataError(
                f"dataset.{side}_dir: {directory} has no class sub-folders. {fix}: {directory}/<class>/<image>"
            )
        check_class_folders(by_class, None, directory, f"dataset.{side}_dir", f"{fix}.")
        classes = sorted(by_class)
        files, labels = labeled_files(by_class, classes)
        return self.image_split(side, directory, files, labels, classes, train)


def _directory(value: str, key: str) -> Path:
    directory = Path(value).expanduser().absolute()
    if not directory.is_dir():
        raise DataError(f"dataset.{key}: {directory} is not a directory")
    return directory


# num_classes: known once the directories are scanned.
for _side in ("source", "target"):
    register_domain(DomainSpec(_side, None, dataset="folder"))
