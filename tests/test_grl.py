import pytest
import torch
from torch import nn

from dann.grl import GradientReversal, grad_reverse


def test_forward_is_exact_identity():
    x = torch.randn(4, 7)
    y = grad_reverse(x, 0.37)
    assert torch.equal(y, x)
    assert y.dtype == x.dtype and y.shape == x.shape


def test_backward_is_exactly_minus_lambda_times_incoming_gradient():
    x = torch.randn(5, 3, requires_grad=True)
    g = torch.randn(5, 3)
    grad_reverse(x, 0.25).backward(g)
    # 0.25 is a power of two, so -λ·g is exact in float32 and equality must hold bit for bit.
    assert torch.equal(x.grad, -0.25 * g)


def test_lambda_can_change_every_call_without_rebuilding():
    grl = GradientReversal()
    x = torch.randn(3, requires_grad=True)
    for lam in (0.0, 0.5, 2.0):
        x.grad = None
        grl(x, lam).sum().backward()
        assert torch.equal(x.grad, torch.full((3,), -lam))


def test_gradcheck_float64():
    x = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    # gradcheck compares the backward with finite differences of the forward. The forward
    # is the identity, so the check passes exactly when the layer is a true identity (λ = -1)
    # and must fail for any other λ: that is the reversal doing its job.
    assert torch.autograd.gradcheck(lambda t: grad_reverse(t, -1.0), (x,))
    assert not torch.autograd.gradcheck(lambda t: grad_reverse(t, 0.7), (x,), raise_exception=False)
    # The analytic Jacobian is -λ·I.
    jacobian = torch.autograd.functional.jacobian(lambda t: grad_reverse(t, 0.7), x)
    assert torch.allclose(jacobian, -0.7 * torch.eye(24, dtype=torch.float64).view(6, 4, 6, 4))


def test_reversal_through_a_network_is_minus_lambda_times_plain_gradient():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3), nn.Tanh()).double()
    x = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    net(grad_reverse(x, 0.3)).sum().backward()
    reversed_grad = x.grad.clone()
    x.grad = None
    net(x).sum().backward()
    assert torch.allclose(reversed_grad, -0.3 * x.grad)


def test_works_under_autocast():
    lin = nn.Linear(8, 8)
    x = torch.randn(4, 8, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = lin(x)
        assert h.dtype == torch.bfloat16
        y = grad_reverse(h, 0.5)
        assert y.dtype == torch.bfloat16 and torch.equal(y, h)
        loss = y.float().sum()
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    # Same backward without the layer: the reversed gradient is exactly -0.5 times it.
    x2 = x.detach().clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss2 = lin(x2).float().sum()
    loss2.backward()
    assert torch.allclose(x.grad, -0.5 * x2.grad)


@pytest.mark.parametrize("grl_lambda", [0.0, 0.3, 1.7])
def test_a_0d_tensor_lambda_reverses_exactly_as_the_float(grl_lambda: float):
    # The engine passes λ as a 0-d tensor under torch.compile: the gradient must be bitwise the float's.
    grads = []
    for given in (grl_lambda, torch.tensor(grl_lambda)):
        x = torch.linspace(-2, 3, 12).reshape(3, 4).requires_grad_()
        (grad_reverse(x, given) * torch.arange(12.0).reshape(3, 4).sin()).sum().backward()
        grads.append(x.grad)
    assert torch.equal(grads[0], grads[1])
    assert torch.equal(grads[0], -grl_lambda * torch.arange(12.0).reshape(3, 4).sin())
