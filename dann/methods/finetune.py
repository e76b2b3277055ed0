"""Fine-tuning baselines for pretrained backbones: `finetune` and `two_stage`.

Both reuse the supervised update of `source_only`/`target_only` (label loss, and the
domain classifier trained as a probe on detached features), so they log the same
metrics as every other method and never adapt through a domain loss.
"""

from __future__ import annotations

from numbers import Number
from typing import ClassVar

from omegaconf import DictConfig
from torch import Tensor

from dann.errors import ConfigError
from dann.methods.base import Batch
from dann.methods.supervised import SourceOnly, SupervisedOnly
from dann.models import DANNNetwork

FREEZE_IN_STAGE2 = ("feature_extractor", "none")


class FineTune(SourceOnly):
    """Fine-tune a pretrained backbone, with new layers for the class count, on the source labels.

    The update is source_only's: the same step, nothing duplicated. It is a method of its
    own because the baseline it names is a different experiment: "ImageNet-pretrained,
    fine-tuned on the source" is the lower bound that adaptation results on Office-31,
    Office-Home and VisDA are compared with, whereas `source_only` also covers networks
    trained from scratch (the digit nets). So `finetune` refuses to start without
    pretrained weights, and its results are recorded under their own name.
    `model.freeze_backbone` and `model.unfreeze_last` choose how much of the backbone trains.
    """

    def __init__(self, network: DANNNetwork, cfg: DictConfig):
        if not cfg.model.feature_extractor.get("weights"):
            raise ConfigError(
                "model.feature_extractor.weights: method=finetune starts from pretrained weights, but none are "
                "set; give a torchvision weights name (e.g. model=resnet model.feature_extractor.weights="
                "IMAGENET1K_V1) or a .pth file, or use method=source_only to train from scratch"
            )
        super().__init__(network, cfg)


class TwoStage(SupervisedOnly):
    """Train on the source labels, then fine-tune on the labeled target examples.

    Stage 1 (the first `method.stage1_fraction` of the steps) is source_only's update;
    stage 2 is target_only's, on the target batches the training loop supplies, which
    come from the labeled fraction of the target (`dataset.target_labeled_fraction`).
    With `method.freeze_in_stage2=feature_extractor`, stage 2 freezes the shared layers
    (backbone and bottleneck, BatchNorm statistics included) and trains only the label
    predictor: a linear probe on the stage-1 features. One learning-rate schedule spans
    both stages.

    The stage follows from `progress` alone, so a run resumed from a checkpoint in
    stage 2 freezes again on its first step.
    """

    uses_target_labels: ClassVar[bool] = True

    def __init__(self, network: DANNNetwork, cfg: DictConfig):
        super().__init__(network, cfg)
        fraction = cfg.method.stage1_fraction
        if isinstance(fraction, bool) or not isinstance(fraction, Number) or not 0 <= fraction <= 1:
            raise ConfigError(
                f"method.stage1_fraction: expected a fraction of trainer.steps in [0, 1] "
                f"(the source stage), got {fraction!r}; e.g. 0.5"
            )
        if cfg.method.freeze_in_stage2 not in FREEZE_IN_STAGE2:
            raise ConfigError(
                f"method.freeze_in_stage2: expected one of {', '.join(FREEZE_IN_STAGE2)}, "
                f"got {cfg.method.freeze_in_stage2!r}"
            )
        self.stage1_fraction = float(fraction)
        self.freeze_in_stage2 = cfg.method.freeze_in_stage2

    def update(self, batch: Batch, progress: float) -> dict[str, Tensor | float]:
        in_stage2 = progress >= self.stage1_fraction
        if in_stage2 and self.freeze_in_stage2 == "feature_extractor":
            self.network.feature_extractor.freeze()  # idempotent; frozen parameters get no gradient, so no step
        # SupervisedOnly reads which domain's labels to train on from here; this instance
        # attribute shadows the class-level one, stage by stage.
        self.labeled_domain = "target" if in_stage2 else "source"
        return super().update(batch, progress)
