"""Fine-tuning baselines for pretrained backbones: `finetune` and `two_stage`.

Both reuse the supervised update of `source_only`/`target_only` (label loss, and the
domain classifier trained as a probe on detached features), so they log the same
metrics as every other method and never adapt through a domain loss.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, ClassVar, Literal

from torch import Tensor

from dann.config.spec import Setting
from dann.methods.base import Batch, StepOutput
from dann.methods.supervised import SourceOnly, SupervisedOnly
from dann.models import DANNNetwork

FreezeInStage2 = Literal["feature_extractor", "none"]


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

    # Checked before the run starts (dann.config.validate): without pretrained weights this is source_only.
    needs_pretrained_backbone: ClassVar[bool] = True


class TwoStage(SupervisedOnly):
    """Train on the source labels, then fine-tune on the labeled target examples.

    Stage 1 (the first `method.stage1_fraction` of the steps) is source_only's update;
    stage 2 is target_only's, on the target batches the training loop supplies, which
    come from the labeled fraction of the target (`dataset.target_labeled_fraction`).
    With `method.freeze_in_stage2=feature_extractor`, stage 2 freezes the shared layers
    (backbone and bottleneck, BatchNorm statistics included) and trains only the label
    predictor: a linear probe on the stage-1 features. One learning-rate schedule spans
    both stages.

    The stage follows from `progress` alone (`phases`, the engine's multi-step contract: one step
    per iteration, named after the domain it trains on), so a run resumed from a checkpoint in
    stage 2 freezes again on its first step.
    """

    uses_target_labels: ClassVar[bool] = True

    def __init__(
        self,
        network: DANNNetwork,
        stage1_fraction: Annotated[
            float, Setting("of trainer.steps, the source stage", ge=0, le=1, noun="a fraction", hint="e.g. 0.5")
        ] = 0.5,
        freeze_in_stage2: Annotated[
            FreezeInStage2, Setting("feature_extractor: stage 2 trains only the label predictor; none: all")
        ] = "feature_extractor",
    ):
        super().__init__(network)
        self.stage1_fraction = float(stage1_fraction)
        self.freeze_in_stage2 = freeze_in_stage2

    def phases(self, progress: float) -> tuple[str, ...]:
        """One step a iteration: `source` in stage 1, `target` in stage 2, which first freezes the shared
        layers when asked (idempotent; the engine then stops expecting their gradients)."""
        if progress < self.stage1_fraction:
            return ("source",)
        if self.freeze_in_stage2 == "feature_extractor":
            self.network.feature_extractor.freeze()
        return ("target",)

    def forward(self, batch: Batch, scalars: Mapping[str, float | Tensor], phase: str = "step") -> StepOutput:
        return self.supervised(batch, labeled_domain=phase)
