"""The optimiser over a network's parameter groups, and its per-step learning-rate schedule."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from dann.errors import ConfigError
from dann.schedules import LR_SCHEDULES


def build_optimizer(
    optim_cfg: DictConfig, parameter_groups: list[dict[str, Any]], total_steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """`optim.optimizer` (a partial `_target_`) over `parameter_groups`, and its per-step lr schedule.

    Each group is `{"params": [...], "lr_mult": float, "name": str}` (see
    `DANNNetwork.parameter_groups`). The scheduler is stepped once per training step; at
    step t (0 for the first) a group's learning rate is
    `optim.optimizer.lr × lr_mult × factor(t, total_steps)`.
    """
    base_lr = float(optim_cfg.optimizer.lr)
    groups = [{**group, "lr": base_lr * group["lr_mult"]} for group in parameter_groups]
    optimizer = instantiate(optim_cfg.optimizer)(params=groups)
    factor = lr_factor(optim_cfg.lr_schedule)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: factor(step, total_steps))
    return optimizer, scheduler


def lr_factor(schedule_cfg: DictConfig) -> Callable[[int, int], float]:
    """The schedule `optim.lr_schedule.name` as factor(step, total_steps), bound to its settings.

    Settings that belong to another schedule are ignored, so that `optim.lr_schedule.name=constant`
    works on any recipe; a setting no schedule has is an error (a typo in a config file).
    """
    name = schedule_cfg.name
    if name not in LR_SCHEDULES:
        raise ConfigError(f"optim.lr_schedule.name: unknown '{name}'; choose one of {sorted(LR_SCHEDULES)}")
    settings = {key: value for key, value in schedule_cfg.items() if key != "name"}
    known = {key for schedule in LR_SCHEDULES.values() for key in _settings_of(schedule)}
    unknown = sorted(settings.keys() - known)
    if unknown:
        raise ConfigError(
            f"optim.lr_schedule.{unknown[0]}: no learning-rate schedule has this setting; "
            f"the settings are {sorted(known)}"
        )
    own = _settings_of(LR_SCHEDULES[name])
    return functools.partial(LR_SCHEDULES[name], **{k: v for k, v in settings.items() if k in own})


def _settings_of(schedule: Callable[..., float]) -> list[str]:
    """A schedule's keyword settings: every parameter after (step, total_steps)."""
    return list(inspect.signature(schedule).parameters)[2:]
