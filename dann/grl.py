"""The gradient reversal layer R_λ of Ganin & Lempitsky (2015).

Forward: identity. Backward: the incoming gradient times -λ. Placed between the
feature extractor and the domain classifier, it lets one backward pass train the
domain classifier to *separate* the domains while pushing the features to make
them *indistinguishable*.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class _GradientReversal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, grl_lambda: float | Tensor) -> Tensor:
        ctx.grl_lambda = grl_lambda
        # view_as gives autograd a new node; returning x itself would skip backward().
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> tuple[Tensor, None]:
        return grad_output * -ctx.grl_lambda, None


def grad_reverse(x: Tensor, grl_lambda: float | Tensor) -> Tensor:
    """Identity on `x`; multiplies the gradient flowing back through it by `-grl_lambda`.

    `grl_lambda` is a Python float, so that changing it every step costs no host-device
    synchronisation and rebuilds nothing; or a 0-d CPU tensor, which is what the engine passes
    under torch.compile: the compiler would bake a float into the graph as a constant and
    compile again for each new value, whereas a tensor is an input of the one graph.
    """
    return _GradientReversal.apply(x, grl_lambda if isinstance(grl_lambda, Tensor) else float(grl_lambda))


class GradientReversal(nn.Module):
    """Module form of `grad_reverse`; λ is passed per call, so a schedule needs no rebuild."""

    def forward(self, x: Tensor, grl_lambda: float | Tensor) -> Tensor:
        return grad_reverse(x, grl_lambda)
