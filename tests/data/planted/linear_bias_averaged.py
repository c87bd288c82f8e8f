"""PLANTED BUG (bias_averaged). A hand-written linear layer, y = x W^T + b, as a torch.autograd.Function.

The case file custom_linear.yaml checks its backward against the spec `linear(x, W, b)`.
tests/data/planted/ holds copies with planted bugs that the runner must catch.
"""

import torch


class Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        return x @ weight.T + bias

    @staticmethod
    def backward(ctx, grad_output):
        x, weight = ctx.saved_tensors
        grad_x = grad_output @ weight
        grad_weight = grad_output.T @ x
        grad_bias = grad_output.mean(dim=0)
        return grad_x, grad_weight, grad_bias


def layer(x, W, b):
    """The layer alone: a tensor output, checked through its full Jacobian."""
    return Linear.apply(x, W, b)


def loss(x, W, b):
    """The layer feeding further computation, down to a scalar loss."""
    return torch.tanh(Linear.apply(x, W, b)).pow(2).mean()
