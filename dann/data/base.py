"""What every dataset provides: labeled splits of two domains, and the registry of domains."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from torch import Tensor

from dann.errors import ConfigError, DataError, describe_error


@dataclass
class Split:
    """One split of one domain, held in memory.

    inputs: [N, D] float32 vectors, or [N, C, H, W] uint8 images (scaled and normalised per batch).
    labels: [N] int64 class indices.
    """

    inputs: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.inputs.shape[1:])


@dataclass
class ImageSplit:
    """One split of one domain as image files, decoded batch by batch in DataLoader workers.

    files: [N] paths relative to `root`, a numpy string array: DataLoader workers share it
        without copying, where a list of N Python strings would be copied page by page as
        the workers touch the strings' reference counts (DomainNet has ~600k images).
    labels: [N] int64 class indices into `classes`.
    transform: RGB PIL image → uint8 [3, H, W] tensor (`input_shape`); scaling and
        normalisation happen on the device, as for uint8 tensor splits.
    skipped: unreadable files met so far → the reason, filled as batches arrive.
    """

    name: str  # for messages, e.g. "office31/amazon (train)"
    root: Path
    files: np.ndarray
    labels: Tensor
    classes: tuple[str, ...]
    transform: Callable
    input_shape: tuple[int, int, int]
    on_corrupt: str = "skip"  # skip | error: what an unreadable image does
    skipped: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    def path(self, index: int) -> Path:
        return self.root / str(self.files[index])


AnySplit = Split | ImageSplit


def subset(split: AnySplit, indices: Tensor) -> AnySplit:
    """The examples at `indices` (int64 [K]) of either kind of split, e.g. a labeled fraction."""
    indices = indices.cpu()
    if isinstance(split, ImageSplit):
        return replace(split, files=split.files[indices.numpy()], labels=split.labels[indices], skipped={})
    return replace(
        split,
        inputs=split.inputs[indices.to(split.inputs.device)],
        labels=split.labels[indices.to(split.labels.device)],
    )


def labeled_subset(split: AnySplit, fraction: float, seed: int = 0) -> AnySplit:
    """The part of `split` whose labels may be used: `fraction` of each class's examples (at least one).

    Drawn with a fixed seed, not the run's, so that every run and method sees the same labeled examples.
    """
    generator = torch.Generator().manual_seed(seed)
    labels = split.labels.cpu()
    keep = []
    for label in labels.unique().tolist():
        members = (labels == label).nonzero().squeeze(1)
        count = max(1, round(fraction * len(members)))
        keep.append(members[torch.randperm(len(members), generator=generator)[:count]])
    return subset(split, torch.cat(keep).sort().values)


def data_root(cfg: DictConfig) -> Path:
    """`dataset.root` as an absolute path (`~` expanded), for messages that name files."""
    return Path(str(cfg.root)).expanduser().absolute()


class ListedPaths:
    """Checks that every path a list file names stays inside its dataset's folder.

    A list or labels file (DomainNet's splits, VisDA's image_list.txt, MNIST-M's labels)
    names files by paths relative to `folder`. A line such as `clipart/x/../../../../etc/passwd 0`
    must not make a run read, list or train on files elsewhere, so each path is resolved
    (`..` and symlinks followed, as `Path.resolve` does) and compared with the resolved folder:
    a symlinked data root or dataset folder still works, but a symlink inside the dataset that
    leads out does not. Absolute paths are refused outright.

    Strings, not `Path`s, and each folder a list names resolved once (DomainNet lists ~100k
    files in 345 folders): a file is resolved on its own only if it is a symlink itself.
    """

    def __init__(self, list_file: Path, folder: Path):
        self.list_file = list_file
        self.folder = folder
        self.home = os.path.realpath(folder)
        self._resolved_folders: dict[str, str] = {}

    def check(self, entry: str, number: int) -> None:
        """Raise a `DataError` naming the line unless `folder`/`entry` lies inside `folder`."""
        normal = os.path.normpath(entry)
        if os.path.isabs(entry) or normal == ".." or normal.startswith("../"):
            raise DataError(
                f"{self.list_file}, line {number}: {entry!r} is not a path inside {self.folder}: a list "
                f"file may only name files inside its dataset's folder, by relative paths. The file is "
                f"corrupt or was not made for this dataset: get the release's {self.list_file.name} "
                f"again, or remove that line"
            )
        # The path as written, not `normal`: "link/../x" is wherever link's target has a sibling x.
        parent, name = os.path.split(entry)
        if parent not in self._resolved_folders:
            self._resolved_folders[parent] = self._resolve(os.path.join(self.home, parent), entry, number)
        path = os.path.join(self._resolved_folders[parent], name)
        if name == ".." or os.path.islink(path):
            path = self._resolve(path, entry, number)
        if path != self.home and not path.startswith(self.home.rstrip(os.sep) + os.sep):
            raise DataError(
                f"{self.list_file}, line {number}: {entry!r} leads to {path}, outside {self.home}, "
                f"through a symlink; a dataset's files must lie inside its folder: replace the symlink "
                f"by the files it points to, or point dataset.root at a copy whose files are all inside it"
            )

    def _resolve(self, path: str, entry: str, number: int) -> str:
        try:
            return os.path.realpath(path)
        except ValueError as e:  # a NUL byte in the line (realpath leaves what it cannot resolve as it is)
            raise DataError(
                f"{self.list_file}, line {number}: {entry!r} cannot be resolved ({describe_error(e)}); "
                f"the file is corrupt: get the release's {self.list_file.name} again, "
                f"or remove that line"
            ) from e


def to_device(split: AnySplit, device: torch.device) -> AnySplit:
    """A tensor split with its tensors on `device`; an image split unchanged (it is decoded per batch)."""
    if isinstance(split, ImageSplit):
        return split
    return replace(split, inputs=split.inputs.to(device), labels=split.labels.to(device))


@dataclass
class DomainData:
    """The four splits of a task, in the evaluation protocol the dataset defines."""

    source: str
    target: str
    source_train: AnySplit  # labeled training data
    source_val: AnySplit  # held-out source data: model selection without target labels
    target_train: AnySplit  # unlabeled for adaptation (its labels are used by target_only alone)
    target_test: AnySplit  # target accuracy is measured here
    num_classes: int
    input_shape: tuple[int, ...]
    mean: tuple[float, ...] | None = None  # per-channel normalisation of uint8 images
    std: tuple[float, ...] | None = None
    num_workers: int = 0  # DataLoader worker processes per image stream (`dataset.num_workers`)

    @property
    def skipped_images(self) -> dict[str, int]:
        """Unreadable images skipped so far, per image split (empty for in-memory data)."""
        splits = {
            "source_train": self.source_train,
            "source_val": self.source_val,
            "target_train": self.target_train,
            "target_test": self.target_test,
        }
        return {name: len(split.skipped) for name, split in splits.items() if isinstance(split, ImageSplit)}


@dataclass(frozen=True)
class DomainSpec:
    """A domain that `dataset.source` / `dataset.target` can name."""

    name: str
    num_classes: int | None  # None: known only once loaded (dataset=folder); checked then
    load: Callable[[DictConfig, bool], AnySplit]  # (dataset config, train split?) -> split
    aliases: tuple[str, ...] = ()
    # The benchmark this domain belongs to (office31, domainnet, …): its names and aliases
    # are looked up only by a dataset config of that name, so that generic names such as
    # VisDA's "train" or DomainNet's "real" never collide. None: a shared domain (moons,
    # digits) that any other dataset config (mnist_mnistm, svhn_mnist, …) can name.
    dataset: str | None = None


# benchmark (None: shared) → name or alias → domain
DOMAINS: dict[str | None, dict[str, DomainSpec]] = {}


def register_domain(spec: DomainSpec) -> DomainSpec:
    table = DOMAINS.setdefault(spec.dataset, {})
    keys = (spec.name, *spec.aliases)
    for key in keys:
        if key in table:
            where = f" in dataset {spec.dataset}" if spec.dataset else ""
            raise ValueError(f"domain name or alias '{key}' is registered twice{where}")
    table.update(dict.fromkeys(keys, spec))
    return spec


def resolve_domain(name: str, key: str, dataset: str | None = None) -> DomainSpec:
    """Look up a domain by name or alias; `key` is the config key it came from, for the error.

    `dataset` is the dataset config's `name`: a benchmark that registered its own domains
    (office31, office_home, visda2017, domainnet, folder) is searched alone; any other
    dataset name, or None, searches the shared domains.
    """
    scope = dataset if dataset in DOMAINS else None
    table = DOMAINS.get(scope, {})
    if str(name) in table:
        return table[str(name)]
    specs = {spec.name: spec for spec in table.values()}
    known = ", ".join(f"{n} ({', '.join(s.aliases)})" if s.aliases else n for n, s in sorted(specs.items()))
    message = f"{key}: unknown domain '{name}'"
    if scope is not None:
        message += f" in dataset={scope}"
    message += f"; known domains: {known}"
    elsewhere = sorted(str(other) for other, t in DOMAINS.items() if other not in (scope, None) and str(name) in t)
    if elsewhere:
        message += f"; '{name}' is a domain of dataset={' and dataset='.join(elsewhere)}"
    raise ConfigError(message)


def resolve_domains(dataset_cfg: DictConfig) -> tuple[DomainSpec, DomainSpec]:
    """The (source, target) domains a dataset config names, looked up in its benchmark."""
    dataset = dataset_cfg.get("name")
    return (
        resolve_domain(dataset_cfg.source, "dataset.source", dataset),
        resolve_domain(dataset_cfg.target, "dataset.target", dataset),
    )
