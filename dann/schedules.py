"""Training-progress schedules of Ganin et al. (JMLR 2016, §5.2.2).

`progress` p is the fraction of training done, in [0, 1].
"""

from __future__ import annotations

import math


def ganin_lambda(progress: float, final_lambda: float, gamma: float = 10.0) -> float:
    """λ_p = final_lambda · (2 / (1 + exp(-γ·p)) - 1): 0 at the start, → final_lambda at the end.

    Starting at 0 keeps the domain classifier's noisy early gradients from
    disrupting the features before the label predictor has learnt anything.
    """
    return final_lambda * (2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0)


def constant_lambda(progress: float, final_lambda: float, gamma: float = 10.0) -> float:
    """λ_p = final_lambda throughout."""
    return final_lambda


LAMBDA_SCHEDULES = {"ganin": ganin_lambda, "constant": constant_lambda}


def annealed_lr_factor(progress: float, alpha: float = 10.0, beta: float = 0.75) -> float:
    """μ_p / μ0 = 1 / (1 + α·p)^β."""
    return 1.0 / (1.0 + alpha * progress) ** beta


def constant_lr_factor(progress: float, alpha: float = 10.0, beta: float = 0.75) -> float:
    """μ_p / μ0 = 1."""
    return 1.0


LR_SCHEDULES = {"annealed": annealed_lr_factor, "constant": constant_lr_factor}
