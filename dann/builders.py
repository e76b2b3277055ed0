"""Config → components: every swappable part is built by `hydra.utils.instantiate` from its `_target_`.

With the entry points (`dann.run`, and `dann.config.validate`, which checks the config first), this is the
only module that reads the composed config. What it builds takes plain, typed arguments, so the
same classes serve a user's own training loop (docs/guides/own-loop.md).

A config node's `name` labels the component in summaries and reports (`method.name`,
`dataset.name`); it is not a constructor argument, so it is left out when the node is built.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from dann.config.spec import Setting
from dann.data import DomainPair
from dann.methods import Method
from dann.models import DANNNetwork, FeatureExtractor
from dann.training.engine import Engine
from dann.training.precision import Runtime
from dann.training.settings import LABELS, TrainerSettings

LABEL_KEYS = tuple(LABELS)
# What dann.run's config checks refuse beyond what a torch optimiser refuses itself (tried on a dummy parameter,
# dann.config.validate): its signature gives the types; these add the ranges, for the settings `optim.optimizer` has.
TARGET_RANGES = {
    "torch.optim.SGD": {
        "lr": Setting("μ0, the base learning rate (each group: × its lr multiplier)", gt=0, noun="a learning rate"),
        "momentum": Setting("the momentum factor", ge=0, lt=1),
        "weight_decay": Setting("L2 penalty", ge=0),
    }
}


@dataclass(frozen=True)
class ModelSettings:
    """`model`: the three networks (each a node with its `_target_`), and how the backbone trains (`build_network`)."""

    feature_extractor: Annotated[Any, Setting("G_f, the backbone: inputs → features (given input_shape)", node=True)]
    label_predictor: Annotated[Any, Setting("G_y: features → class logits (given in/out_features)", node=True)]
    domain_classifier: Annotated[
        Any, Setting("G_d: features → domain logit, sized as the method asks (given in/out_features)", node=True)
    ]
    bottleneck_dim: Annotated[
        int | None, Setting("width of a Linear-BN-ReLU layer after the backbone; null: none", ge=1)
    ]
    backbone_lr_mult: Annotated[
        float, Setting("the backbone's lr as a fraction of optim.optimizer.lr (new layers: 1)", ge=0, hint="e.g. 0.1")
    ]
    freeze_backbone: Annotated[bool, Setting("train only the new layers (bottleneck and heads)")]
    # At most the backbone's stage count, which depends on the arch: the network checks that.
    unfreeze_last: Annotated[
        int, Setting("with freeze_backbone: the backbone's last N stages still train, counted from the output", ge=0)
    ] = 0


@dataclass(frozen=True)
class OptimSettings:
    """`optim`: the optimiser and its learning-rate schedule (`build_engine`)."""

    optimizer: Annotated[Any, Setting("a torch optimiser; the run supplies the parameter groups", node=True)]
    lr_schedule: Annotated[Any, Setting("the lr factor, called as factor(step, total_steps)", node=True)]


def build(node: DictConfig, **supplied: Any) -> Any:
    """`instantiate(node, **supplied)` without the node's label keys.

    `supplied`: what the code provides (the network, the data's input shape, …). What a
    constructor raises reaches the caller as itself (a `DannError` names the key at fault), not
    wrapped in Hydra's `InstantiationException`.
    """
    # Resolved first: interpolations such as ${dataset.image_size} point outside the node.
    settings = OmegaConf.to_container(node, resolve=True)
    config = {key: value for key, value in settings.items() if key not in LABEL_KEYS}
    try:
        return instantiate(config, **supplied)
    except InstantiationException as e:
        if e.__cause__ is not None:
            raise e.__cause__ from None
        raise


def build_dataset(cfg: DictConfig) -> DomainPair:
    """The dataset pair `dataset._target_` names: cheap to build (no file is read until `.load()`)."""
    return build(cfg.dataset)


def build_network(cfg: DictConfig, input_shape: Sequence[int], num_classes: int) -> DANNNetwork:
    """`model.feature_extractor` over inputs of `input_shape`, the optional bottleneck, and both
    heads sized to its features: `model.label_predictor` to `num_classes`, `model.domain_classifier`
    as the method asks (`Method.domain_classifier_shape`: one logit from the features unless the
    method says otherwise); the backbone frozen as `model.freeze_backbone` and `model.unfreeze_last` ask."""
    model = cfg.model
    backbone = build(model.feature_extractor, input_shape=tuple(input_shape))
    feature_extractor = FeatureExtractor(backbone, model.bottleneck_dim)
    if model.freeze_backbone:
        feature_extractor.freeze_backbone(model.get("unfreeze_last", 0))  # only ResNet configs have it
    width = feature_extractor.out_features
    method_settings = OmegaConf.to_container(cfg.method, resolve=True)
    domain_in, domain_out = get_class(cfg.method._target_).domain_classifier_shape(width, num_classes, method_settings)
    return DANNNetwork(
        feature_extractor,
        label_predictor=build(model.label_predictor, in_features=width, out_features=num_classes),
        domain_classifier=build(model.domain_classifier, in_features=domain_in, out_features=domain_out),
        backbone_lr_mult=float(model.backbone_lr_mult),
    )


def takes_final_lambda(target: str) -> bool:
    """Whether the method class `target` names schedules λ (has a `final_lambda` parameter)."""
    return "final_lambda" in inspect.signature(get_class(target)).parameters


def build_method(cfg: DictConfig, network: DANNNetwork) -> Method:
    """`method` over `network`, and, for a method that takes a final λ (`final_lambda`: the adaptive
    ones), the top-level `lambda`."""
    # Decided by what the class takes, not by whether its node has a `lambda_schedule`: a method config
    # without one (`~method.lambda_schedule`, a user's own `{_target_: dann.methods.DANN}`) falls back to
    # the class's default schedule, which must still end at the λ the summary records, not at 1.
    adaptation = {"final_lambda": float(cfg["lambda"])} if takes_final_lambda(cfg.method._target_) else {}
    return build(cfg.method, network=network, **adaptation)


def build_engine(cfg: DictConfig, network: DANNNetwork, runtime: Runtime = Runtime.FP32) -> Engine:
    """The engine that trains `method` (`build_method`) over `network`: `optim.optimizer` over the
    method's parameter groups, `optim.lr_schedule`, the run's length (`trainer.steps`) and `runtime`
    (the network already in its layout: `dann.training.precision.prepare`)."""
    method = build_method(cfg, network)
    optimizer = build(cfg.optim.optimizer)(params=method.parameter_groups())
    steps = TrainerSettings.from_config(cfg.trainer).steps
    return Engine(method, optimizer, steps, build(cfg.optim.lr_schedule), runtime)
