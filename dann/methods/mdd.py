"""MDD: Zhang et al., "Bridging Theory and Algorithm for Domain Adaptation" (ICML 2019).

Minimises the margin disparity discrepancy: an auxiliary classifier h' behind the gradient
reversal layer plays the adversary. Its loss follows the authors' code (github.com/thuml/MDD,
`model/MDD.py`, `MDD.get_loss`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from dann.config.spec import Setting
from dann.methods.base import Batch, StepOutput
from dann.methods.dann import DANN
from dann.models import DANNNetwork
from dann.schedules import LambdaSchedule, ganin_lambda


def log_one_minus_softmax(logits: Tensor, index: Tensor) -> Tensor:
    """log(1 − softmax(logits)[i, index[i]]) [B], exactly and without overflow: the log-sum-exp of the
    other classes' logits minus that of all of them (never log(0) while two logits are finite)."""
    others = logits.scatter(1, index.unsqueeze(1), float("-inf"))
    return torch.logsumexp(others, dim=1) - torch.logsumexp(logits, dim=1)


class MDD(DANN):
    """Label loss on source + the margin disparity discrepancy through the gradient reversal layer.

    The main head h = `network.label_predictor` gives logits y on source and target, and pseudo
    labels ŷ = argmax y (no gradient). The adversarial head h' = `network.domain_classifier`,
    sized to C outputs here (`domain_classifier_shape`; it keeps `model.domain_classifier`'s
    architecture: it fills the paper's auxiliary classifier slot), sees GRL(f):

        losses: label = CE(h(f_s), y_s),
                domain (the transfer loss) = γ · CE(h'(R_λ(f_s)), ŷ_s) + NLL(log(1 − softmax(h'(R_λ(f_t)))), ŷ_t)

    h' minimises it: agree with h on the source, disagree on the target. The features get its
    gradient times −λ_p, so they shrink that disparity. γ = `margin` (the paper's default 4).
    The authors' code warms the reversal coefficient up to 0.1: DANN's λ schedule with `lambda=0.1`.

    Metrics: DANN's names. `train/domain_loss` is the transfer loss; `train/domain_acc` is the
    adversary's success: the fraction of the batch where h' agrees with ŷ on source examples and
    disagrees on target ones (high: it tells the domains apart through the disparity).
    """

    def __init__(
        self,
        network: DANNNetwork,
        lambda_schedule: LambdaSchedule = ganin_lambda,
        final_lambda: float = 1.0,
        margin: Annotated[float, Setting("γ, the weight of the source disparity (the paper's 4)", gt=0)] = 4.0,
    ):
        super().__init__(network, lambda_schedule, final_lambda)
        self.margin = float(margin)

    @classmethod
    def domain_classifier_shape(
        cls, feature_dim: int, num_classes: int, settings: Mapping[str, Any]
    ) -> tuple[int, int]:
        return feature_dim, num_classes  # h': a second classifier over the features

    def forward(self, batch: Batch, scalars: Mapping[str, float | Tensor], phase: str = "step") -> StepOutput:
        net, num_source = self.network, len(batch.source_x)
        features = net.feature_extractor(torch.cat([batch.source_x, batch.target_x]))
        class_logits = net.label_predictor(features)
        adversary_logits = net.domain_classifier(net.gradient_reversal(features, scalars["lambda"]))
        label_loss = F.cross_entropy(class_logits[:num_source], batch.source_y)
        pseudo = class_logits.detach().argmax(dim=1)
        source_disparity = F.cross_entropy(adversary_logits[:num_source], pseudo[:num_source])
        target_disparity = -log_one_minus_softmax(adversary_logits[num_source:], pseudo[num_source:]).mean()
        transfer_loss = self.margin * source_disparity + target_disparity
        agrees = adversary_logits.detach().argmax(dim=1) == pseudo
        tells_domain = torch.cat([agrees[:num_source], ~agrees[num_source:]])
        metrics = {"train/domain_acc": tells_domain.float().mean()}
        return StepOutput({"label": label_loss, "domain": transfer_loss}, metrics, features)
