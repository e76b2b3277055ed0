"""DomainNet (Peng et al., ICCV 2019): 345 classes in six domains, with official train/test splits.

Files live under `root` (`dataset.root`), as the release unpacks:

    <root>/domainnet/<domain>/<class>/<image>.jpg        one zip per domain
    <root>/domainnet/<domain>_train.txt, <domain>_test.txt   lines `<domain>/<class>/<image>.jpg <label>`

domain: clipart, infograph, painting, quickdraw, real, sketch. The protocol is inductive,
with the official split files: a domain's training split is `<domain>_train.txt`, its
evaluation split `<domain>_test.txt` (target test, and source validation). Every line is
checked (its class among the 345, its label the class's index, its file present), and
every domain must have all 345 class folders. A split need not list every class: the
release's painting_train.txt has no t-shirt.

No checksums of the release are known, so nothing is downloaded: a missing domain stops
the run with the addresses to fetch it from.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dann.data import catalog
from dann.data.base import DomainSpec, ImageSplit, register_domain
from dann.data.class_names import DOMAINNET_CLASSES
from dann.data.fetch import ensure_files
from dann.data.files import names, read_list_file
from dann.data.images import ImageDataset
from dann.errors import DataError


@dataclass(kw_only=True)
class DomainNet(ImageDataset):
    """`dataset=domainnet`: 345 classes in six domains, clipart (c), infograph (i), painting (p),
    quickdraw (q), real (r) and sketch (s). Not downloaded: no checksums of the release are known."""

    benchmark = "domainnet"
    loads = tuple(catalog.DOMAINNET_ZIPS)

    source: str | DomainSpec = "clipart"
    target: str | DomainSpec = "painting"
    protocol: str = "inductive"  # the official splits: adapt on <target>_train.txt, report on <target>_test.txt
    num_workers: int = 8

    def load_split(self, domain: DomainSpec, train: bool) -> ImageSplit:
        name = domain.name
        base = self.root / "domainnet"
        list_file, folder = base / f"{name}_{'train' if train else 'test'}.txt", base / name
        title = f"domainnet domain '{name}'"
        release = catalog.DOMAINNET.release(self.root, name, title=f"DomainNet domain '{name}'")
        ensure_files(release, [folder, list_file], download=False)
        fix = f"Get it again from {release.by_hand}."
        _check_class_folders(folder, title, fix)
        files, labels = read_list_file(list_file, base, DOMAINNET_CLASSES, 1, title, fix)
        elsewhere = [f for f in files if Path(os.path.normpath(f)).parts[0] != name]  # normpath: clipart/../real/…
        if elsewhere:
            raise DataError(
                f"{title}: {list_file} lists images of another domain: {names(elsewhere, shown=5)}; "
                f"its paths must start with {name}/"
            )
        return self.image_split(name, base, files, labels, DOMAINNET_CLASSES, train)


def _check_class_folders(folder: Path, title: str, fix: str) -> None:
    """All 345 class folders present: a partly unpacked zip is caught before the list is read."""
    found = {entry.name for entry in os.scandir(folder) if entry.is_dir()}
    absent = set(DOMAINNET_CLASSES) - found
    if absent:
        raise DataError(f"{title} in {folder} is incomplete: missing class folders: {names(absent)}. {fix}")


for _name in catalog.DOMAINNET_ZIPS:
    register_domain(DomainSpec(_name, len(DOMAINNET_CLASSES), aliases=(_name[0],), dataset="domainnet"))
