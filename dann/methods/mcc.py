"""MCC: Jin et al., "Minimum Class Confusion for Versatile Domain Adaptation" (ECCV 2020).

No adversary: the classifier's confusion between classes on the target batch is minimised directly.
Temperature, weighting and normalisation follow the Transfer-Learning-Library's `MinimumClassConfusionLoss`
(github.com/thuml/Transfer-Learning-Library, `tllib.self_training.mcc`), the authors' group's code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import Tensor

from dann.config.spec import Setting
from dann.methods.base import Batch, StepOutput
from dann.methods.dan import domain_probe, global_batch, scale_gradient
from dann.methods.dann import DANN
from dann.models import DANNNetwork
from dann.schedules import LambdaSchedule, ganin_lambda


def class_confusion(logits: Tensor, temperature: float) -> Tensor:
    """The MCC loss of target logits [B, C] (the paper's Eqs. 1–6):

        Ŷ = softmax(Z / T) [B, C],  H_i = −Σ_c Ŷ_ic log Ŷ_ic,  W_ii = B·(1 + e^{−H_i}) / Σ_i' (1 + e^{−H_i'})
        C = Ŷᵀ W Ŷ [C, C],  C̃_jj' = C_jj' / Σ_j'' C_jj'',  L = (Σ_j Σ_{j'≠j} C̃_jj') / C

    The weights are constants of the step (detached, as in the reference code): confident examples weigh more.
    """
    num_examples, num_classes = logits.shape
    probs = (logits / temperature).softmax(dim=1)
    entropy = -(probs * probs.clamp_min(1e-12).log()).sum(dim=1).detach()
    weights = 1.0 + torch.exp(-entropy)
    weights = num_examples * weights / weights.sum()
    confusion = (probs * weights.unsqueeze(1)).T @ probs
    confusion = confusion / confusion.sum(dim=1, keepdim=True)
    return (confusion.sum() - confusion.trace()) / num_classes


class MCC(DANN):
    """Label loss on source + λ_p·MCC on the target predictions:

        losses: label = CE(G_y(f_s), y_s),  domain = `class_confusion`(G_y(f_t), T)  (gradient × λ_p),  probe
        with f = G_f([x_s; x_t]), G_y(f_t) the target logits [n, C]

    The trade-off is the top-level `lambda` through DANN's schedule, not a setting of its own: the paper's
    fixed weight 1.0 is `lambda=1` (the default) with `method/lambda_schedule=constant`. The config's default
    schedule is DANN's warm-up, as for DAN and CORAL, so that the presets, which tune the warm-up's γ
    (`method.lambda_schedule.gamma`), compose with `method=mcc` as with every other method.
    `train/domain_loss` is the MCC term itself; the domain classifier is trained as a probe on the detached
    features for `train/domain_acc` (`dann.methods.dan.domain_probe`). The loss is computed on the global target batch
    (`global_batch`): the row normalisation makes it a statistic of the whole batch, not a mean over examples.
    """

    def __init__(
        self,
        network: DANNNetwork,
        lambda_schedule: LambdaSchedule = ganin_lambda,
        final_lambda: float = 1.0,
        temperature: Annotated[float, Setting("T, the softmax temperature of the target predictions", gt=0)] = 2.5,
    ):
        super().__init__(network, lambda_schedule, final_lambda)
        self.temperature = float(temperature)

    def forward(self, batch: Batch, scalars: Mapping[str, float | Tensor], phase: str = "step") -> StepOutput:
        net, num_source = self.network, len(batch.source_x)
        features = net.feature_extractor(torch.cat([batch.source_x, batch.target_x]))
        class_logits = net.label_predictor(features)  # both domains: the target's are MCC's input
        label_loss = F.cross_entropy(class_logits[:num_source], batch.source_y)
        confusion = class_confusion(global_batch(class_logits[num_source:]), self.temperature)
        probe_loss, probe_acc = domain_probe(net, features, num_source)
        losses = {"label": label_loss, "domain": scale_gradient(confusion, scalars["lambda"]), "probe": probe_loss}
        return StepOutput(losses, {"train/domain_acc": probe_acc}, features)
