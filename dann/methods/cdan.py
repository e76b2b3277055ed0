"""CDAN and CDAN+E: Long et al., "Conditional Adversarial Domain Adaptation" (NeurIPS 2018).

DANN's reversal layer and three networks, but the domain classifier sees the features
conditioned on the class predictions: the multilinear map f ⊗ g, or, when d_f·C would be too
wide, its randomized version. CDAN+E also weights each example by the certainty of its prediction.
Follows the authors' code (github.com/thuml/CDAN, `network.RandomLayer`, `loss.CDAN`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from dann.config.spec import Setting
from dann.methods.base import Batch, StepOutput, domain_accuracy, domain_labels
from dann.methods.dann import DANN
from dann.models import DANNNetwork
from dann.schedules import LambdaSchedule, ganin_lambda

RANDOMIZED_DIM = 1024  # the paper's d for the randomized map
RANDOMIZED_THRESHOLD = 4096  # the paper's: randomized when d_f × C exceeds it


def multilinear_map(features: Tensor, probs: Tensor) -> Tensor:
    """f ⊗ g, flattened: [B, d_f], [B, C] → [B, C·d_f], entry c·d_f + j = g_c · f_j."""
    return torch.bmm(probs.unsqueeze(2), features.unsqueeze(1)).flatten(1)


def randomized_multilinear_map(features: Tensor, probs: Tensor, projection_f: Tensor, projection_g: Tensor) -> Tensor:
    """(f R_f) ⊙ (g R_g) / √d: [B, d_f], [B, C], R_f [d_f, d], R_g [C, d] → [B, d].

    With R_f, R_g of independent standard normal entries, the inner product of two maps is
    ⟨f, f'⟩·⟨g, g'⟩ in expectation: the kernel of the full map, at width d instead of d_f·C.
    """
    return (features @ projection_f) * (probs @ projection_g) / projection_f.shape[1] ** 0.5


def entropy_weights(probs: Tensor, num_source: int) -> Tensor:
    """CDAN+E's per-example weights [B] from the predictions [B, C] (source rows first).

    w = 1 + exp(−H(g)), H the entropy: confident predictions count more. Normalised per
    domain (each domain's weights sum to 1), as the authors' code does, so that neither domain's
    batch outweighs the other. A tensor expression: no host sync.
    """
    entropy = -(probs * probs.clamp_min(1e-12).log()).sum(dim=1)
    weights = 1.0 + torch.exp(-entropy)
    source, target = weights[:num_source], weights[num_source:]
    return torch.cat([source / source.sum(), target / target.sum()])


class CDAN(DANN):
    """Label loss on source + a conditional domain loss through the gradient reversal layer.

        losses: label = CE(G_y(f_s), y_s),  domain = BCE(D(T(R_λ(f), g)), d)   with g = softmax(G_y(f)) detached

    The domain classifier D sees T(f, g): the multilinear map f ⊗ g of the features f and the
    softmax predictions g, or the randomized map when `randomized` is true, or is None (auto)
    and d_f × C > `randomized_threshold` (the paper's 4096), at width `randomized_dim`. The
    projections are drawn once from torch's RNG (the run seeds it) and kept as buffers, so a
    checkpoint restores them; they never train. g is detached, as in the authors' code: the
    reversal layer acts on f only, and since T is linear in f, GRL(f) ⊗ g = GRL(f ⊗ g).

    `entropy_conditioning` (CDAN+E): each example's domain loss weighted by `entropy_weights`,
    loss = Σ w·BCE / Σ w. The weights are constants of the step (the authors' code also sends a
    reversed gradient through them into the classifier; here they only weight the examples).
    λ, its schedule and the metrics are DANN's.
    """

    def __init__(
        self,
        network: DANNNetwork,
        lambda_schedule: LambdaSchedule = ganin_lambda,
        final_lambda: float = 1.0,
        entropy_conditioning: Annotated[
            bool, Setting("CDAN+E: each example's domain loss weighted by 1 + exp(-H(g))")
        ] = False,
        randomized: Annotated[
            bool | None, Setting("the randomized multilinear map; null: when d_f·C > randomized_threshold")
        ] = None,
        randomized_dim: Annotated[
            int, Setting("width of the randomized map (the paper's 1024)", ge=1)
        ] = RANDOMIZED_DIM,
        randomized_threshold: Annotated[
            int, Setting("d_f·C above which null picks the randomized map (the paper's 4096)", ge=1)
        ] = RANDOMIZED_THRESHOLD,
    ):
        super().__init__(network, lambda_schedule, final_lambda)
        self.entropy_conditioning = entropy_conditioning
        feature_dim, num_classes = network.feature_extractor.out_features, _num_classes(network)
        self.randomized = _use_randomized(feature_dim * num_classes, randomized, randomized_threshold)
        device, dim = next(network.parameters()).device, randomized_dim
        self.register_buffer("projection_f", torch.randn(feature_dim, dim, device=device) if self.randomized else None)
        self.register_buffer("projection_g", torch.randn(num_classes, dim, device=device) if self.randomized else None)

    @classmethod
    def domain_classifier_shape(
        cls, feature_dim: int, num_classes: int, settings: Mapping[str, Any]
    ) -> tuple[int, int]:
        product = feature_dim * num_classes
        randomized = _use_randomized(
            product, settings.get("randomized"), settings.get("randomized_threshold", RANDOMIZED_THRESHOLD)
        )
        return (settings.get("randomized_dim", RANDOMIZED_DIM) if randomized else product), 1

    def condition(self, features: Tensor, probs: Tensor) -> Tensor:
        """T(f, g), the domain classifier's input."""
        if self.randomized:
            return randomized_multilinear_map(features, probs, self.projection_f, self.projection_g)
        return multilinear_map(features, probs)

    def forward(self, batch: Batch, scalars: Mapping[str, float | Tensor], phase: str = "step") -> StepOutput:
        net, num_source = self.network, len(batch.source_x)
        features = net.feature_extractor(torch.cat([batch.source_x, batch.target_x]))
        class_logits = net.label_predictor(features)  # on both domains: the target's condition D's input
        label_loss = F.cross_entropy(class_logits[:num_source], batch.source_y)
        probs = class_logits.detach().softmax(dim=1)
        conditioned = self.condition(net.gradient_reversal(features, scalars["lambda"]), probs)
        domain_logits = net.domain_classifier(conditioned).squeeze(1)
        labels = domain_labels(num_source, len(batch.target_x), domain_logits.device)
        losses = F.binary_cross_entropy_with_logits(domain_logits, labels, reduction="none")
        if self.entropy_conditioning:
            weights = entropy_weights(probs, num_source)
            domain_loss = (weights * losses).sum() / weights.sum()
        else:
            domain_loss = losses.mean()
        metrics = {"train/domain_acc": domain_accuracy(domain_logits, labels)}
        return StepOutput({"label": label_loss, "domain": domain_loss}, metrics, features)


def _use_randomized(product_dim: int, randomized: bool | None, threshold: int) -> bool:
    """The randomized map when asked, or, by default (None), when d_f × C exceeds the threshold."""
    return product_dim > threshold if randomized is None else bool(randomized)


@torch.no_grad()
def _num_classes(network: DANNNetwork) -> int:
    """C, the label predictor's output width: one pass over a zero feature (eval mode, no gradient)."""
    head = network.label_predictor
    was_training = head.training
    head.eval()
    try:
        device = next(head.parameters()).device
        return head(torch.zeros(1, network.feature_extractor.out_features, device=device)).shape[1]
    finally:
        head.train(was_training)
