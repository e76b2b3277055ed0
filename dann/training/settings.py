"""The `trainer` config as one object: every trainer key, read one way (`TrainerSettings.from_config`).

Light on purpose (no torch): the config checks read it before torch is imported. Units: steps, except
the batch sizes (examples per domain per step; per evaluation batch).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class TrainerSettings:
    """How long to train, how often to log, evaluate and checkpoint, where and how the step runs."""

    steps: int
    batch_size: int
    eval_batch_size: int = 256
    log_every: int = 100
    eval_every: int = 1000
    checkpoint_every: int = 1000
    progress: str = "auto"  # the console progress line: auto | bar | lines | off (dann.training.progress)
    # Reverse validation (the costly criterion) at every Nth evaluation; 0: never.
    reverse_validation_every: int = 1
    resume: bool = True
    rerun_finished: bool = False
    objective: str = "source_val"
    device: str = "auto"
    precision: str = "auto"
    channels_last: str | bool = "auto"
    compile: bool = False
    threads: str | int = "auto"

    @classmethod
    def from_config(cls, node: Any) -> TrainerSettings:
        """From the composed `cfg.trainer` (a DictConfig or a dict), after the config checks."""
        return cls(**{field.name: node[field.name] for field in fields(cls) if field.name in node})
