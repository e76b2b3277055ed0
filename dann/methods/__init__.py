"""Training methods, found by `method.name` in this registry.

To add one: subclass `Method`, implement `update()`, and add it to `METHODS`
and a config under `conf/method/`.
"""

from __future__ import annotations

from omegaconf import DictConfig

from dann.errors import ConfigError
from dann.methods.base import Batch, Method
from dann.methods.dann import DANN
from dann.methods.finetune import FineTune, TwoStage
from dann.methods.supervised import SourceOnly, TargetOnly
from dann.models import DANNNetwork

METHODS: dict[str, type[Method]] = {
    "dann": DANN,
    "source_only": SourceOnly,
    "target_only": TargetOnly,
    "finetune": FineTune,
    "two_stage": TwoStage,
}

__all__ = ["METHODS", "Batch", "Method", "build_method"]


def build_method(cfg: DictConfig, network: DANNNetwork) -> Method:
    name = cfg.method.name
    if name not in METHODS:
        raise ConfigError(f"method.name: unknown '{name}'; choose one of {sorted(METHODS)}")
    return METHODS[name](network, cfg)
