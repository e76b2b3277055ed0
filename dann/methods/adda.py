"""ADDA: Tzeng et al., "Adversarial Discriminative Domain Adaptation" (CVPR 2017).

Two stages: a source model is trained on the source labels; then a separate target encoder, initialised
from the source encoder, is trained against a domain discriminator with the GAN's inverted labels, while
the source encoder and the classifier stay fixed. The target images are then classified by the source
classifier on the target encoder's features.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from dann.config.spec import Setting
from dann.methods.base import Batch, StepOutput, domain_accuracy, domain_labels, with_frozen_parameters
from dann.methods.supervised import SupervisedOnly
from dann.models import DANNNetwork


class ADDA(SupervisedOnly):
    """M_s = `network.feature_extractor` and C = `network.label_predictor`; M_t = `target_encoder`, a copy of
    M_s; D = `network.domain_classifier` (one logit).

    Stage 1, progress < `stage1_fraction` (phase `source`): source_only's step, the domain classifier a probe.
    Stage 2, M_t ← M_s at its first iteration, then two steps per iteration, the paper's alternation:

        discriminator:  BCE(D(M_s(x_s)), 0) + BCE(D(M_t(x_t)), 1)   over the 2n rows; trains D
        target_encoder: domain = BCE(D(M_t(x_t)), 0)                 the inverted label; trains M_t, D held fixed

    M_s and C are fixed in stage 2: M_s runs in eval mode without gradients, C is not used.
    Prediction (every evaluation, on both domains) is C(M_t(x)) once stage 2 has begun, C(M_s(x)) before:
    the source accuracy of stage 2 is the target encoder's on source images.

    Metrics in stage 2: `train/discriminator_loss` and `train/domain_acc` (D's accuracy), `train/domain_loss`
    (the target encoder's inverted-label loss); no `train/label_loss`, as no label loss trains.
    D enters stage 2 as stage 1's probe left it, trained on M_s's features of both domains (M_t's, at the
    copy): a warm start, where the paper starts it afresh. `train/lambda` is 0: no reversal layer.
    """

    labeled_domain = "source"
    leaves_parameters_unused: ClassVar[bool] = True  # M_t in stage 1; M_s, C and, in turn, D in stage 2

    def __init__(
        self,
        network: DANNNetwork,
        stage1_fraction: Annotated[
            float, Setting("of trainer.steps, the source pre-training", ge=0, lt=1, noun="a fraction", hint="e.g. 0.5")
        ] = 0.5,
    ):
        super().__init__(network)
        self.stage1_fraction = float(stage1_fraction)
        self.target_encoder = copy.deepcopy(network.feature_extractor)
        # Whether M_t has been initialised from M_s: a buffer, so that checkpoints hold it, read into a plain bool
        # when one is loaded, so that no step reads it back from the device.
        self.register_buffer("copied", torch.zeros((), dtype=torch.bool))
        self.adapting = False
        self.register_load_state_dict_post_hook(lambda module, keys: setattr(module, "adapting", bool(module.copied)))

    def parameter_groups(self) -> list[dict[str, Any]]:
        """The network's groups, and M_t's: its backbone at the backbone's learning rate, its bottleneck at 1×."""
        encoder = self.target_encoder
        groups = [
            {"name": "target_backbone", "lr_mult": self.network.backbone_lr_mult, "params": encoder.backbone},
            {"name": "target_bottleneck", "lr_mult": 1.0, "params": encoder.bottleneck},
        ]
        groups = [group | {"params": [p for p in group["params"].parameters() if p.requires_grad]} for group in groups]
        return self.network.parameter_groups() + [group for group in groups if group["params"]]

    def phases(self, progress: float) -> tuple[str, ...]:
        if progress < self.stage1_fraction:
            return ("source",)
        if not self.adapting:  # the stage's first iteration (a resumed run has it from the checkpoint)
            with torch.no_grad():
                self.target_encoder.load_state_dict(self.network.feature_extractor.state_dict())
            self.copied.fill_(True)
            self.adapting = True
        return ("discriminator", "target_encoder")

    def forward(self, batch: Batch, scalars: Mapping[str, float | Tensor], phase: str = "step") -> StepOutput:
        if phase == "source":
            return self.supervised(batch, "source")
        discriminator = self.network.domain_classifier
        if phase == "discriminator":
            with torch.no_grad():
                features = torch.cat([self._frozen_features(batch.source_x), self.target_encoder(batch.target_x)])
            logits = discriminator(features).squeeze(1)
            labels = domain_labels(len(batch.source_x), len(batch.target_x), logits.device)
            loss = F.binary_cross_entropy_with_logits(logits, labels)
            return StepOutput({"discriminator": loss}, {"train/domain_acc": domain_accuracy(logits, labels)}, features)
        target_features = self.target_encoder(batch.target_x)
        logits = with_frozen_parameters(discriminator, target_features).squeeze(1)
        inverted = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits))  # "these are source"
        return StepOutput({"domain": inverted}, {}, target_features)

    @torch.no_grad()
    def features_and_logits(self, x: Tensor) -> tuple[Tensor, Tensor]:
        encoder = self.target_encoder if self.adapting else self.network.feature_extractor
        features = encoder(x)
        return features, self.network.label_predictor(features)

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        return self.features_and_logits(x)[1]
