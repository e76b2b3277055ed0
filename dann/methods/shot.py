"""SHOT: Liang et al., "Do We Really Need to Access the Source Data? Source Hypothesis Transfer for Unsupervised
Domain Adaptation" (ICML 2020).

Source-free: a source model is trained first; adaptation then reads only the target. The classifier (the
source hypothesis) is frozen and the feature extractor is trained so that its target outputs are confident
and diverse (information maximisation), and agree with pseudo-labels from a clustering of the target
features. The clustering and losses follow the authors' code (github.com/tim-learn/SHOT, `object/image_target.py`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dann.config.spec import Setting
from dann.errors import ConfigError
from dann.methods.base import Batch, StepOutput
from dann.methods.dan import global_batch
from dann.methods.supervised import SupervisedOnly
from dann.models import DANNNetwork


def information_maximisation(logits: Tensor) -> Tensor:
    """L_ent + L_div of target logits [B, C] (the paper's Eq. 2), p = softmax(logits):

    L_ent = −1/B Σ_i Σ_k p_ik log p_ik      (each prediction confident)
    L_div = Σ_k p̄_k log p̄_k,  p̄ = 1/B Σ_i p_i   (the batch's predictions spread over the classes)
    """
    probs = logits.softmax(dim=1)
    entropy = -(probs * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
    mean = probs.mean(dim=0)
    return entropy + (mean * mean.clamp_min(1e-12).log()).sum()


def cluster_centroids(features: Tensor, probs: Tensor) -> tuple[Tensor, Tensor]:
    """SHOT's weighted k-means, one refinement, over a whole split: (centroids [C, D+1], present [C] bool).

    x̂ = (f, 1)/‖(f, 1)‖ [N, D+1];  c⁰_k = Σ_i p_ik x̂_i / Σ_i p_ik;  ŷ_i = argmin_k cos-dist(x̂_i, c⁰_k);
    c¹_k = mean of the x̂_i with ŷ_i = k;  `present`: the classes some example is assigned to (only those label).
    """
    x = F.normalize(torch.cat([features.float(), features.new_ones(len(features), 1)], dim=1), dim=1)
    centroids = probs.float().T @ x / (probs.float().sum(dim=0).unsqueeze(1) + 1e-8)
    assignment = nearest(x, centroids, torch.ones(len(centroids), dtype=torch.bool, device=x.device))
    one_hot = F.one_hot(assignment, len(centroids)).float()
    counts = one_hot.sum(dim=0)
    return one_hot.T @ x / (counts.unsqueeze(1) + 1e-8), counts > 0


def nearest(x: Tensor, centroids: Tensor, present: Tensor) -> Tensor:
    """The index of the centroid [C, D+1] nearest each row of x̂ [B, D+1] in cosine distance, among `present`."""
    similarity = F.normalize(x, dim=1) @ F.normalize(centroids, dim=1).T
    return similarity.masked_fill(~present, -math.inf).argmax(dim=1)


class SHOT(SupervisedOnly):
    """G = `network.feature_extractor`, the hypothesis h = `network.label_predictor`.

    Stage 1, progress < `stage1_fraction` (phase `source`): source_only's step with label smoothing ε
    (`label_smoothing`), the domain classifier a probe. Stage 2 (phase `target`) reads no source batch
    (`reads_source`: the loop draws none) and freezes h:

        losses: label = β · CE(h(G(x_t)), ŷ),  domain = L_ent + L_div (`information_maximisation`)

    β = `pseudo_label_weight`; ŷ: each target example's nearest centroid (`nearest`) among the centroids
    of the whole target training split (`cluster_centroids`), recomputed `relabels` times evenly through
    stage 2, the first at its start (`target_pass_due`, `observe_target`: a pass in eval mode, as the code's
    once-per-epoch pass). The code fixes each example's ŷ at that pass; here a batch is labelled by its
    current features (the loop's batches carry no example index), against the pass's centroids.

    Logged in stage 2: `train/pseudo_label_agreement`, the fraction of the batch where h's prediction is ŷ;
    no `train/domain_acc`, since a domain classifier would need source data. `train/lambda` is 0.
    The summary's `source_free` and `source_steps` record that the source stream stopped after stage 1.
    """

    labeled_domain = "source"

    def __init__(
        self,
        network: DANNNetwork,
        stage1_fraction: Annotated[
            float, Setting("of trainer.steps, the source model's training", ge=0, lt=1, noun="a fraction")
        ] = 0.5,
        label_smoothing: Annotated[
            float, Setting("ε of the source model's smoothed labels (the paper's 0.1)", ge=0, lt=1)
        ] = 0.1,
        pseudo_label_weight: Annotated[
            float, Setting("β, the weight of the pseudo-label loss (the paper's 0.3)", ge=0)
        ] = 0.3,
        relabels: Annotated[
            int, Setting("the clusterings of the target split in stage 2 (the code's 15, once an epoch)", ge=1)
        ] = 15,
    ):
        super().__init__(network)
        self.stage1_fraction, self.label_smoothing = float(stage1_fraction), float(label_smoothing)
        self.pseudo_label_weight, self.relabels = float(pseudo_label_weight), int(relabels)
        width, classes = network.feature_extractor.out_features, _num_classes(network.label_predictor)
        self.register_buffer("centroids", torch.zeros(classes, width + 1))
        self.register_buffer("present", torch.zeros(classes, dtype=torch.bool))

    def reads_source(self, progress: float) -> bool:
        return progress < self.stage1_fraction

    def target_pass_due(self, progress: float, next_progress: float) -> bool:
        """At the first of stage 2's iterations, and at each of the `relabels` evenly spaced points after it."""
        if next_progress <= self.stage1_fraction:
            return False
        width = (1 - self.stage1_fraction) / self.relabels
        due = max(0, math.ceil((progress - self.stage1_fraction) / width - 1e-9))  # the first point at or after p
        return self.stage1_fraction + due * width < next_progress - 1e-12

    @torch.no_grad()
    def observe_target(self, features: Tensor, logits: Tensor) -> None:
        centroids, present = cluster_centroids(features, logits.softmax(dim=1))
        self.centroids.copy_(centroids)
        self.present.copy_(present)

    def phases(self, progress: float) -> tuple[str, ...]:
        if progress < self.stage1_fraction:
            return ("source",)
        self.network.label_predictor.requires_grad_(False)  # the source hypothesis stays as stage 1 left it
        self.network.domain_classifier.requires_grad_(False)  # the probe: it would need source features
        return ("target",)

    def forward(self, batch: Batch, scalars: Mapping[str, float | Tensor], phase: str = "step") -> StepOutput:
        if phase == "source":
            return self.supervised(batch, "source", self.label_smoothing)
        features = self.network.feature_extractor(batch.target_x)
        logits = self.network.label_predictor(features)
        with torch.no_grad():
            x = torch.cat([features.float(), features.new_ones(len(features), 1)], dim=1)
            pseudo = nearest(x, self.centroids, self.present)
        label = self.pseudo_label_weight * F.cross_entropy(logits, pseudo)
        # L_div is a statistic of the whole batch: computed on every process's rows (`global_batch`)
        domain = information_maximisation(global_batch(logits))
        agreement = (logits.detach().argmax(dim=1) == pseudo).float().mean()
        return StepOutput({"label": label, "domain": domain}, {"train/pseudo_label_agreement": agreement}, features)


def _num_classes(label_predictor: nn.Module) -> int:
    """C, the out_features of the label predictor's last linear layer (the pseudo-label centroids' count)."""
    linear = [module for module in label_predictor.modules() if isinstance(module, nn.Linear)]
    if not linear:
        raise ConfigError("method=shot: model.label_predictor has no nn.Linear layer to read the class count from")
    return linear[-1].out_features
