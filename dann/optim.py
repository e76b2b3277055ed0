"""SGD with momentum and the learning-rate annealing of Ganin et al. (JMLR 2016, §5.2.2)."""

from __future__ import annotations

import functools

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

from dann.errors import ConfigError
from dann.schedules import LR_SCHEDULES


def build_optimizer(
    optim_cfg: DictConfig, module: nn.Module, total_steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """`optim.optimizer` (a partial `_target_`) over `module`'s parameters, and its per-step lr schedule.

    The scheduler is stepped once per training step; at step t the learning rate is
    lr · factor(t / total_steps).
    """
    schedule = optim_cfg.lr_schedule
    if schedule.name not in LR_SCHEDULES:
        raise ConfigError(f"optim.lr_schedule.name: unknown '{schedule.name}'; choose one of {sorted(LR_SCHEDULES)}")
    optimizer = instantiate(optim_cfg.optimizer)(params=module.parameters())
    factor = functools.partial(LR_SCHEDULES[schedule.name], alpha=schedule.alpha, beta=schedule.beta)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: factor(min(step / total_steps, 1.0)))
    return optimizer, scheduler
