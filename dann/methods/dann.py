"""DANN: Ganin et al., "Domain-Adversarial Training of Neural Networks" (JMLR 2016)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import Tensor

from dann.config.spec import Setting
from dann.methods.base import Batch, Method, StepOutput, domain_accuracy, domain_labels
from dann.models import DANNNetwork
from dann.schedules import LambdaSchedule, ganin_lambda, resolved


class DANN(Method):
    """Label loss on source + domain loss on source and target, through the gradient reversal layer.

        losses: label = CE(G_y(f_s), y_s),  domain = BCE(G_d(R_λ(f)), d)   with f = G_f([x_s; x_t]), d = [0; 1]

    The domain classifier minimises its binary cross-entropy at full strength; the reversal layer
    hands the feature extractor that gradient times -λ_p, so the features minimise L_y - λ_p·L_d
    (the paper's saddle point, Eq. 10). λ_p = `lambda_schedule(progress, final_lambda)`: by default
    the paper's warm-up from 0 to `final_lambda` (`dann.schedules.ganin_lambda`, γ = 10).
    """

    def __init__(
        self,
        network: DANNNetwork,
        lambda_schedule: Annotated[
            LambdaSchedule, Setting("λ_p = schedule(progress, final_lambda), from 0 → the top-level lambda", node=True)
        ] = ganin_lambda,
        final_lambda: Annotated[float, Setting("λ where the schedule ends", supplied="lambda")] = 1.0,
    ):
        super().__init__(network)
        self.lambda_schedule = resolved(lambda_schedule)
        self.final_lambda = float(final_lambda)

    def scalars(self, progress: float) -> dict[str, float]:
        return {"lambda": self.lambda_schedule(progress, self.final_lambda)}

    def forward(self, batch: Batch, scalars: Mapping[str, float | Tensor], phase: str = "step") -> StepOutput:
        net, num_source = self.network, len(batch.source_x)
        # One feature-extractor pass over both domains: half the launches of two passes,
        # and BatchNorm (where the backbone has it) sees both domains, as in the paper.
        features = net.feature_extractor(torch.cat([batch.source_x, batch.target_x]))
        # The label head on the source rows only: the target's class logits would go unused.
        label_loss = F.cross_entropy(net.label_predictor(features[:num_source]), batch.source_y)
        domain_logits = net.domain_classifier(net.gradient_reversal(features, scalars["lambda"])).squeeze(1)
        labels = domain_labels(num_source, len(batch.target_x), domain_logits.device)
        domain_loss = F.binary_cross_entropy_with_logits(domain_logits, labels)
        losses = {"label": label_loss, "domain": domain_loss}
        return StepOutput(losses, {"train/domain_acc": domain_accuracy(domain_logits, labels)}, features)
