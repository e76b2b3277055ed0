"""The engine: one training iteration, the same for every method.

A method (`dann.methods.Method`) states what it computes for a batch: its named losses and its
metrics (`StepOutput`). The engine owns everything else:

- for each of the method's phases (`Method.phases`: one for almost every method): autocast, the
  forward pass, zero_grad, backward on the sum of the losses (through fp16's gradient scaler),
  the optimiser step; then the learning-rate step, once per iteration;
- several processes: the method trains inside `torch.nn.parallel.DistributedDataParallel`, whose
  gradient all-reduce overlaps the backward pass (`dann.training.distributed.data_parallel`);
- `trainer.compile`: `torch.compile` of the whole loss computation (feature extractor, heads, losses).
  λ is computed outside it (`Method.scalars`) and enters it as a 0-d tensor, and the learning rate
  lives in the optimiser, so a schedule changing them every step recompiles nothing;
- the gradient diagnostics at the features on the steps it is asked to (`feature_gradients`).

    engine = Engine(method, torch.optim.SGD(method.parameter_groups(), lr=0.01), total_steps=1000)
    metrics = engine.step(batch, progress=step / 1000, diagnose=step % 100 == 0)
"""

from __future__ import annotations

import functools
import operator
from typing import Any

import torch
from torch import Tensor

from dann.methods.base import Batch, Method, StepOutput
from dann.schedules import LRSchedule, constant_lr_factor, resolved
from dann.training import distributed
from dann.training.precision import Runtime


class Engine:
    """Trains `method` with `optimizer` for `total_steps` iterations.

    `optimizer`: any torch optimiser over `method.parameter_groups()` (or groups of your own). A
    group's `lr_mult` (default 1) scales its learning rate: at step t a group trains at
    `lr × lr_mult × lr_schedule(t, total_steps)`, `lr` being the optimiser's own.
    `runtime`: the resolved precision, memory layout and compilation (`dann.training.precision`); the
    network must already be on its device and in its memory layout (`dann.training.precision.prepare`).

    A checkpoint of `method.state_dict()`, `optimizer`, `lr_scheduler` and `grad_scaler` (fp16 only)
    restores it exactly.
    """

    def __init__(
        self,
        method: Method,
        optimizer: torch.optim.Optimizer,
        total_steps: int,
        lr_schedule: LRSchedule = constant_lr_factor,
        runtime: Runtime = Runtime.FP32,
    ):
        self.method = method
        self.optimizer = optimizer
        self.total_steps = total_steps
        self.lr_schedule = resolved(lr_schedule)
        self.runtime = runtime
        self.device = next(method.parameters()).device
        self.base_lr = float(optimizer.defaults["lr"])
        self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, [self._group_factor(group.get("lr_mult", 1.0)) for group in optimizer.param_groups]
        )
        # fp16 only: scales the loss so that small gradients do not flush to zero.
        self.grad_scaler = torch.amp.GradScaler(self.device.type) if runtime.precision == "fp16" else None
        self._wrap()

    def _group_factor(self, lr_mult: float):
        return lambda step: lr_mult * self.lr_schedule(step, self.total_steps)

    def _wrap(self) -> None:
        """DDP around the method (several processes), then compile around that (`trainer.compile`)."""
        self._trainable = _trainable(self.method)
        self.loss_module = distributed.data_parallel(
            self.method, self.device, find_unused_parameters=self.method.leaves_parameters_unused
        )
        self._compiled = torch.compile(self.loss_module) if self.runtime.compile else self.loss_module

    def current_lr(self) -> float:
        """The base learning rate for the coming step: `train/lr`, before any group's `lr_mult`."""
        return self.base_lr * self.lr_schedule(self.lr_scheduler.last_epoch, self.total_steps)

    def step(self, batch: Batch, progress: float, diagnose: bool = False) -> dict[str, Tensor | float]:
        """One training iteration at `progress` in [0, 1]: every phase of the method, then the lr step.

        Returns the metrics under their logged names: detached device tensors (read only at log
        intervals, so no host sync per step) and floats (the scalars, `train/lr`). With `diagnose`,
        also the gradient norms at the features of the iteration's first phase (`feature_gradients`).
        """
        scalars, lr = self.method.scalars(progress), self.current_lr()
        metrics: dict[str, Tensor | float] = {}
        gradients: dict[str, Tensor] = {}
        for i, phase in enumerate(self.method.phases(progress)):
            if distributed.world_size() > 1 and _trainable(self.method) != self._trainable:
                self._wrap()  # the method froze layers (two_stage): DDP must stop waiting for their gradients
            measure = diagnose and i == 0
            # A compiled graph fuses the features' autograd node away; a measured step runs the same module eagerly.
            compiled = self.runtime.compile and not measure
            compute, inputs = (self._compiled, _as_tensors(scalars)) if compiled else (self.loss_module, scalars)
            with self.runtime.autocast(self.device):  # the losses stay float32 (dann.training.precision)
                output: StepOutput = compute(batch, inputs, phase)
            loss = functools.reduce(operator.add, output.losses.values())
            if measure:
                gradients = feature_gradients(output)
            self._optimize(loss)
            metrics |= {f"train/{name}_loss": value.detach() for name, value in output.losses.items()}
            metrics |= output.metrics
        self.lr_scheduler.step()
        return metrics | gradients | {f"train/{name}": value for name, value in scalars.items()} | {"train/lr": lr}

    def _optimize(self, loss: Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        scaler = self.grad_scaler
        (loss if scaler is None else scaler.scale(loss)).backward()  # DDP all-reduces during it
        if scaler is None:
            self.optimizer.step()
        else:  # unscales, skips the step if a gradient overflowed, and adapts the scale
            scaler.step(self.optimizer)
            scaler.update()

    def state_dict(self) -> dict[str, Any]:
        """The optimiser's, the lr schedule's and the gradient scaler's state (the method's is its own)."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": self.lr_scheduler.state_dict(),
            "grad_scaler": self.grad_scaler.state_dict() if self.grad_scaler else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        if self.grad_scaler is not None and state.get("grad_scaler"):
            self.grad_scaler.load_state_dict(state["grad_scaler"])


def feature_gradients(output: StepOutput) -> dict[str, Tensor]:
    """The norms of the gradients the losses send to the shared features `output.features` [B, D]:

    - `train/grad_norm_label`: ‖∂L_label/∂f‖₂ over the whole batch, the label loss's;
    - `train/grad_norm_domain`: ‖∂(Σ other losses)/∂f‖₂: what adaptation adds to the features'
      update, through the reversal layer where the method has one (already times −λ);
    - `train/grad_ratio`: domain / label (0 when the label gradient is 0).

    A norm is 0 where no such gradient reaches the features (the baselines' probe, a frozen feature
    extractor). Losses are batch means, so the norms shrink with the batch; their ratio does not.
    Device tensors (no host sync). Cost: two backward passes from the losses to the features, not
    into the feature extractor; the parameters' gradients and the step are unchanged.
    """
    features = output.features
    zero = torch.zeros((), device=features.device if features is not None else None)

    def norm(losses: list[Tensor]) -> Tensor:
        losses = [loss for loss in losses if loss.requires_grad]
        if not losses or features is None or not features.requires_grad:
            return zero
        total = functools.reduce(operator.add, losses)
        (grad,) = torch.autograd.grad(total, features, retain_graph=True, allow_unused=True)
        return zero if grad is None else torch.linalg.vector_norm(grad.float()).detach()

    label = norm([loss for name, loss in output.losses.items() if name == "label"])
    domain = norm([loss for name, loss in output.losses.items() if name != "label"])
    ratio = torch.where(label > 0, domain / label, torch.zeros_like(label))
    return {"train/grad_norm_label": label, "train/grad_norm_domain": domain, "train/grad_ratio": ratio}


def _as_tensors(scalars: dict[str, float]) -> dict[str, Tensor]:
    """The scalars as 0-d CPU tensors, for the compiled loss: torch.compile bakes a float that reaches an
    autograd Function (the reversal layer) into the graph as a constant, and would compile again for
    every new λ; a tensor is an input of the one graph. On the CPU: no host-device copy, no sync."""
    return {name: torch.tensor(value) for name, value in scalars.items()}


def _trainable(module: torch.nn.Module) -> tuple[bool, ...]:
    return tuple(p.requires_grad for p in module.parameters())
