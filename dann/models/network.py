"""The three networks of DANN joined by the gradient reversal layer."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from dann.errors import ConfigError
from dann.grl import GradientReversal

_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


class FeatureExtractor(nn.Module):
    """G_f: a backbone (pretrained or not), then an optional bottleneck (a new layer).

    [B, *input_shape] → backbone → [B, backbone.out_features] → bottleneck → [B, out_features].

    The backbone contract: any `nn.Module` that maps a batch of inputs [B, *input_shape] (the
    dataset's: float vectors [B, D], or normalised images [B, C, H, W]) to flat features
    [B, out_features], and has an `out_features` attribute (int) saying that width, which
    sizes the bottleneck and the heads. A backbone may also have `stages` (a list of modules,
    input to output) for `freeze_backbone(unfreeze_last=N)`, and `stage_names` for its messages.
    Wrap a model of your own with `out_features` set and it works everywhere (see the backbones in
    `dann.models.feature_extractors`). Parameters with `requires_grad=False` are frozen;
    see `train` for their BatchNorm layers.
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
            name = getattr(self.backbone, "arch", type(self.backbone).__name__)
            if stages is None:
                raise ConfigError(
                    f"model.unfreeze_last: {name} has no stages to unfreeze (AlexNet, VGG, ResNet, "
                    "DenseNet, EfficientNet, ConvNeXt and ViT backbones do); set model.unfreeze_last=0"
                )
            if not 0 <= unfreeze_last <= len(stages):
                names = getattr(self.backbone, "stage_names", None)
                which = f"; {name}'s: {', '.join(names)}" if names else ""
                raise ConfigError(
                    f"model.unfreeze_last: expected 0 to {len(stages)} (stages of the backbone "
                    f"left trainable, counted from the last{which}), got {unfreeze_last}"
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
