"""What every training method provides: its losses for a batch (`forward`), and `predict`.

A method is a loss module over the shared `DANNNetwork`: it says what it computes for a batch,
its named losses and its metrics, and nothing else. The engine (`dann.training.engine.Engine`) does the
rest the same way for every method: zero_grad, autocast, backward (with fp16's gradient scaler),
the optimiser and learning-rate steps, DistributedDataParallel, compile, and the gradient
diagnostics at the features.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor, nn

from dann.models import DANNNetwork


@dataclass
class Batch:
    """One training step's data: equal-sized source and target mini-batches, already on the device.

    `target_y` is given only to methods with `uses_target_labels`. Every label it holds
    may be used: when only a fraction of the target is labeled
    (`dataset.target_labeled_fraction` < 1), `dann.run` gives those methods' training
    loop that labeled subset as the target training split.
    `source_x` and `source_y` are None in an iteration the method reads no source in (`Method.reads_source`).
    """

    source_x: Tensor | None
    source_y: Tensor | None
    target_x: Tensor
    target_y: Tensor | None = None


class StepOutput(NamedTuple):
    """What a method computes for one optimisation step (a NamedTuple: DDP and torch.compile see its tensors).

    - `losses`: name → scalar loss. The engine minimises their sum and logs each as `train/<name>_loss`.
      `label` is the supervised loss; every other loss counts as "domain" in the gradient diagnostics.
    - `metrics`: logged name → detached scalar device tensor (read only at log steps: no host sync).
    - `features`: the shared features [B, D] the losses were computed from, where the diagnostics
      measure the gradients (None: no features, no diagnostics).
    """

    losses: dict[str, Tensor]
    metrics: dict[str, Tensor]
    features: Tensor | None = None


class Method(nn.Module):
    """A training algorithm over a `DANNNetwork`: subclasses implement `forward` (their losses).

    The contract, for one training iteration at progress p in [0, 1]:

    1. `scalars(p)`: the iteration's scheduled values (λ), plain floats computed before the loss,
       outside any compiled region, and logged as `train/<name>`. `forward` receives them as floats,
       or under `trainer.compile` as 0-d CPU tensors (so that a value changing every step recompiles
       nothing): use them in tensor arithmetic or pass them to the reversal layer, which takes both.
    2. `phases(p)`: the optimisation steps the iteration takes, in order. Almost every method takes one.
       A method of several stages (two_stage, ADDA, SHOT) names each stage's steps from p alone, so that a
       resumed run is in the same stage; state a stage sets up once (a copied encoder) lives in buffers.
    3. `reads_source(p)`: whether the iteration uses a source batch. Where it does not, the loop draws none
       (source-free adaptation: SHOT), and `batch.source_x` is None.
    4. `target_pass_due(p, p_next)`: whether, before the iteration, the method is shown the whole target
       training split's features and logits (`observe_target`), without labels: SHOT's clustering.
    5. For each phase, `forward(batch, scalars, phase)` → `StepOutput`; the engine backpropagates the sum
       of its losses and steps the optimiser. A step updates the parameters its losses reach, no others
       (the optimiser skips a parameter without a gradient): a method detaches what a step must leave alone.

    `uses_target_labels`: the training loop then gives `forward` the target labels.
    `needs_pretrained_backbone`: refused before the run without pretrained weights.
    """

    uses_target_labels: ClassVar[bool] = False
    needs_pretrained_backbone: ClassVar[bool] = False
    # Whether a step may leave some trainable parameters without a gradient (a phase that detaches the
    # features). DistributedDataParallel then searches the graph for them each step; leave it False
    # unless a method's steps need it, since that search costs a graph traversal per step.
    leaves_parameters_unused: ClassVar[bool] = False

    def __init__(self, network: DANNNetwork):
        super().__init__()
        self.network = network

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

    def parameter_groups(self) -> list[dict[str, Any]]:
        """The trainable parameters as optimiser groups (`DANNNetwork.parameter_groups`: each with its `lr_mult`)."""
        return self.network.parameter_groups()

    def scalars(self, progress: float) -> dict[str, float]:
        """The iteration's scheduled values at `progress` in [0, 1], by name; none by default."""
        return {}

    def phases(self, progress: float) -> Sequence[str]:
        """The names of the optimisation steps of one iteration, in order; one, `step`, by default.

        Called at the start of the iteration, so a method may change here what trains (two_stage
        freezes its feature extractor): the engine checks the trainable parameters after it.
        """
        return ("step",)

    def reads_source(self, progress: float) -> bool:
        """Whether the iteration at `progress` uses the source batch; False: the loop draws none."""
        return True

    def target_pass_due(self, progress: float, next_progress: float) -> bool:
        """Whether `observe_target` is due before the iteration at `progress` (the next is at `next_progress`)."""
        return False

    def observe_target(self, features: Tensor, logits: Tensor) -> None:
        """Shown the target training split in eval mode, every example once: its features [N, D] and
        class logits [N, C] (`features_and_logits`), without its labels. Called on every process."""

    def forward(self, batch: Batch, scalars: Mapping[str, float | Tensor], phase: str = "step") -> StepOutput:
        """The losses and metrics of one optimisation step (`phase`) on `batch`."""
        raise NotImplementedError

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        """Class logits [B, num_classes]."""
        return self.network.predict(x)

    @torch.no_grad()
    def features_and_logits(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The shared features [B, D] and the class logits [B, num_classes] of one pass: what an
        evaluation keeps for the selection criteria (dann.selection.criteria). The logits are `predict`'s."""
        features = self.network.feature_extractor(x)
        return features, self.network.label_predictor(features)


def domain_labels(num_source: int, num_target: int, device: torch.device) -> Tensor:
    """Float targets for the domain classifier: source = 0, target = 1. Shape [num_source + num_target]."""
    return torch.cat([torch.zeros(num_source, device=device), torch.ones(num_target, device=device)])


def domain_accuracy(domain_logits: Tensor, domain_targets: Tensor) -> Tensor:
    """`train/domain_acc`: the fraction of the batch whose domain the classifier gets right (a device scalar)."""
    return ((domain_logits.detach() > 0).float() == domain_targets).float().mean()


def with_frozen_parameters(module: nn.Module, *inputs: Tensor) -> Tensor:
    """`module(*inputs)` with its parameters taken as constants: the gradient reaches the inputs, never the
    module. A step that trains one player against a fixed other (MCD's generator against its two classifiers,
    ADDA's target encoder against its discriminator) leaves the other alone this way, under DDP and compile
    too; the module's buffers (BatchNorm statistics) update as in any training-mode call."""
    parameters = {name: parameter.detach() for name, parameter in module.named_parameters()}
    return torch.func.functional_call(module, parameters, inputs)
