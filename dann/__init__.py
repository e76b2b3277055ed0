"""dann: domain-adversarial training of neural networks (Ganin et al., JMLR 2016) in PyTorch.

The command is `python -m dann.run`; the library is these names, for a training loop of your own
(docs/guides/own-loop.md):

    from dann import DANN, Batch, DANNNetwork, Engine, FeatureExtractor, grad_reverse, mlp

They are imported on first use, so that `import dann.report` does not load torch.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("dann")  # pyproject.toml's [project] version, the only place it is written
except PackageNotFoundError:  # run from a source tree that was never installed (pip install -e .)
    __version__ = "0+unknown"

# public name → the module that defines it
_EXPORTS = {
    "GradientReversal": "dann.grl",
    "grad_reverse": "dann.grl",
    "DANNNetwork": "dann.models.network",
    "FeatureExtractor": "dann.models.network",
    "mlp": "dann.models.heads",
    "Batch": "dann.methods.base",
    "Method": "dann.methods.base",
    "StepOutput": "dann.methods.base",
    "Engine": "dann.training.engine",
    "DANN": "dann.methods.dann",
    "SourceOnly": "dann.methods.supervised",
    "TargetOnly": "dann.methods.supervised",
    "FineTune": "dann.methods.finetune",
    "TwoStage": "dann.methods.finetune",
    "ganin_lambda": "dann.schedules",
    "constant_lambda": "dann.schedules",
    "annealed_lr_factor": "dann.schedules",
    "inv_lr_factor": "dann.schedules",
    "constant_lr_factor": "dann.schedules",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'dann' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
