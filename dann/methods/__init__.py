"""Training methods: one class per algorithm, each a loss module (`forward`: its losses) with `predict()`.

A config under `conf/method/` names its class by `_target_` (`method=dann` → `dann.methods.DANN`).
DANN's successors on the same reversal layer and three networks: `cdan.CDAN` (`method=cdan`, and
`method=cdan_e` with entropy conditioning) and `mdd.MDD` (`method=mdd`).
To add a method: subclass `Method`, implement `forward()` (its named losses and metrics; `scalars()`
for a schedule such as λ, `phases()` for several optimisation steps per iteration, and
`domain_classifier_shape()` if its adversary is not one logit from the features), and write
`conf/method/<name>.yaml` with its `_target_` and settings; nothing else needs an edit. The engine
(`dann.training.engine.Engine`) takes the steps; tests/methods/test_method_contract.py checks every method's config.
"""

from __future__ import annotations

from dann.methods.base import Batch, Method, StepOutput
from dann.methods.dann import DANN
from dann.methods.finetune import FineTune, TwoStage
from dann.methods.supervised import SourceOnly, TargetOnly

__all__ = ["DANN", "Batch", "FineTune", "Method", "SourceOnly", "StepOutput", "TargetOnly", "TwoStage"]
