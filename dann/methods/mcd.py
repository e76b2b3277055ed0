"""MCD: Saito et al., "Maximum Classifier Discrepancy for Unsupervised Domain Adaptation" (CVPR 2018).

Two classifiers on one generator: they are trained to disagree on the target while both stay right on the
source, and the generator to make them agree, which moves the target features inside the source's support.
The steps and the discrepancy follow the authors' code (github.com/mil-tokyo/MCD_DA).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from dann.config.spec import Setting
from dann.methods.base import Batch, Method, StepOutput, with_frozen_parameters
from dann.models import DANNNetwork


def classifier_discrepancy(logits1: Tensor, logits2: Tensor) -> Tensor:
    """d(p1, p2) = 1/(B·C) Σ_i Σ_k |p1_ik − p2_ik| over softmax outputs of logits [B, C]: the mean absolute
    difference of the two classifiers' class probabilities (the paper's Eq. 1)."""
    return (logits1.softmax(dim=1) - logits2.softmax(dim=1)).abs().mean()


class MCD(Method):
    """G = `network.feature_extractor`, F1 = `network.label_predictor`, F2 = `network.domain_classifier`, sized
    to C outputs here (`domain_classifier_shape`): it fills the second classifier's slot with
    `model.domain_classifier`'s architecture, so a preset gives both heads the same one. Each iteration:

        source (A):         label = CE(F1(G(x_s)), y_s) + CE(F2(G(x_s)), y_s)               trains G, F1, F2
        classifiers (B):    label = the same on source,  domain = −d(F1(G(x_t)), F2(G(x_t)))  trains F1, F2
        generator (C) × n:  domain = d(F1(G(x_t)), F2(G(x_t))), F1 and F2 held fixed          trains G

    with d = `classifier_discrepancy` and n = `generator_steps`; in B, G's features are detached.
    Prediction is the ensemble: log of the mean of the two classifiers' softmax (valid logits).

    Logged: `train/label_loss` (B's), `train/domain_loss` (d at the last generator step), and `train/domain_acc`,
    the fraction of B's [source; target] batch where the classifiers agree on a source example or disagree
    on a target one, as MDD's: how well their disagreement tells the domains apart. `train/lambda` is 0.
    The gradient diagnostics measure step A, which has no domain loss: `train/grad_norm_domain` is 0.
    """

    leaves_parameters_unused: ClassVar[bool] = True  # G in step B, F1 and F2 in step C

    def __init__(
        self,
        network: DANNNetwork,
        generator_steps: Annotated[
            int, Setting("n, the generator's steps per iteration (the paper's 4)", ge=1, noun="an integer")
        ] = 4,
    ):
        super().__init__(network)
        self.generator_steps = int(generator_steps)

    @classmethod
    def domain_classifier_shape(
        cls, feature_dim: int, num_classes: int, settings: Mapping[str, Any]
    ) -> tuple[int, int]:
        return feature_dim, num_classes  # F2: a second classifier over the features

    def scalars(self, progress: float) -> dict[str, float]:
        return {"lambda": 0.0}  # logged as train/lambda: no reversal layer

    def phases(self, progress: float) -> Sequence[str]:
        return ("source", "classifiers") + ("generator",) * self.generator_steps

    def forward(self, batch: Batch, scalars: Mapping[str, float | Tensor], phase: str = "step") -> StepOutput:
        net, num_source = self.network, len(batch.source_x)
        f1, f2 = net.label_predictor, net.domain_classifier
        if phase == "generator":
            features = net.feature_extractor(batch.target_x)
            logits1, logits2 = (with_frozen_parameters(head, features) for head in (f1, f2))
            return StepOutput({"domain": classifier_discrepancy(logits1, logits2)}, {}, features)
        if phase == "source":
            features = net.feature_extractor(batch.source_x)
            label = F.cross_entropy(f1(features), batch.source_y) + F.cross_entropy(f2(features), batch.source_y)
            return StepOutput({"label": label}, {}, features)
        features = net.feature_extractor(torch.cat([batch.source_x, batch.target_x])).detach()  # B: G stays
        logits1, logits2 = f1(features), f2(features)
        label = F.cross_entropy(logits1[:num_source], batch.source_y) + F.cross_entropy(
            logits2[:num_source], batch.source_y
        )
        discrepancy = classifier_discrepancy(logits1[num_source:], logits2[num_source:])
        agree = logits1.detach().argmax(dim=1) == logits2.detach().argmax(dim=1)
        tells_domain = torch.cat([agree[:num_source], ~agree[num_source:]]).float().mean()
        return StepOutput({"label": label, "domain": -discrepancy}, {"train/domain_acc": tells_domain}, features)

    @torch.no_grad()
    def features_and_logits(self, x: Tensor) -> tuple[Tensor, Tensor]:
        net = self.network
        features = net.feature_extractor(x)
        # log((p1 + p2) / 2), from the log-probabilities: finite wherever either classifier's is
        log_probs = torch.stack([net.label_predictor(features), net.domain_classifier(features)]).log_softmax(dim=2)
        return features, torch.logsumexp(log_probs, dim=0) - math.log(2.0)

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        return self.features_and_logits(x)[1]
