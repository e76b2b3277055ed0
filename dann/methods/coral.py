"""Deep CORAL: Sun & Saenko, "Deep CORAL: Correlation Alignment for Deep Domain Adaptation" (ECCV-W 2016).

Aligns the second-order statistics of the source and target features: the distance between their covariances.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from dann.methods.base import Batch, StepOutput
from dann.methods.dan import domain_probe, global_batch, scale_gradient
from dann.methods.dann import DANN


def covariance(x: Tensor) -> Tensor:
    """The unbiased covariance of the rows of x [n, d] → [d, d]: (x − x̄)ᵀ(x − x̄) / (n − 1), the paper's Eq. 2."""
    centred = x - x.mean(dim=0, keepdim=True)
    return centred.T @ centred / (len(x) - 1)


def coral_loss(source: Tensor, target: Tensor) -> Tensor:
    """L_CORAL = ‖C_s − C_t‖²_F / (4d²) for features [n_s, d], [n_t, d] (the paper's Eq. 1)."""
    d = source.shape[1]
    return (covariance(source) - covariance(target)).pow(2).sum() / (4 * d * d)


class DeepCORAL(DANN):
    """Label loss on source + the CORAL loss between the source and target features:

        losses: label = CE(G_y(f_s), y_s),  domain = ‖C_s − C_t‖²_F / (4d²)  (gradient × λ_p),  probe (domain_acc)
        with f = G_f([x_s; x_t]), f_s [n, d], f_t [n, d], C the covariances (`covariance`)

    The objective is L_y + λ_p·L_CORAL; λ_p as in DANN (the paper picks a constant λ that brings the two
    losses to about the same size by the end of training: `method/lambda_schedule=constant`).
    The paper aligns AlexNet's fc8 (the class logits, d = 31); here the features G_f(x), as the brief of
    this repository's methods asks (the bottleneck when there is one), so that all discrepancies act on one layer.
    """

    def forward(self, batch: Batch, scalars: Mapping[str, float | Tensor], phase: str = "step") -> StepOutput:
        net, num_source = self.network, len(batch.source_x)
        features = net.feature_extractor(torch.cat([batch.source_x, batch.target_x]))
        label_loss = F.cross_entropy(net.label_predictor(features[:num_source]), batch.source_y)
        discrepancy = coral_loss(global_batch(features[:num_source]), global_batch(features[num_source:]))
        probe_loss, probe_acc = domain_probe(net, features, num_source)
        losses = {"label": label_loss, "domain": scale_gradient(discrepancy, scalars["lambda"]), "probe": probe_loss}
        return StepOutput(losses, {"train/domain_acc": probe_acc}, features)
