import os

import torch

import gradcheck_lab

PLANTED = os.environ.get("GRADCHECK_LAB_PLANTED", "1") == "1"


class ScaledProductAndSum(torch.autograd.Function):
    """Several inputs and outputs, and a non-tensor argument: (alpha * x * y, x + y)."""

    @staticmethod
    def forward(ctx, x, y, alpha):
        ctx.save_for_backward(x, y)
        ctx.alpha = alpha
        return alpha * x * y, x + y

    @staticmethod
    def backward(ctx, grad_product, grad_sum):
        x, y = ctx.saved_tensors
        alpha = ctx.alpha
        return alpha * y * grad_product + grad_sum, alpha * x * grad_product + grad_sum, None


class LogSumExp(torch.autograd.Function):
    """A reduction along a dimension given as a keyword-like positional int."""

    @staticmethod
    def forward(ctx, x, dim):
        out = torch.logsumexp(x, dim=dim, keepdim=True)
        ctx.save_for_backward(x, out)
        return out.squeeze(dim)

    @staticmethod
    def backward(ctx, grad):
        x, out = ctx.saved_tensors
        return grad.unsqueeze(-1 if x.dim() == 1 else 1) * torch.exp(x - out), None


class Softsign(torch.autograd.Function):
    """Used only inside SoftsignLayer: no test calls it directly."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x / (1 + x.abs())

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad / (1 + x.abs()) ** 2


class SoftsignLayer(torch.nn.Module):
    def __init__(self, features):
        super().__init__()
        self.linear = torch.nn.Linear(features, features)

    def forward(self, x):
        return Softsign.apply(self.linear(x))


@gradcheck_lab.exclude("surrogate gradient: a fast sigmoid's slope where the step has none")
class Spike(torch.autograd.Function):
    """A spiking nonlinearity: the forward is a step, the backward a surrogate."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad / (1 + 10 * x.abs()) ** 2


class Cube(torch.autograd.Function):
    """x**3, never gradchecked by the suite; its backward carries a planted bug."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x ** 3

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * (2 if PLANTED else 3) * x ** 2


def smooth_abs(x, eps=1e-3):
    """A plain function (no custom Function): recorded only when named in the ini key."""
    return torch.sqrt(x * x + eps)


class Gate(torch.nn.Module):
    """A module, recorded only when named in the ini key."""

    def __init__(self, features):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(features))

    def forward(self, x):
        return torch.sigmoid(self.scale * x) * x
