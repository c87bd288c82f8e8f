"""Custom Functions as users write them, each with a planted twin (its backward wrong), for
the drop-in gradcheck suite. GRADCHECK_LAB_PLANTED=1 swaps every Function for its twin."""

import os

import torch

PLANTED = os.environ.get("GRADCHECK_LAB_PLANTED") == "1"


class ScaledTanh(torch.autograd.Function):
    """y = scale * tanh(x): a non-tensor argument."""

    @staticmethod
    def forward(ctx, x, scale):
        y = torch.tanh(x)
        ctx.save_for_backward(y)
        ctx.scale = scale
        return scale * y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        factor = 1 - y * y if not PLANTED else 1 - y
        return grad * ctx.scale * factor, None


class BilinearPair(torch.autograd.Function):
    """(a @ W, sum(a * b)): two outputs, three inputs."""

    @staticmethod
    def forward(ctx, a, W, b):
        ctx.save_for_backward(a, W, b)
        return a @ W, (a * b).sum()

    @staticmethod
    def backward(ctx, grad_y, grad_s):
        a, W, b = ctx.saved_tensors
        grad_a = grad_y @ W.T + grad_s * b
        grad_W = a.T @ grad_y
        grad_b = grad_s * a if not PLANTED else a
        return grad_a, grad_W, grad_b


class WeightedSquare(torch.autograd.Function):
    """w * x**2 with w given but not differentiated."""

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return w * x * x

    @staticmethod
    def backward(ctx, grad):
        x, w = ctx.saved_tensors
        return grad * 2 * w * x if not PLANTED else grad * w * x, None


class SmoothAbs(torch.autograd.Function):
    """sqrt(x**2 + 1), differentiable twice (its backward is built from tensor ops)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.sqrt(x * x + 1)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        if PLANTED:  # right at first order, but not differentiable: computed detached
            return grad * (x.detach() / torch.sqrt(x.detach() ** 2 + 1))
        return grad * x / torch.sqrt(x * x + 1)
