"""The three networks of DANN joined by the gradient reversal layer."""

from __future__ import annotations

from collections.abc import Sequence

from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import Tensor, nn

from dann.grl import GradientReversal
from dann.models.heads import mlp


class DANNNetwork(nn.Module):
    """Feature extractor G_f, label predictor G_y, and domain classifier G_d behind R_λ.

        x ─ G_f ─┬─ G_y ─→ class logits   [B, num_classes]
                 └─ R_λ ─ G_d ─→ domain logit [B]   (source = 0, target = 1)
    """

    def __init__(self, feature_extractor: nn.Module, label_predictor: nn.Module, domain_classifier: nn.Module):
        super().__init__()
        self.feature_extractor = feature_extractor
        self.label_predictor = label_predictor
        self.gradient_reversal = GradientReversal()
        self.domain_classifier = domain_classifier

    def forward(self, x: Tensor, grl_lambda: float) -> tuple[Tensor, Tensor]:
        """One pass of G_f over `x` (e.g. source and target concatenated) feeding both heads."""
        features = self.feature_extractor(x)
        class_logits = self.label_predictor(features)
        domain_logits = self.domain_classifier(self.gradient_reversal(features, grl_lambda)).squeeze(1)
        return class_logits, domain_logits

    def predict(self, x: Tensor) -> Tensor:
        """Class logits [B, num_classes]; the domain branch is not run."""
        return self.label_predictor(self.feature_extractor(x))


def build_network(model_cfg: DictConfig, input_shape: Sequence[int], num_classes: int) -> DANNNetwork:
    """Instantiate `model.feature_extractor`, add the optional bottleneck, and size both heads."""
    backbone = instantiate(model_cfg.feature_extractor, input_shape=tuple(input_shape))
    width = backbone.out_features
    feature_extractor: nn.Module = backbone
    if model_cfg.bottleneck_dim:
        # Linear → BN → ReLU, as in the ResNet recipes of the Transfer-Learning-Library and CDAN papers.
        bottleneck = nn.Sequential(
            nn.Linear(width, model_cfg.bottleneck_dim),
            nn.BatchNorm1d(model_cfg.bottleneck_dim),
            nn.ReLU(inplace=True),
        )
        feature_extractor = nn.Sequential(backbone, bottleneck)
        width = model_cfg.bottleneck_dim
    label_predictor = mlp(width, model_cfg.label_predictor.hidden, num_classes,
                          dropout=model_cfg.label_predictor.dropout,
                          batch_norm=model_cfg.label_predictor.batch_norm)
    domain_classifier = mlp(width, model_cfg.domain_classifier.hidden, 1,
                            dropout=model_cfg.domain_classifier.dropout,
                            batch_norm=model_cfg.domain_classifier.batch_norm)
    return DANNNetwork(feature_extractor, label_predictor, domain_classifier)
