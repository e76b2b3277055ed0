"""What every training method provides: `update()` takes one optimisation step, `predict()` classifies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from dann.models import DANNNetwork
from dann.schedules import LRSchedule, constant_lr_factor


@dataclass
class Batch:
    """One training step's data: equal-sized source and target mini-batches, already on the device.

    `target_y` is given only to methods with `uses_target_labels`. Every label it holds
    may be used: when only a fraction of the target is labeled
    (`dataset.target_labeled_fraction` < 1), `dann.run` gives those methods' training
    loop that labeled subset as the target training split.
    """

    source_x: Tensor
    source_y: Tensor
    target_x: Tensor
    target_y: Tensor | None = None


class Method(nn.Module):
    """A training algorithm over a `DANNNetwork`. Subclasses implement `update`.

    `optimizer`: any torch optimiser over `network.parameter_groups()` (or groups of your
    own). A group's `lr_mult` (default 1) scales its learning rate: at step t a group trains
    at `lr × lr_mult × lr_schedule(t, total_steps)`, `lr` being the optimiser's own.
    `total_steps`: the length of the run, which schedules by progress need.

    The method owns its optimiser and learning-rate schedule, so a checkpoint of
    `state_dict()` plus `optimizer` and `lr_scheduler` restores it exactly.
    """

    uses_target_labels: ClassVar[bool] = False  # the training loop then gives `update` target labels
    needs_pretrained_backbone: ClassVar[bool] = False  # refused before the run without pretrained weights

    def __init__(
        self,
        network: DANNNetwork,
        optimizer: torch.optim.Optimizer,
        total_steps: int,
        lr_schedule: LRSchedule = constant_lr_factor,
    ):
        super().__init__()
        self.network = network
        self.optimizer = optimizer
        self.total_steps = total_steps
        self.lr_schedule = lr_schedule
        self.base_lr = float(optimizer.defaults["lr"])
        self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, [self._group_factor(group.get("lr_mult", 1.0)) for group in optimizer.param_groups]
        )

    def _group_factor(self, lr_mult: float):
        return lambda step: lr_mult * self.lr_schedule(step, self.total_steps)

    def update(self, batch: Batch, progress: float) -> dict[str, Tensor | float]:
        """One optimisation step at training progress `progress` in [0, 1].

        Returns the step's metrics under their logged names: detached device
        tensors (read only at log intervals, so no host sync per step) or floats.
        """
        raise NotImplementedError

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        """Class logits [B, num_classes]."""
        return self.network.predict(x)

    def current_lr(self) -> float:
        """The base learning rate for the coming step: `train/lr`, before any group's `lr_mult`."""
        return self.base_lr * self.lr_schedule(self.lr_scheduler.last_epoch, self.total_steps)

    def _step(self, loss: Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.lr_scheduler.step()


def domain_labels(num_source: int, num_target: int, device: torch.device) -> Tensor:
    """Float targets for the domain classifier: source = 0, target = 1. Shape [num_source + num_target]."""
    return torch.cat([torch.zeros(num_source, device=device), torch.ones(num_target, device=device)])


def step_metrics(
    label_loss: Tensor, domain_loss: Tensor, domain_logits: Tensor, domain_targets: Tensor, grl_lambda: float, lr: float
) -> dict[str, Tensor | float]:
    """The metrics every method logs per step: detached device tensors (no host sync) and floats."""
    return {
        "train/label_loss": label_loss.detach(),
        "train/domain_loss": domain_loss.detach(),
        # Fraction of the batch whose domain the classifier gets right.
        "train/domain_acc": ((domain_logits.detach() > 0).float() == domain_targets).float().mean(),
        "train/lambda": grl_lambda,
        "train/lr": lr,
    }
