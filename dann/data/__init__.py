"""Datasets: each module registers its domains; `load_domain_data` builds a task from the config."""

from __future__ import annotations

from omegaconf import DictConfig

from dann.data import digits, domainnet, folder, moons, office  # noqa: F401  (importing registers the domains)
from dann.data.base import (
    DOMAINS,
    AnySplit,
    DomainData,
    DomainSpec,
    ImageSplit,
    Split,
    labeled_subset,
    register_domain,
    resolve_domain,
    resolve_domains,
    subset,
    to_device,
)
from dann.data.images import check_same_classes, normalisation, num_workers
from dann.data.stream import ImageStream, TensorStream, eval_batches, make_stream, to_model_input
from dann.errors import DataError

__all__ = [
    "DOMAINS",
    "AnySplit",
    "DomainData",
    "DomainSpec",
    "ImageSplit",
    "ImageStream",
    "Split",
    "TensorStream",
    "eval_batches",
    "load_domain_data",
    "make_stream",
    "register_domain",
    "resolve_domain",
    "resolve_domains",
    "labeled_subset",
    "subset",
    "to_device",
    "to_model_input",
]


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
    images = isinstance(source_train, ImageSplit)
    if images:  # classes matched by name, so that dataset=folder's are checked here too
        check_same_classes(source_train.classes, target_train.classes, str(source_train.root), str(target_train.root))
    # uint8 images are scaled and normalised on the device; vectors (moons) have no statistics.
    mean, std = normalisation(cfg, source_train.input_shape[0]) if cfg.get("mean") is not None else (None, None)
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
        num_workers=num_workers(cfg),
    )
