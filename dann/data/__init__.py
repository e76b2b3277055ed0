"""Datasets. A task is a `DomainPair` subclass built from `dataset._target_` (one class per benchmark
family: `Moons`, `Digits`, `Office31`, `OfficeHome`, `VisDA2017`, `DomainNet`, `Folder`); its
`load()` returns the `DomainData` of the task. Importing a benchmark's module registers its domains.
"""

from __future__ import annotations

from dann.data.base import (
    DOMAINS,
    AnySplit,
    DomainData,
    DomainPair,
    DomainSpec,
    ImageSplit,
    Split,
    labeled_subset,
    register_domain,
    resolve_domain,
    subset,
    to_device,
)
from dann.data.digits import Digits
from dann.data.domainnet import DomainNet
from dann.data.folder import Folder
from dann.data.moons import Moons
from dann.data.office import Office31, OfficeHome
from dann.data.stream import ImageStream, TensorStream, eval_batches, make_stream, to_model_input
from dann.data.visda import VisDA2017

__all__ = [
    "DOMAINS",
    "AnySplit",
    "Digits",
    "DomainData",
    "DomainNet",
    "DomainPair",
    "DomainSpec",
    "Folder",
    "ImageSplit",
    "ImageStream",
    "Moons",
    "Office31",
    "OfficeHome",
    "Split",
    "TensorStream",
    "VisDA2017",
    "eval_batches",
    "labeled_subset",
    "make_stream",
    "register_domain",
    "resolve_domain",
    "subset",
    "to_device",
    "to_model_input",
]
