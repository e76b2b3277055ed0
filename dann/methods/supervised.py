"""The paper's bounds: the same network trained on one domain's labels with no domain loss.

`source_only` is the lower bound (no adaptation), `target_only` the upper bound
(trained on target labels, which adaptation does not have).

Both still train the domain classifier, as a *probe* on detached features, so
that they log the same `train/domain_*` metrics as DANN: its accuracy shows how
separable the domains are without adaptation. The probe never changes the
features, and the other domain's batch goes through the feature extractor in
eval mode without gradients, so the baseline learns nothing from it (not even
BatchNorm statistics). For the same reason, of the gradient diagnostics logged at each
log interval (`dann.training.engine`) only `train/grad_norm_label` can be non-zero:
`train/grad_norm_domain` and `train/grad_ratio` are logged as 0, the true value, so that the
baselines' charts line up with DANN's. Their `train/lambda` is 0: no reversal layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from dann.methods.base import Batch, Method, StepOutput, domain_accuracy, domain_labels


class SupervisedOnly(Method):
    """The label loss on one domain's labels, and the domain classifier as a probe:

        losses: label = CE(G_y(G_f(x)), y),  domain = BCE(G_d([f.detach(); f_other]), d)

    with (x, y) the `labeled_domain`'s batch and f_other the other domain's features, computed in eval
    mode without gradients. In the gradient diagnostics "domain" is the probe's loss, which never
    reaches the features: `train/grad_norm_domain` is 0.
    """

    labeled_domain: ClassVar[str]  # "source" or "target"

    def scalars(self, progress: float) -> dict[str, float]:
        return {"lambda": 0.0}  # logged as train/lambda, so that the baselines' charts line up with DANN's

    def forward(self, batch: Batch, scalars: Mapping[str, float | Tensor], phase: str = "step") -> StepOutput:
        return self.supervised(batch, self.labeled_domain)

    def supervised(self, batch: Batch, labeled_domain: str, label_smoothing: float = 0.0) -> StepOutput:
        """The losses of a step on `labeled_domain`'s labels ("source" or "target"); `label_smoothing`: ε of
        the cross-entropy's smoothed targets (1 − ε on the label, ε/C spread over all C classes)."""
        net = self.network
        if labeled_domain == "source":
            x, y, other_x = batch.source_x, batch.source_y, batch.target_x
        else:
            x, y, other_x = batch.target_x, batch.target_y, batch.source_x
        features = net.feature_extractor(x)
        label_loss = F.cross_entropy(net.label_predictor(features), y, label_smoothing=label_smoothing)
        other_features = self._frozen_features(other_x)
        if labeled_domain == "source":
            probe_input = torch.cat([features.detach(), other_features])
            labels = domain_labels(len(x), len(other_x), x.device)
        else:
            probe_input = torch.cat([other_features, features.detach()])
            labels = domain_labels(len(other_x), len(x), x.device)
        domain_logits = net.domain_classifier(probe_input).squeeze(1)
        domain_loss = F.binary_cross_entropy_with_logits(domain_logits, labels)
        metrics = {"train/domain_acc": domain_accuracy(domain_logits, labels)}
        return StepOutput({"label": label_loss, "domain": domain_loss}, metrics, features)

    @torch.no_grad()
    def _frozen_features(self, x: Tensor) -> Tensor:
        extractor = self.network.feature_extractor
        extractor.eval()
        try:
            return extractor(x)
        finally:
            extractor.train()


class SourceOnly(SupervisedOnly):
    labeled_domain = "source"


class TargetOnly(SupervisedOnly):
    labeled_domain = "target"
    uses_target_labels = True
