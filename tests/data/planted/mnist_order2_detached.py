"""The MNIST MLP with a custom tanh whose backward is right at first order but computed from a
detached tensor: its gradient is correct and cannot be differentiated again (tanh'' is lost).
The planted twin of cases/mnist_order2.py.
"""

import torch
import torch.nn.functional as F


class Tanh(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        y = torch.tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad_output):
        (y,) = ctx.saved_tensors
        # Right at first order, but computed from a detached tensor: a double backward
        # cannot see that it depends on x.
        return grad_output * (1 - y.detach() ** 2)


def mlp(x, target, W1, b1, W2, b2, W3, b3):
    h1 = Tanh.apply(F.linear(x, W1, b1))
    h2 = Tanh.apply(F.linear(h1, W2, b2))
    return F.cross_entropy(F.linear(h2, W3, b3), target)
