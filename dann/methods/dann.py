"""DANN: Ganin et al., "Domain-Adversarial Training of Neural Networks" (JMLR 2016)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import Tensor

from dann.errors import ConfigError
from dann.methods.base import Batch, Method, domain_labels, step_metrics
from dann.models import DANNNetwork
from dann.schedules import LAMBDA_SCHEDULES


class DANN(Method):
    """Label loss on source + domain loss on source and target, through the gradient reversal layer.

    The domain classifier minimises its binary cross-entropy at full strength; the
    reversal layer hands the feature extractor that gradient times -λ_p, so the
    features minimise L_y - λ_p·L_d (the paper's saddle point, Eq. 10).
    """

    def __init__(self, network: DANNNetwork, cfg: DictConfig):
        super().__init__(network, cfg)
        schedule = cfg.method.lambda_schedule
        if schedule not in LAMBDA_SCHEDULES:
            raise ConfigError(f"method.lambda_schedule: unknown '{schedule}'; choose one of {sorted(LAMBDA_SCHEDULES)}")
        self.lambda_schedule = LAMBDA_SCHEDULES[schedule]
        self.gamma = float(cfg.method.gamma)

    def update(self, batch: Batch, progress: float) -> dict[str, Tensor | float]:
        grl_lambda = self.lambda_schedule(progress, self.final_lambda, self.gamma)
        lr = self.current_lr()
        num_source = len(batch.source_x)
        # One feature-extractor pass over both domains: half the launches of two passes,
        # and BatchNorm (where the backbone has it) sees both domains, as in the paper.
        class_logits, domain_logits = self.network(torch.cat([batch.source_x, batch.target_x]), grl_lambda)
        label_loss = F.cross_entropy(class_logits[:num_source], batch.source_y)
        labels = domain_labels(num_source, len(batch.target_x), domain_logits.device)
        domain_loss = F.binary_cross_entropy_with_logits(domain_logits, labels)
        self._step(label_loss + domain_loss)
        return step_metrics(label_loss, domain_loss, domain_logits, labels, grl_lambda, lr)
