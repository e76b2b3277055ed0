"""What every dataset provides: labelled splits of two domains, and the registry of domains."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from omegaconf import DictConfig
from torch import Tensor

from dann.errors import ConfigError


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


@dataclass
class DomainData:
    """The four splits of a task, in the evaluation protocol the dataset defines."""

    source: str
    target: str
    source_train: Split  # labelled training data
    source_val: Split  # held-out source data: model selection without target labels
    target_train: Split  # unlabelled for adaptation (its labels are used by target_only alone)
    target_test: Split  # target accuracy is measured here
    num_classes: int
    input_shape: tuple[int, ...]
    mean: tuple[float, ...] | None = None  # per-channel normalisation of uint8 images
    std: tuple[float, ...] | None = None


@dataclass(frozen=True)
class DomainSpec:
    """A domain that `dataset.source` / `dataset.target` can name."""

    name: str
    num_classes: int
    load: Callable[[DictConfig, bool], Split]  # (dataset config, train split?) -> Split
    aliases: tuple[str, ...] = ()


DOMAINS: dict[str, DomainSpec] = {}


def register_domain(spec: DomainSpec) -> DomainSpec:
    for key in (spec.name, *spec.aliases):
        if key in DOMAINS:
            raise ValueError(f"domain name or alias '{key}' is registered twice")
        DOMAINS[key] = spec
    return spec


def resolve_domain(name: str, key: str) -> DomainSpec:
    """Look up a domain by name or alias; `key` is the config key it came from, for the error."""
    if str(name) not in DOMAINS:
        known = sorted({spec.name for spec in DOMAINS.values()})
        raise ConfigError(f"{key}: unknown domain '{name}'; known domains: {', '.join(known)}")
    return DOMAINS[str(name)]
