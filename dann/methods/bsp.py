"""BSP: Chen et al., "Transferability vs. Discriminability: Batch Spectral Penalization for Adversarial
Domain Adaptation" (ICML 2019).

A regulariser on DANN and on CDAN: the adversary shrinks the features onto a few dominant directions
(high transferability, low discriminability), so BSP penalises the largest singular values of the source
and of the target feature matrices. Follows the authors' code (github.com/thuml/Batch-Spectral-Penalization).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import torch
from torch import Tensor

from dann.config.spec import Setting
from dann.methods.base import Batch, StepOutput
from dann.methods.cdan import CDAN
from dann.methods.dan import global_batch
from dann.methods.dann import DANN
from dann.models import DANNNetwork

BSP_WEIGHT = 1e-4  # the paper's β


def batch_spectral_penalty(source: Tensor, target: Tensor, k: int = 1) -> Tensor:
    """Σ_{i ≤ k} σ_i(F_s)² + σ_i(F_t)², the k largest singular values of the features F_s [n_s, D], F_t [n_t, D].

    `torch.linalg.svdvals` (differentiable; on a GPU, cuSOLVER's check makes it one device sync per call).
    """
    return sum(torch.linalg.svdvals(x)[:k].pow(2).sum() for x in (source, target))


def with_bsp(output: StepOutput, num_source: int, weight: float) -> StepOutput:
    """`output` with the loss `bsp` = weight · `batch_spectral_penalty` of its features added.

    On the global batch (`dann.methods.dan.global_batch`): the singular values are a statistic of the whole
    batch, so that two processes train the one-process recipe.
    """
    features = output.features
    penalty = batch_spectral_penalty(global_batch(features[:num_source]), global_batch(features[num_source:]))
    return StepOutput({**output.losses, "bsp": weight * penalty}, output.metrics, features)


BSPWeight = Annotated[float, Setting("β, the weight of the batch spectral penalty (the paper's 1e-4)", ge=0)]


class DANNBSP(DANN):
    """DANN + BSP:  losses: DANN's + bsp = β·(σ_1(F_s)² + σ_1(F_t)²), F_s, F_t the features [n, D] of each domain.

    β is a constant, as in the paper (the penalty is not scaled by λ_p); 0 leaves DANN's losses as they are.
    """

    def __init__(self, network: DANNNetwork, bsp_weight: BSPWeight = BSP_WEIGHT, **dann_settings: Any):
        super().__init__(network, **dann_settings)
        self.bsp_weight = float(bsp_weight)

    def forward(self, batch: Batch, scalars: Mapping[str, float | Tensor], phase: str = "step") -> StepOutput:
        return with_bsp(super().forward(batch, scalars, phase), len(batch.source_x), self.bsp_weight)


class CDANBSP(CDAN):
    """CDAN (or CDAN+E) + BSP: CDAN's losses + bsp = β·(σ_1(F_s)² + σ_1(F_t)²), as `DANNBSP`."""

    def __init__(self, network: DANNNetwork, bsp_weight: BSPWeight = BSP_WEIGHT, **cdan_settings: Any):
        super().__init__(network, **cdan_settings)
        self.bsp_weight = float(bsp_weight)

    def forward(self, batch: Batch, scalars: Mapping[str, float | Tensor], phase: str = "step") -> StepOutput:
        return with_bsp(super().forward(batch, scalars, phase), len(batch.source_x), self.bsp_weight)
