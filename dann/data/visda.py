"""VisDA-2017 classification (Peng et al., 2017): 12 classes, synthetic renderings (train) → real photos (validation).

Files live under `root` (`dataset.root`):

    <root>/visda2017/<split>/<class>/*, <root>/visda2017/<split>/image_list.txt    split: train, validation

Each split's `image_list.txt` (lines `<class>/<file> <label>`) is used where present, else
the class folders. The protocol is transductive, as for the Office benchmarks (office.py).
Not downloaded: no checksum of the release is known.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dann.data import catalog
from dann.data.base import DomainSpec, ImageSplit, register_domain
from dann.data.class_names import VISDA2017_CLASSES
from dann.data.fetch import ensure_files
from dann.data.files import names, read_list_file, scan_class_folders, warn_if_count_differs
from dann.data.images import ImageDataset
from dann.errors import DataError

# Images per split in the release: a different count is only a warning (cleaned copies exist).
VISDA_SIZES = {"train": 152_397, "validation": 55_388}


@dataclass(kw_only=True)
class VisDA2017(ImageDataset):
    """`dataset=visda2017`: train (T), 152,397 synthetic images → validation (V), 55,388 real ones (COCO crops)."""

    benchmark = "visda2017"
    loads = ("train", "validation")

    source: str | DomainSpec = "train"
    target: str | DomainSpec = "validation"

    def load_split(self, domain: DomainSpec, train: bool) -> ImageSplit:
        folder = self.root / "visda2017" / domain.name
        list_file = folder / "image_list.txt"
        release = catalog.VISDA2017.release(self.root, domain.name, title=f"VisDA-2017 '{domain.name}'")
        ensure_files(release, [folder], download=False, layout=f"{list_file} and {folder}/<class>/<image>")
        fix = f"Get it again from {release.by_hand}"
        if not list_file.is_file():
            size = VISDA_SIZES[domain.name]
            return self.class_folder_split(domain.name, folder, VISDA2017_CLASSES, size, train, f"{fix}.")
        title = f"visda2017 domain '{domain.name}'"
        files, labels = read_list_file(list_file, folder, VISDA2017_CLASSES, 0, title, f"{fix}.")
        unlisted = set(VISDA2017_CLASSES) - {VISDA2017_CLASSES[label] for label in set(labels)}
        if unlisted:
            raise DataError(
                f"{title}: {list_file} lists no image of the classes {names(unlisted)}: a partial copy. {fix}."
            )
        _check_list_covers_folders(list_file, files, folder, fix)
        if train:
            warn_if_count_differs(title, len(files), VISDA_SIZES[domain.name])
        return self.image_split(domain.name, folder, files, labels, VISDA2017_CLASSES, train)


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


for _name, _alias in (("train", "T"), ("validation", "V")):  # synthetic renderings → real photos (COCO crops)
    register_domain(DomainSpec(_name, len(VISDA2017_CLASSES), aliases=(_alias,), dataset="visda2017"))
