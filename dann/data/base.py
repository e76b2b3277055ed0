"""What every dataset provides: labeled splits of two domains (`DomainPair.load`), and the registry of domains."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Annotated, ClassVar, Literal, get_args

import numpy as np
import torch
from torch import Tensor

from dann.config.declared import check_arguments
from dann.config.spec import Setting
from dann.data.files import check_same_classes
from dann.errors import ConfigError, DataError

log = logging.getLogger(__name__)

# What a dataset's splits mean (`dataset.protocol`). inductive: report on a target test split never
# trained on; transductive: adapt on all target examples (unlabeled) and report on the same ones;
# heldout: `load` holds out a fixed part of the target's training split and reports on it alone.
EvaluationProtocol = Literal["inductive", "transductive", "heldout"]
PROTOCOLS = get_args(EvaluationProtocol)
# The generator seed of the held-out part: fixed, not the run's, so that every seed and method
# is measured on the same held-out examples and never trains on them.
HELDOUT_SEED = 0


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
    return subset(split, per_class_draw(split.labels, lambda n: max(1, round(fraction * n)), seed))


def per_class_draw(labels: Tensor, count: Callable[[int], int], seed: int) -> Tensor:
    """Sorted indices (int64 [K]) of `count(n)` examples drawn at random from each class of n examples.

    Classes in ascending order, one generator seeded with `seed` for all of them: the same
    labels and seed always give the same indices.
    """
    generator = torch.Generator().manual_seed(seed)
    labels = labels.cpu()
    keep = []
    for label in labels.unique().tolist():
        members = (labels == label).nonzero().squeeze(1)
        keep.append(members[torch.randperm(len(members), generator=generator)[: count(len(members))]])
    return torch.cat(keep).sort().values


def heldout_split(train: AnySplit, evaluation: AnySplit, fraction: float) -> tuple[AnySplit, AnySplit]:
    """`train` cut in two, (the part adaptation trains on, the held-out part the target is tested on).

    `fraction` of each class's examples is held out (rounded; at least one, and at least one
    left to train on, so a class of a single example is never held out), drawn with
    `HELDOUT_SEED`. The held-out part of image files is decoded as `evaluation` is (its
    evaluation transforms), since it is what the target is tested on.
    """
    held = per_class_draw(train.labels, lambda n: min(max(1, round(fraction * n)), n - 1), HELDOUT_SEED)
    kept = torch.ones(len(train), dtype=torch.bool)
    kept[held] = False
    adapt, held_out = subset(train, kept.nonzero().squeeze(1)), subset(train, held)
    if isinstance(held_out, ImageSplit):
        name = held_out.name.removesuffix(" (train)")
        held_out = replace(held_out, name=f"{name} (held out)", transform=evaluation.transform)
    return adapt, held_out


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
    def split_sizes(self) -> dict[str, int]:
        """Examples per split (images listed, including any skipped as unreadable)."""
        splits = (self.source_train, self.source_val, self.target_train, self.target_test)
        names = ("source_train", "source_val", "target_train", "target_test")
        return {name: len(split) for name, split in zip(names, splits)}

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


# The fewest examples and classes of any split. A classifier of one class is right by construction
# (target accuracy 1.0), and the label-free criteria need two points: SND's neighbourhoods leave a
# point out, DEV's control variate a variance; one test example gave accuracy 0.0 and SND NaN.
MIN_SPLIT_EXAMPLES = 2
MIN_SPLIT_CLASSES = 2


def check_usable(data: DomainData) -> None:
    """Refuse a task that cannot give a result: a split with fewer than `MIN_SPLIT_EXAMPLES` examples
    or `MIN_SPLIT_CLASSES` classes, with one `DataError` naming the domain, the split and its
    class counts. Warn when the target test has classes the source training split lacks (legal:
    DomainNet's painting_train lists no t-shirt; but the model never learns them)."""
    splits = (
        ("source", data.source, "train", data.source_train),
        ("source", data.source, "validation", data.source_val),
        ("target", data.target, "train", data.target_train),
        ("target", data.target, "test", data.target_test),
    )
    for domain, name, kind, split in splits:
        counts = torch.bincount(split.labels.cpu(), minlength=data.num_classes) if len(split) else torch.zeros(0)
        present = counts.nonzero().squeeze(1).tolist()
        if len(split) >= MIN_SPLIT_EXAMPLES and len(present) >= MIN_SPLIT_CLASSES:
            continue
        classes = split.classes if isinstance(split, ImageSplit) else tuple(map(str, range(data.num_classes)))
        shown = ", ".join(f"{classes[c]}: {int(counts[c])}" for c in present) or "none"
        where = f" ({split.name}, under {split.root})" if isinstance(split, ImageSplit) else ""
        raise DataError(
            f"{domain} '{name}' {kind} split{where} has {len(split)} example{'s' * (len(split) != 1)} of "
            f"{len(present)} class{'es' * (len(present) != 1)} ({shown}; the task has {data.num_classes}); "
            f"training and evaluating need at least {MIN_SPLIT_EXAMPLES} examples of at least {MIN_SPLIT_CLASSES} "
            "classes in every split (one class is classified right by construction; the selection criteria "
            "compare points); give it more data or classes"
        )
    unseen = set(data.target_test.labels.unique().tolist()) - set(data.source_train.labels.unique().tolist())
    if unseen:
        classes = data.target_test.classes if isinstance(data.target_test, ImageSplit) else None
        log.warning(
            "target '%s' test split has %d class(es) the source training split lacks (%s): the model never learns them",
            data.target,
            len(unseen),
            ", ".join(classes[c] if classes else str(c) for c in sorted(unseen)),
        )


@dataclass(frozen=True)
class DomainSpec:
    """A domain that `dataset.source` / `dataset.target` can name; the dataset class that names it loads it."""

    name: str
    num_classes: int | None  # None: known only once loaded (dataset=folder); checked then
    aliases: tuple[str, ...] = ()
    # The benchmark this domain belongs to (office31, domainnet, …): its names and aliases
    # are looked up only by that benchmark's dataset class, so that generic names such as
    # VisDA's "train" or DomainNet's "real" never collide. None: a shared domain (moons,
    # digits), looked up by the classes of the shared scope (Moons, Digits).
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

    `dataset` is a benchmark that registered its own domains (office31, office_home,
    visda2017, domainnet, folder): it is searched alone; any other name, or None, searches
    the shared domains.
    """
    scope = dataset if dataset in DOMAINS else None
    table = DOMAINS.get(scope, {})
    if str(name) in table:
        return table[str(name)]
    message = f"{key}: unknown domain '{name}'"
    if scope is not None:
        message += f" in dataset={scope}"
    message += f"; known domains: {known_domains(table.values())}"
    elsewhere = sorted(str(other) for other, t in DOMAINS.items() if other not in (scope, None) and str(name) in t)
    if elsewhere:
        message += f"; '{name}' is a domain of dataset={' and dataset='.join(elsewhere)}"
    raise ConfigError(message)


def known_domains(specs: Iterable[DomainSpec]) -> str:
    """Each domain once, with its aliases, for messages: `amazon (A), dslr (D), webcam (W)`."""
    by_name = {spec.name: spec for spec in specs}
    return ", ".join(f"{n} ({', '.join(s.aliases)})" if s.aliases else n for n, s in sorted(by_name.items()))


def data_root(root: str | os.PathLike | None) -> Path:
    """`dataset.root` as an absolute path (`~` expanded), for messages that name files.

    None: the `DANN_DATA` environment variable, else `./data` (what the configs' default says).
    """
    if root is None:
        root = os.environ.get("DANN_DATA", "./data")
    return Path(root).expanduser().absolute()


@dataclass(kw_only=True)
class DomainPair:
    """A task: a source and a target domain of one benchmark, named by name or alias.

    Building one is cheap (Hydra does it from `dataset._target_`, and `dann.config.validate.validate`
    to check the config): the domains are resolved to their `DomainSpec`s and checked to
    make a task, and no file is read. `load()` reads the four splits.

    A subclass is a benchmark family: it sets `benchmark` (the registry scope its domain
    names are looked up in) and `loads` (the domains it can read), adds its own settings as
    fields, and implements `load_split`. Every field is a key of the `dataset` config node.
    """

    benchmark: ClassVar[str | None] = None
    loads: ClassVar[tuple[str, ...]] = ()

    # The resolved DomainSpec once built.
    source: Annotated[str | DomainSpec, Setting("the labeled domain: a name or alias", noun="a domain name")]
    target: Annotated[str | DomainSpec, Setting("the unlabeled domain: a name or alias", noun="a domain name")]
    root: Annotated[
        str | os.PathLike | None,
        Setting("where the data lives; null: $DANN_DATA, else ./data (absolute once built)", noun="a directory"),
    ] = None
    protocol: Annotated[
        EvaluationProtocol,
        Setting("what the splits mean: inductive, transductive, or heldout (a fixed part of the target held out)"),
    ] = "inductive"
    heldout_fraction: Annotated[
        float, Setting("protocol heldout: each target class's share held out", gt=0, lt=1, noun="a fraction")
    ] = 0.2
    target_labeled_fraction: Annotated[
        float, Setting("the target labels target_only/two_stage may see", gt=0, le=1, noun="a fraction")
    ] = 1.0

    def __post_init__(self) -> None:
        # Built in code rather than from a config, it is checked against the same declarations.
        check_arguments(type(self), {f.name: getattr(self, f.name) for f in fields(self) if f.init}, "dataset.")
        self.heldout_fraction = float(self.heldout_fraction)
        self.source = resolve_domain(str(self.source), "dataset.source", self.benchmark)
        self.target = resolve_domain(str(self.target), "dataset.target", self.benchmark)
        source, target = self.source, self.target
        if source.name == target.name:
            raise ConfigError(
                f"dataset.source and dataset.target are both '{source.name}': adaptation needs two different domains"
            )
        if source.num_classes != target.num_classes:
            raise ConfigError(
                f"dataset.target: '{target.name}' has {target.num_classes} classes but dataset.source "
                f"'{source.name}' has {source.num_classes}; source and target must share one label set"
            )
        # Checked after the class counts, whose message says more: shared domains (moons, digits)
        # are one scope, so dataset=moons can name mnist, which Moons cannot load.
        for key, spec in (("dataset.source", source), ("dataset.target", target)):
            if spec.name not in self.loads:
                choices = known_domains(DOMAINS[self.benchmark][name] for name in self.loads)
                raise ConfigError(
                    f"{key}: {type(self).__name__} cannot load domain '{spec.name}'; choose one of {choices}"
                )
        self.root = data_root(self.root)
        self.target_labeled_fraction = float(self.target_labeled_fraction)

    # What `load` puts in DomainData besides the splits: per-channel normalisation of uint8
    # images (None: vectors, which have no statistics), and DataLoader workers per image stream.
    def normalisation(self) -> tuple[tuple[float, ...], tuple[float, ...]] | tuple[None, None]:
        return None, None

    def workers(self) -> int:
        return 0

    def load_split(self, domain: DomainSpec, train: bool) -> AnySplit:
        """`domain`'s training split (`train`) or evaluation split, as the benchmark's protocol defines them."""
        raise NotImplementedError

    def load(self) -> DomainData:
        """The four splits, read in the order source train, source val, target train, target test.

        With `protocol` heldout, the target's training split is cut in two (`heldout_split`):
        adaptation trains on one part and the target is tested on the other, never seen in
        training; the target's own evaluation split lends only its transforms.
        """
        source, target = self.source, self.target
        source_train, source_val = self.load_split(source, True), self.load_split(source, False)
        target_train, target_test = self.load_split(target, True), self.load_split(target, False)
        if self.protocol == "heldout":
            whole = len(target_train)
            target_train, target_test = heldout_split(target_train, target_test, self.heldout_fraction)
            if len(target_test) == 0:
                raise DataError(
                    f"dataset.protocol=heldout: target '{target.name}' has no class with two or more training "
                    f"examples, so none can be held out ({whole} examples)"
                )
            log.info(
                "dataset.protocol=heldout: target '%s': %d of its %d training examples held out as the target "
                "test, %d left for adaptation",
                target.name,
                len(target_test),
                whole,
                len(target_train),
            )
        if source_train.input_shape != target_train.input_shape:
            raise DataError(
                f"source '{source.name}' inputs are {source_train.input_shape} but target '{target.name}' inputs "
                f"are {target_train.input_shape}; set dataset.channels and dataset.image_size so that both domains "
                "match"
            )
        images = isinstance(source_train, ImageSplit)
        if images:  # classes matched by name, so that dataset=folder's are checked here too
            check_same_classes(
                source_train.classes, target_train.classes, str(source_train.root), str(target_train.root)
            )
        mean, std = self.normalisation()
        return DomainData(
            source=source.name,
            target=target.name,
            source_train=source_train,
            source_val=source_val,
            target_train=target_train,
            target_test=target_test,
            num_classes=len(source_train.classes) if images else source.num_classes,
            input_shape=source_train.input_shape,
            mean=mean,
            std=std,
            num_workers=self.workers(),
        )


def per_channel(
    mean: Sequence[float], std: Sequence[float], channels: int
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) as tuples of floats, one per channel; applied on the device after scaling pixels to [0, 1].

    Their values are checked by the config schema (std > 0); their count needs `channels` too.
    """
    stats = {"mean": mean, "std": std}
    for key, value in stats.items():
        if len(value) != channels:
            example = (
                "ImageNet's mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225]"
                if channels == 3
                else f"[{', '.join(['0.5'] * channels)}]"
            )
            raise ConfigError(
                f"dataset.{key}: expected {channels} numbers, one per channel, got {list(value)!r}; e.g. {example}"
            )
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)
