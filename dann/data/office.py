"""The Office benchmarks: Office-31 and Office-Home, one folder of class folders per domain.

Files live under `root` (`dataset.root`):

    Office-31    <root>/office31/<domain>/images/<class>/*.jpg          domain: amazon, dslr, webcam
    Office-Home  <root>/office_home/<Domain>/<class>/*                  Domain: Art, Clipart, Product, Real_World

Office-31's original archive (domain_adaptation_images.tar.gz) unpacks to
`domain_adaptation_images/<domain>/images/...`: rename that folder to `office31`. With
`download=true` a missing Office-31 is fetched from a mirror, MD5-checked. The official
Office-Home archive names its fourth domain `Real World`, which is accepted as it is.

The protocol is transductive, as in the papers and public reproductions: a domain's
training split and its evaluation split are the same images, with the training and the
evaluation transforms. So the target is adapted on without its labels and evaluated with
them, and source validation is the source images seen through the evaluation transforms
(it measures fit, not generalisation). VisDA-2017 (visda.py) and dataset=folder (folder.py)
follow the same protocol.

Class folders are checked against each dataset's class list (class_names.py): a missing,
empty or unexpected class folder is a `DataError`, never trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

from dann.data import catalog
from dann.data.base import DomainSpec, ImageSplit, register_domain
from dann.data.class_names import OFFICE31_CLASSES, OFFICE_HOME_CLASSES
from dann.data.fetch import ensure_files
from dann.data.images import ImageDataset

# Images per domain in the releases: a different count is only a warning (cleaned copies exist).
OFFICE31_SIZES = {"amazon": 2817, "dslr": 498, "webcam": 795}
OFFICE_HOME_SIZES = {"Art": 2427, "Clipart": 4365, "Product": 4439, "Real_World": 4357}


@dataclass(kw_only=True)
class Office31(ImageDataset):
    """`dataset=office31` (Saenko et al., ECCV 2010): 31 classes; amazon (A), dslr (D), webcam (W)."""

    benchmark = "office31"
    loads = ("amazon", "dslr", "webcam")

    source: str | DomainSpec = "amazon"
    target: str | DomainSpec = "webcam"
    download: bool = True  # fetch a missing Office-31 (MD5-checked mirror); false: fail saying where to get it

    def load_split(self, domain: DomainSpec, train: bool) -> ImageSplit:
        home = self.root / "office31"
        folder = home / domain.name / "images"
        release = catalog.OFFICE31.release(self.root)
        ensure_files(release, [folder], self.download, layout=f"{folder}/<class>/*.jpg")
        fix = (
            f"Delete {home} and run again with dataset.download=true, or replace it by hand from "
            f"{catalog.OFFICE31.home}"
        )
        return self.class_folder_split(domain.name, folder, OFFICE31_CLASSES, OFFICE31_SIZES[domain.name], train, fix)


@dataclass(kw_only=True)
class OfficeHome(ImageDataset):
    """`dataset=office_home` (Venkateswara et al., CVPR 2017): 65 classes; Art (Ar), Clipart (Cl),
    Product (Pr), Real_World (Rw). Not downloaded: no checksummed address is known."""

    benchmark = "office_home"
    loads = ("Art", "Clipart", "Product", "Real_World")

    source: str | DomainSpec = "Art"
    target: str | DomainSpec = "Clipart"

    def load_split(self, domain: DomainSpec, train: bool) -> ImageSplit:
        base = self.root / "office_home"
        # The official archive writes "Real World"; public reproductions rename it "Real_World".
        folder = next((base / n for n in (domain.name, domain.name.replace("_", " ")) if (base / n).is_dir()), None)
        release = catalog.OFFICE_HOME.release(self.root, title=f"Office-Home domain '{domain.name}'")
        if folder is None:
            folder = base / domain.name
            ensure_files(release, [folder], download=False, layout=f"{folder}/<class>/<image>")
        fix = f"Get it again from {release.by_hand}."
        return self.class_folder_split(
            domain.name, folder, OFFICE_HOME_CLASSES, OFFICE_HOME_SIZES[domain.name], train, fix
        )


for _name, _alias in (("amazon", "A"), ("dslr", "D"), ("webcam", "W")):
    register_domain(DomainSpec(_name, len(OFFICE31_CLASSES), aliases=(_alias,), dataset="office31"))
for _name, _alias in (("Art", "Ar"), ("Clipart", "Cl"), ("Product", "Pr"), ("Real_World", "Rw")):
    register_domain(DomainSpec(_name, len(OFFICE_HOME_CLASSES), aliases=(_alias,), dataset="office_home"))
