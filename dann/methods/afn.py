"""AFN: Xu et al., "Larger Norm More Transferable: An Adaptive Feature Norm Approach for Unsupervised Domain
Adaptation" (ICCV 2019), its stepwise variant SAFN.

No adversary: the features' norms are pushed up by a step Δr at every iteration, on both domains, which the
paper finds makes them more transferable. Follows the Transfer-Learning-Library's
`StepwiseAdaptiveFeatureNorm` (github.com/thuml/Transfer-Learning-Library, `tllib.normalization.afn`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import Tensor

from dann.config.spec import Setting
from dann.methods.base import Batch, Method, StepOutput
from dann.methods.dan import domain_probe, scale_gradient
from dann.models import DANNNetwork


def stepwise_feature_norm(features: Tensor, step: float) -> Tensor:
    """SAFN of one domain's features [n, D]: mean_i (‖f_i‖₂.detach() + Δr − ‖f_i‖₂)², Δr = `step`.

    Its value is always Δr²: what matters is its gradient, −2Δr·f_i / (n‖f_i‖), which grows each norm by Δr.
    """
    norms = features.norm(p=2, dim=1)
    return (norms.detach() + step - norms).pow(2).mean()


class AFN(Method):
    """Label loss on source + λ·SAFN on the source and on the target features:

        losses: label = CE(G_y(f_s), y_s),  domain = SAFN(f_s) + SAFN(f_t)  (gradient × λ),  probe (domain_acc)
        with f = dropout(G_f([x_s; x_t])) [2n, D], SAFN = `stepwise_feature_norm`

    λ = `weight`, a setting of AFN's own rather than the top-level `lambda`: the paper's 0.05 is far from the
    adversarial methods' λ = 1, and a method run with `lambda`'s default would train at 20× the paper's weight.
    It is logged as `train/lambda`; the top-level `lambda` is unused. `train/domain_loss` is the SAFN term
    itself (always 2Δr²: its gradient, not its value, moves the features); `train/feature_norm`, the mean
    ‖f‖₂ of the batch, shows the norms grow. The domain classifier is trained as a probe on the detached
    features, for `train/domain_acc` (`dann.methods.dan.domain_probe`).

    The paper drops out the bottleneck features (p = 0.5) before the classifier and the norm: `feature_dropout`,
    off by default (the bottleneck here has no dropout of its own; presets set the paper's value).
    Each domain's SAFN is a mean over its examples, so DDP's mean of the processes' gradients is the
    one-process gradient without gathering the batch.
    """

    def __init__(
        self,
        network: DANNNetwork,
        weight: Annotated[float, Setting("λ, the weight of the feature-norm loss (the paper's 0.05)", ge=0)] = 0.05,
        step: Annotated[float, Setting("Δr, how far each step pushes the feature norms (the paper's 1.0)", gt=0)] = 1.0,
        feature_dropout: Annotated[
            float, Setting("dropout on the features before the norm and the classifier (the paper's 0.5)", ge=0, lt=1)
        ] = 0.0,
    ):
        super().__init__(network)
        self.weight, self.step, self.feature_dropout = float(weight), float(step), float(feature_dropout)

    def scalars(self, progress: float) -> dict[str, float]:
        return {"lambda": self.weight}  # constant: logged as train/lambda, the weight in effect

    def forward(self, batch: Batch, scalars: Mapping[str, float | Tensor], phase: str = "step") -> StepOutput:
        net, num_source = self.network, len(batch.source_x)
        features = net.feature_extractor(torch.cat([batch.source_x, batch.target_x]))
        features = F.dropout(features, self.feature_dropout, self.training)
        label_loss = F.cross_entropy(net.label_predictor(features[:num_source]), batch.source_y)
        norm_loss = stepwise_feature_norm(features[:num_source], self.step) + stepwise_feature_norm(
            features[num_source:], self.step
        )
        probe_loss, probe_acc = domain_probe(net, features, num_source)
        losses = {"label": label_loss, "domain": scale_gradient(norm_loss, scalars["lambda"]), "probe": probe_loss}
        metrics = {"train/domain_acc": probe_acc, "train/feature_norm": features.detach().norm(p=2, dim=1).mean()}
        return StepOutput(losses, metrics, features)
