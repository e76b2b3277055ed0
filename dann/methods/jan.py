"""JAN: Long et al., "Deep Transfer Learning with Joint Adaptation Networks" (ICML 2017).

DAN's discrepancy over the joint distribution of the features and the predictions: the kernel is
the product of one kernel per layer. Kernels as in TLlib's JAN example (github.com/thuml/Transfer-Learning-Library,
`examples/domain_adaptation/image_classification/jan.py`): DAN's Gaussian family on the features, and one
Gaussian of fixed width σ = 0.92 on the softmax predictions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import Tensor

from dann.config.spec import Setting
from dann.methods.base import Batch, StepOutput
from dann.methods.dan import (
    domain_probe,
    gaussian_kernel,
    gaussian_kernels,
    mmd2,
    scale_gradient,
    source_and_target,
)
from dann.methods.dann import DANN
from dann.models import DANNNetwork
from dann.schedules import LambdaSchedule, ganin_lambda


def joint_kernel(features: Tensor, probs: Tensor, sigma: float) -> Tensor:
    """JAN's kernel over the rows [N]: the features' Gaussian family [N, D] times a Gaussian of width σ on
    the predictions [N, C], entry by entry: K_ij = k_f(f_i, f_j)·k_g(g_i, g_j) → [N, N]."""
    return gaussian_kernels(features) * gaussian_kernel(probs, sigma)


class JAN(DANN):
    """Label loss on source + the joint MMD (JMMD) of the features and the predictions:

        losses: label = CE(G_y(f_s), y_s),  domain = MMD²_u with K = k_f(f, f')·k_g(g, g')  (gradient × λ_p),
                probe (domain_acc)
        with f = G_f([x_s; x_t]) [2n, D], g = softmax(G_y(f)) [2n, C]

    The objective is L_y + λ_p·JMMD²; λ_p as in DANN. The same unbiased quadratic estimate as DAN
    (`dann.methods.dan.mmd2`, and why there). g is not detached, as in TLlib: the JMMD trains the label
    predictor too. The paper's adversarial variant (JAN-A) is not implemented.
    """

    def __init__(
        self,
        network: DANNNetwork,
        lambda_schedule: LambdaSchedule = ganin_lambda,
        final_lambda: float = 1.0,
        prediction_sigma: Annotated[
            float, Setting("σ of the Gaussian kernel on the softmax predictions (TLlib's 0.92)", gt=0)
        ] = 0.92,
    ):
        super().__init__(network, lambda_schedule, final_lambda)
        self.prediction_sigma = float(prediction_sigma)

    def forward(self, batch: Batch, scalars: Mapping[str, float | Tensor], phase: str = "step") -> StepOutput:
        net, num_source = self.network, len(batch.source_x)
        features = net.feature_extractor(torch.cat([batch.source_x, batch.target_x]))
        class_logits = net.label_predictor(features)  # both domains: the target's predictions enter the kernel
        label_loss = F.cross_entropy(class_logits[:num_source], batch.source_y)
        probs = class_logits.softmax(dim=1)
        joint = joint_kernel(
            source_and_target(features, num_source), source_and_target(probs, num_source), self.prediction_sigma
        )
        discrepancy = mmd2(joint)
        probe_loss, probe_acc = domain_probe(net, features, num_source)
        losses = {"label": label_loss, "domain": scale_gradient(discrepancy, scalars["lambda"]), "probe": probe_loss}
        return StepOutput(losses, {"train/domain_acc": probe_acc}, features)
