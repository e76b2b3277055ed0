"""DomainNet (Peng et al., ICCV 2019): 345 classes in six domains, with official train/test splits.

Files live under `dataset.root`, as the release unpacks:

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
from functools import partial
from pathlib import Path

from omegaconf import DictConfig

from dann.data.base import DomainSpec, ImageSplit, data_root, register_domain
from dann.data.class_names import DOMAINNET_CLASSES
from dann.data.images import check_image_config, image_split, names, read_list_file, split_name
from dann.errors import DataError

DOMAINNET_HOME = "http://ai.bu.edu/M3SDA/"
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
DOMAINNET_LIST = _FTP + "/domainnet/txt/{domain}_{split}.txt"


def _load_domainnet(cfg: DictConfig, train: bool, domain: str) -> ImageSplit:
    check_image_config(cfg)
    base = data_root(cfg) / "domainnet"
    split = "train" if train else "test"
    list_file, folder = base / f"{domain}_{split}.txt", base / domain
    title = f"domainnet domain '{domain}'"
    get_it = (
        f"Get {DOMAINNET_ZIPS[domain]} (unzip it in {base}) and "
        f"{DOMAINNET_LIST.format(domain=domain, split='train')} and "
        f"{DOMAINNET_LIST.format(domain=domain, split='test')} into {base}; see {DOMAINNET_HOME}"
    )
    missing = [str(path) for path in (folder, list_file) if not path.exists()]
    if missing:
        raise DataError(
            f"DomainNet domain '{domain}' not found: missing {', '.join(missing)}. {get_it}; "
            "or point dataset.root= (or the DANN_DATA environment variable) at a directory that "
            "already holds it."
        )
    _check_class_folders(folder, title, get_it)
    files, labels = read_list_file(list_file, base, DOMAINNET_CLASSES, 1, title, f"{get_it} again.")
    elsewhere = [f for f in files if Path(os.path.normpath(f)).parts[0] != domain]  # normpath: clipart/../real/…
    if elsewhere:
        raise DataError(
            f"{title}: {list_file} lists images of another domain: {names(elsewhere, shown=5)}; "
            f"its paths must start with {domain}/"
        )
    return image_split(cfg, split_name("domainnet", domain, train), base, files, labels, DOMAINNET_CLASSES, train)


def _check_class_folders(folder: Path, title: str, get_it: str) -> None:
    """All 345 class folders present: a partly unpacked zip is caught before the list is read."""
    found = {entry.name for entry in os.scandir(folder) if entry.is_dir()}
    absent = set(DOMAINNET_CLASSES) - found
    if absent:
        raise DataError(f"{title} in {folder} is incomplete: missing class folders: {names(absent)}. {get_it} again.")


for _name in DOMAINNET_ZIPS:
    register_domain(
        DomainSpec(
            _name,
            len(DOMAINNET_CLASSES),
            partial(_load_domainnet, domain=_name),
            aliases=(_name[0],),
            dataset="domainnet",
        )
    )
