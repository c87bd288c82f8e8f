"""The MNIST MLP of mnist_order2.yaml with a hand-written tanh, as a torch.autograd.Function
whose backward is itself differentiable: it computes from the saved output with torch ops that
autograd records, so a double backward (a Hessian-vector product, a gradient penalty) sees
tanh'' too. tests/data/planted/mnist_order2_detached.py is its twin that computes the same
first-order gradient from a detached tensor, which only order 2 can tell apart.
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
        return grad_output * (1 - y * y)


def mlp(x, target, W1, b1, W2, b2, W3, b3):
    h1 = Tanh.apply(F.linear(x, W1, b1))
    h2 = Tanh.apply(F.linear(h1, W2, b2))
    return F.cross_entropy(F.linear(h2, W3, b3), target)
