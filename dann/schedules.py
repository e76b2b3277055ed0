"""Schedules of λ (by training progress) and of the learning rate (by step).

A λ schedule is `schedule(progress, final_lambda) -> λ_p`, with `progress` p the fraction
of training done, in [0, 1]. A learning-rate schedule is `factor(step, total_steps) -> float`,
the multiplier of the base learning rate at optimisation `step` (0 for the first) of a run of
`total_steps`: the paper's annealing depends on p = step / total_steps, the `inv` schedule on
the step alone. Their settings (γ, α, β, …) are keyword arguments, bound by the config
(`_partial_: true`) or by `functools.partial` in your own code.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Annotated

from dann.config.spec import Setting

LambdaSchedule = Callable[[float, float], float]  # (progress, final_lambda) -> λ_p
LRSchedule = Callable[[int, int], float]  # (step, total_steps) -> factor of the base learning rate


def ganin_lambda(
    progress: float,
    final_lambda: float,
    gamma: Annotated[float, Setting("γ of the warm-up", gt=0, hint="e.g. 10")] = 10.0,
) -> float:
    """λ_p = final_lambda · (2 / (1 + exp(-γ·p)) - 1): 0 at the start, → final_lambda at the end.

    Starting at 0 keeps the domain classifier's noisy early gradients from
    disrupting the features before the label predictor has learnt anything.
    """
    return final_lambda * (2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0)


def constant_lambda(progress: float, final_lambda: float) -> float:
    """λ_p = final_lambda throughout."""
    return final_lambda


def annealed_lr_factor(
    step: int,
    total_steps: int,
    alpha: Annotated[float, Setting("α of the annealing", ge=0)] = 10.0,
    beta: Annotated[float, Setting("β of the annealing", ge=0)] = 0.75,
) -> float:
    """μ_p / μ0 = 1 / (1 + α·p)^β with p = step / total_steps (Ganin et al., JMLR 2016, §5.2.2).

    p is capped at 1, so steps past `total_steps` keep the final rate.
    """
    progress = min(step / total_steps, 1.0)
    return 1.0 / (1.0 + alpha * progress) ** beta


def inv_lr_factor(
    step: int,
    total_steps: int,
    gamma: Annotated[float, Setting("γ of the inv schedule", ge=0)] = 0.001,
    power: Annotated[float, Setting("power of the inv schedule", ge=0)] = 0.75,
) -> float:
    """μ_t / μ0 = (1 + γ·t)^(-power): Caffe's "inv" policy, as in the Transfer-Learning-Library.

    Depends on the step alone, not on the run's length: 1 at step 0, 0.59 at step 1000
    and 0.10 at step 20000 with the defaults.
    """
    return (1.0 + gamma * step) ** -power


def constant_lr_factor(step: int, total_steps: int) -> float:
    """μ_t / μ0 = 1."""
    return 1.0


def resolved(schedule: Callable) -> Callable:
    """`schedule` as a plain `functools.partial` when it is a partial (Hydra's `_partial_: true`).

    Hydra 1.3.8's partials re-check its target policy at every call (a sha256 digest, 150–190 µs);
    a schedule runs several times a step, so it is resolved once, when the method is built.
    """
    if isinstance(schedule, functools.partial):
        return functools.partial(schedule.func, *schedule.args, **schedule.keywords)
    return schedule
