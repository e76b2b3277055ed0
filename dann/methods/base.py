"""What every training method provides: `update()` takes one optimisation step, `predict()` classifies."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from dann.distributed import average_gradients
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

    Gradient diagnostics: on the steps the loop logs it sets `diagnose`, and an update run
    inside `with self.feature_gradients() as g:` adds `g.metrics(device)` to what it returns
    (see `FeatureGradients`); a method that does not simply logs none.
    """

    uses_target_labels: ClassVar[bool] = False  # the training loop then gives `update` target labels
    needs_pretrained_backbone: ClassVar[bool] = False  # refused before the run without pretrained weights
    # Set by the training loop before each update: True on the steps it logs, whose update then also
    # returns the gradient norms at the features (`FeatureGradients`). Not saved in checkpoints.
    diagnose: bool = False
    # fp16 training's gradient scaler (`torch.amp.GradScaler`, set by `dann.precision.prepare`); None otherwise.
    grad_scaler: torch.amp.GradScaler | None = None

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

    @classmethod
    def domain_classifier_shape(
        cls, feature_dim: int, num_classes: int, settings: Mapping[str, Any]
    ) -> tuple[int, int]:
        """(in_features, out_features) of the domain classifier this method feeds, for features of
        width `feature_dim` and `num_classes` classes; `settings`: the method's own (its config node).

        The builder sizes `model.domain_classifier` by it, so a method whose adversary sees something
        other than the features, or answers with more than one domain logit (CDAN: features ⊗
        predictions; MDD: class logits), says so here, in its own file. Default: one domain logit
        from the features, as in DANN.
        """
        return feature_dim, 1

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

    @torch.no_grad()
    def features_and_logits(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The shared features [B, D] and the class logits [B, num_classes] of one pass: what an
        evaluation keeps for the selection criteria (dann.criteria). The logits are `predict`'s."""
        features = self.network.feature_extractor(x)
        return features, self.network.label_predictor(features)

    def current_lr(self) -> float:
        """The base learning rate for the coming step: `train/lr`, before any group's `lr_mult`."""
        return self.base_lr * self.lr_schedule(self.lr_scheduler.last_epoch, self.total_steps)

    def feature_gradients(self) -> FeatureGradients:
        """Measures the gradients at the features during this update when `diagnose` is set; a no-op otherwise."""
        return FeatureGradients(self.network, enabled=self.diagnose)

    def _step(self, loss: Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        scaler = self.grad_scaler  # fp16 only: scales the loss so that small gradients do not flush to zero
        (loss if scaler is None else scaler.scale(loss)).backward()
        # Several processes: every rank steps with the mean gradient (still scaled under fp16: the scaler
        # unscales the averaged gradients in its step). One process: nothing.
        average_gradients(p for group in self.optimizer.param_groups for p in group["params"])
        if scaler is None:
            self.optimizer.step()
        else:  # unscales, skips the step if a gradient overflowed, and adapts the scale
            scaler.step(self.optimizer)
            scaler.update()
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


class FeatureGradients:
    """The norms of the gradients that reach the shared features (G_f's output) in one update.

    Wrap the update's forward and backward passes:

        with self.feature_gradients() as grads:
            ...forward, losses, self._step(loss)...
        metrics |= grads.metrics(device)

    and it returns, as device tensors (no host sync; the training loop reads them at log time):

    - `train/grad_norm_label`: the L2 norm, over the whole batch of features, of the gradient that
      the label predictor G_y sends back to them (d label_loss / d features);
    - `train/grad_norm_domain`: the same for the gradient that reaches them from the domain
      classifier through the reversal layer, i.e. already multiplied by -λ_p
      (d (-λ_p · domain_loss) / d features, what adversarial training adds to the features' update);
    - `train/grad_ratio`: domain / label (0 when the label gradient is 0).

    A norm is 0 where no such gradient reaches the features: the domain one for the supervised
    baselines (their domain classifier is a probe on detached features, no reversal layer), both
    where the feature extractor is frozen (two_stage's second stage). Losses are batch means, so the
    norms shrink with the batch size; their ratio does not.

    How: forward hooks on `network.label_predictor` (its input gets a view of its own, so that its
    gradient is the label path's alone) and on `network.gradient_reversal` (a tensor hook on its output;
    the reversed gradient is that times -λ, exactly as the layer computes it). The update's single
    backward pass fills them in: no second backward, and the parameters' gradients and the step are
    bitwise those of an update without it. Cost, on measured steps only: one view node and two
    vector norms over the feature batch (plus one product for the domain one). With `enabled=False`
    nothing is hooked and `metrics` is empty.
    """

    def __init__(self, network: nn.Module, enabled: bool = True):
        self.network = network
        self.enabled = enabled
        self._label: list[Tensor] = []
        self._domain: list[Tensor] = []
        self._handles: list[Any] = []

    def __enter__(self) -> FeatureGradients:
        if self.enabled:
            self._handles = [
                self.network.label_predictor.register_forward_pre_hook(self._hook_label_input),
                self.network.gradient_reversal.register_forward_hook(self._hook_reversal_output),
            ]
        return self

    def __exit__(self, *exc_info: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _hook_label_input(self, module: nn.Module, args: tuple) -> tuple | None:
        if not args or not isinstance(args[0], Tensor) or not args[0].requires_grad:
            return None  # frozen features: no gradient reaches them
        features = args[0].view_as(args[0])  # its own autograd node: only the label path's gradient arrives here
        features.register_hook(lambda grad: self._label.append(torch.linalg.vector_norm(grad)))
        return (features, *args[1:])

    def _hook_reversal_output(self, module: nn.Module, args: tuple, output: Tensor) -> None:
        if not output.requires_grad:
            return
        grl_lambda = float(args[1]) if len(args) > 1 else 1.0
        # The reversal layer hands the features grad * -λ (dann.grl): the same product, so the same numbers.
        output.register_hook(lambda grad: self._domain.append(torch.linalg.vector_norm(grad * -grl_lambda)))

    def metrics(self, device: torch.device) -> dict[str, Tensor]:
        """The three metrics after the backward pass; {} when not enabled."""
        if not self.enabled:
            return {}
        label, domain = _total_norm(self._label, device), _total_norm(self._domain, device)
        ratio = torch.where(label > 0, domain / label, torch.zeros_like(label))
        return {"train/grad_norm_label": label, "train/grad_norm_domain": domain, "train/grad_ratio": ratio}


def _total_norm(norms: list[Tensor], device: torch.device) -> Tensor:
    """One norm over all the tensors the norms were taken of (a module called twice); 0 for none."""
    if not norms:
        return torch.zeros((), device=device)
    if len(norms) == 1:
        return norms[0].detach()
    return torch.linalg.vector_norm(torch.stack(norms)).detach()
