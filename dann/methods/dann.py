"""DANN: Ganin et al., "Domain-Adversarial Training of Neural Networks" (JMLR 2016)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dann.methods.base import Batch, Method, domain_labels, step_metrics
from dann.models import DANNNetwork
from dann.schedules import LambdaSchedule, LRSchedule, constant_lr_factor, ganin_lambda


class DANN(Method):
    """Label loss on source + domain loss on source and target, through the gradient reversal layer.

    The domain classifier minimises its binary cross-entropy at full strength; the
    reversal layer hands the feature extractor that gradient times -λ_p, so the
    features minimise L_y - λ_p·L_d (the paper's saddle point, Eq. 10).
    λ_p = `lambda_schedule(progress, final_lambda)`: by default the paper's warm-up from 0
    to `final_lambda` (`dann.schedules.ganin_lambda`, γ = 10).
    """

    def __init__(
        self,
        network: DANNNetwork,
        optimizer: torch.optim.Optimizer,
        total_steps: int,
        lr_schedule: LRSchedule = constant_lr_factor,
        lambda_schedule: LambdaSchedule = ganin_lambda,
        final_lambda: float = 1.0,
    ):
        super().__init__(network, optimizer, total_steps, lr_schedule)
        self.lambda_schedule = lambda_schedule
        self.final_lambda = float(final_lambda)

    def update(self, batch: Batch, progress: float) -> dict[str, Tensor | float]:
        grl_lambda = self.lambda_schedule(progress, self.final_lambda)
        lr = self.current_lr()
        num_source = len(batch.source_x)
        # One feature-extractor pass over both domains: half the launches of two passes,
        # and BatchNorm (where the backbone has it) sees both domains, as in the paper.
        with self.feature_gradients() as gradients:  # on logged steps: the two gradients at the features
            class_logits, domain_logits = self.network(torch.cat([batch.source_x, batch.target_x]), grl_lambda)
            label_loss = F.cross_entropy(class_logits[:num_source], batch.source_y)
            labels = domain_labels(num_source, len(batch.target_x), domain_logits.device)
            domain_loss = F.binary_cross_entropy_with_logits(domain_logits, labels)
            self._step(label_loss + domain_loss)
        metrics = step_metrics(label_loss, domain_loss, domain_logits, labels, grl_lambda, lr)
        return metrics | gradients.metrics(label_loss.device)
