"""Datasets: each module registers its domains; `load_domain_data` builds a task from the config."""

from __future__ import annotations

from omegaconf import DictConfig

from dann.data import digits, moons  # noqa: F401  (importing registers the domains)
from dann.data.base import DOMAINS, DomainData, DomainSpec, Split, register_domain, resolve_domain
from dann.data.stream import TensorStream, to_model_input
from dann.errors import DataError

__all__ = ["DOMAINS", "DomainData", "DomainSpec", "Split", "TensorStream", "load_domain_data",
           "register_domain", "resolve_domain", "to_model_input"]


def load_domain_data(cfg: DictConfig) -> DomainData:
    """Load the source and target splits named by `cfg.source` and `cfg.target` (names or aliases)."""
    source = resolve_domain(cfg.source, "dataset.source")
    target = resolve_domain(cfg.target, "dataset.target")
    source_train, source_val = source.load(cfg, True), source.load(cfg, False)
    target_train, target_test = target.load(cfg, True), target.load(cfg, False)
    source_shape = tuple(source_train.inputs.shape[1:])
    target_shape = tuple(target_train.inputs.shape[1:])
    if source_shape != target_shape:
        raise DataError(
            f"source '{source.name}' inputs are {source_shape} but target '{target.name}' inputs are "
            f"{target_shape}; set dataset.channels and dataset.image_size so that both domains match"
        )
    mean = cfg.get("mean")
    std = cfg.get("std")
    return DomainData(
        source=source.name,
        target=target.name,
        source_train=source_train,
        source_val=source_val,
        target_train=target_train,
        target_test=target_test,
        num_classes=source.num_classes,
        input_shape=source_shape,
        mean=tuple(mean) if mean is not None else None,
        std=tuple(std) if std is not None else None,
    )
