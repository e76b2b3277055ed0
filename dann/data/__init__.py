"""Datasets: each module registers its domains; `load_domain_data` builds a task from the config."""

from __future__ import annotations

from omegaconf import DictConfig

from dann.data import digits, domainnet, folder, moons, office  # noqa: F401  (importing registers the domains)
from dann.data.base import (DOMAINS, AnySplit, DomainData, DomainSpec, ImageSplit, Split, register_domain,
                            labelled_subset, resolve_domain, resolve_domains, subset, to_device)
from dann.data.images import check_same_classes, normalisation, num_workers
from dann.data.stream import ImageStream, TensorStream, eval_batches, make_stream, to_model_input
from dann.errors import DataError

__all__ = ["DOMAINS", "AnySplit", "DomainData", "DomainSpec", "ImageSplit", "ImageStream", "Split", "TensorStream",
           "eval_batches", "load_domain_data", "make_stream", "register_domain", "resolve_domain", "resolve_domains",
           "labelled_subset", "subset", "to_device", "to_model_input"]


def load_domain_data(cfg: DictConfig) -> DomainData:
    """Load the source and target splits named by `cfg.source` and `cfg.target` (names or aliases)."""
    source, target = resolve_domains(cfg)
    source_train, source_val = source.load(cfg, True), source.load(cfg, False)
    target_train, target_test = target.load(cfg, True), target.load(cfg, False)
    if source_train.input_shape != target_train.input_shape:
        raise DataError(
            f"source '{source.name}' inputs are {source_train.input_shape} but target '{target.name}' inputs are "
            f"{target_train.input_shape}; set dataset.channels and dataset.image_size so that both domains match"
        )
    if isinstance(source_train, ImageSplit):
        return _image_data(cfg, source.name, target.name, source_train, source_val, target_train, target_test)
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
        input_shape=source_train.input_shape,
        mean=tuple(mean) if mean is not None else None,
        std=tuple(std) if std is not None else None,
    )


def _image_data(cfg: DictConfig, source: str, target: str, source_train: ImageSplit, source_val: ImageSplit,
                target_train: ImageSplit, target_test: ImageSplit) -> DomainData:
    """Image benchmarks: classes matched by name, so that dataset=folder's are checked here too."""
    check_same_classes(source_train.classes, target_train.classes, str(source_train.root), str(target_train.root))
    mean, std = normalisation(cfg)
    return DomainData(
        source=source,
        target=target,
        source_train=source_train,
        source_val=source_val,
        target_train=target_train,
        target_test=target_test,
        num_classes=len(source_train.classes),
        input_shape=source_train.input_shape,
        mean=mean,
        std=std,
        num_workers=num_workers(cfg),
    )
