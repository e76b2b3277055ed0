"""The three networks of DANN joined by the gradient reversal layer."""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Number
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import Tensor, nn

from dann.errors import ConfigError, DannError
from dann.grl import GradientReversal
from dann.models.heads import mlp

_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


class FeatureExtractor(nn.Module):
    """G_f: a backbone (pretrained or not), then an optional bottleneck (a new layer).

    [B, *input_shape] → backbone → [B, backbone.out_features] → bottleneck → [B, out_features].
    Parameters with `requires_grad=False` are frozen; see `train` for their BatchNorm layers.
    """

    def __init__(self, backbone: nn.Module, bottleneck_dim: int | None = None):
        super().__init__()
        self.backbone = backbone
        self.bottleneck: nn.Module = nn.Identity()
        self.out_features = backbone.out_features
        if bottleneck_dim:
            # Linear → BN → ReLU, as in the ResNet recipes of the Transfer-Learning-Library and CDAN papers.
            self.bottleneck = nn.Sequential(
                nn.Linear(backbone.out_features, bottleneck_dim),
                nn.BatchNorm1d(bottleneck_dim),
                nn.ReLU(inplace=True),
            )
            self.out_features = bottleneck_dim

    def forward(self, x: Tensor) -> Tensor:
        return self.bottleneck(self.backbone(x))

    def freeze_backbone(self, unfreeze_last: int = 0) -> None:
        """Freeze the backbone except its last `unfreeze_last` stages (ResNet: layer4, then layer3, …)."""
        self.backbone.requires_grad_(False)
        if unfreeze_last:
            stages = getattr(self.backbone, "stages", None)
            if stages is None:
                raise ConfigError(
                    f"model.unfreeze_last: {type(self.backbone).__name__} has no stages to "
                    "unfreeze (only ResNet backbones do); set model.unfreeze_last=0"
                )
            if not 0 <= unfreeze_last <= len(stages):
                raise ConfigError(
                    f"model.unfreeze_last: expected 0 to {len(stages)} (stages of the backbone "
                    f"left trainable, counted from the last), got {unfreeze_last}"
                )
            for stage in stages[len(stages) - unfreeze_last :]:
                stage.requires_grad_(True)
        self.train(self.training)  # puts the newly frozen BatchNorm layers in eval mode

    def freeze(self) -> None:
        """Freeze the whole feature extractor (backbone and bottleneck)."""
        self.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> FeatureExtractor:
        """As `nn.Module.train`, except that frozen BatchNorm layers always stay in eval mode.

        In train mode a BatchNorm layer normalises with each batch's statistics and
        overwrites its running averages with them: a layer with frozen weights would
        still change what it computes, drifting toward whatever batches it sees (small
        ones, or the other domain's), under weights that were trained on the running
        statistics. Frozen must mean frozen, so its statistics are frozen too.
        """
        super().train(mode)
        for module in self.modules():
            if isinstance(module, _BATCH_NORMS) and module.weight is not None and not module.weight.requires_grad:
                module.eval()
        return self


class DANNNetwork(nn.Module):
    """Feature extractor G_f, label predictor G_y, and domain classifier G_d behind R_λ.

        x ─ G_f ─┬─ G_y ─→ class logits   [B, num_classes]
                 └─ R_λ ─ G_d ─→ domain logit [B]   (source = 0, target = 1)

    `backbone_lr_mult` scales the learning rate of the backbone (the part of G_f that may
    be pretrained) relative to the new layers: the bottleneck and both heads.
    """

    def __init__(
        self,
        feature_extractor: FeatureExtractor,
        label_predictor: nn.Module,
        domain_classifier: nn.Module,
        backbone_lr_mult: float = 1.0,
    ):
        super().__init__()
        self.feature_extractor = feature_extractor
        self.label_predictor = label_predictor
        self.gradient_reversal = GradientReversal()
        self.domain_classifier = domain_classifier
        self.backbone_lr_mult = backbone_lr_mult

    def forward(self, x: Tensor, grl_lambda: float) -> tuple[Tensor, Tensor]:
        """One pass of G_f over `x` (e.g. source and target concatenated) feeding both heads."""
        features = self.feature_extractor(x)
        class_logits = self.label_predictor(features)
        domain_logits = self.domain_classifier(self.gradient_reversal(features, grl_lambda)).squeeze(1)
        return class_logits, domain_logits

    def predict(self, x: Tensor) -> Tensor:
        """Class logits [B, num_classes]; the domain branch is not run."""
        return self.label_predictor(self.feature_extractor(x))

    def parameter_groups(self) -> list[dict[str, Any]]:
        """The trainable parameters as optimiser groups, each with its learning-rate multiplier.

        `backbone` at `backbone_lr_mult`, `new_layers` (bottleneck, label predictor, domain
        classifier) at 1. Parameters frozen when this is called are left out, and so are
        groups left empty by that.
        """
        new_layers = (self.feature_extractor.bottleneck, self.label_predictor, self.domain_classifier)
        groups = [
            {
                "name": "backbone",
                "lr_mult": self.backbone_lr_mult,
                "params": _trainable(self.feature_extractor.backbone),
            },
            {"name": "new_layers", "lr_mult": 1.0, "params": _trainable(*new_layers)},
        ]
        return [group for group in groups if group["params"]]


def _trainable(*modules: nn.Module) -> list[nn.Parameter]:
    return [p for module in modules for p in module.parameters() if p.requires_grad]


def _instantiate_backbone(backbone_cfg: DictConfig, input_shape: Sequence[int]) -> nn.Module:
    try:
        return instantiate(backbone_cfg, input_shape=tuple(input_shape))
    except InstantiationException as e:
        # Hydra wraps what the constructor raised; a user's error must reach dann.run as itself.
        if isinstance(e.__cause__, DannError):
            raise e.__cause__ from None
        raise


def build_network(model_cfg: DictConfig, input_shape: Sequence[int], num_classes: int) -> DANNNetwork:
    """Instantiate `model.feature_extractor`, add the optional bottleneck, size both heads, freeze as asked."""
    backbone_lr_mult = model_cfg.backbone_lr_mult
    if isinstance(backbone_lr_mult, bool) or not isinstance(backbone_lr_mult, Number) or backbone_lr_mult < 0:
        raise ConfigError(
            f"model.backbone_lr_mult: expected a number >= 0 (the backbone's learning rate as a "
            f"fraction of optim.optimizer.lr), got {backbone_lr_mult!r}; e.g. 0.1"
        )
    unfreeze_last = model_cfg.get("unfreeze_last", 0)  # only ResNet configs have it
    if unfreeze_last and not model_cfg.freeze_backbone:
        raise ConfigError(
            f"model.unfreeze_last={unfreeze_last} only applies to a frozen backbone; "
            "set model.freeze_backbone=true as well, or model.unfreeze_last=0"
        )

    backbone = _instantiate_backbone(model_cfg.feature_extractor, input_shape)
    feature_extractor = FeatureExtractor(backbone, model_cfg.bottleneck_dim)
    if model_cfg.freeze_backbone:
        feature_extractor.freeze_backbone(unfreeze_last)
    width = feature_extractor.out_features
    label_predictor = mlp(
        width,
        model_cfg.label_predictor.hidden,
        num_classes,
        dropout=model_cfg.label_predictor.dropout,
        batch_norm=model_cfg.label_predictor.batch_norm,
    )
    domain_classifier = mlp(
        width,
        model_cfg.domain_classifier.hidden,
        1,
        dropout=model_cfg.domain_classifier.dropout,
        batch_norm=model_cfg.domain_classifier.batch_norm,
    )
    return DANNNetwork(feature_extractor, label_predictor, domain_classifier, float(backbone_lr_mult))
