"""Forwards for traced specs (tests/test_trace.py): custom Functions with a right and a wrong
backward, a plain torch MLP, in-place ops, casts, tuple outputs, and forwards the tracer must
refuse in one line."""

import torch
import torch.nn.functional as F


class Square(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return 2 * x * grad


class SquareOffByHalf(Square):
    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return 3 * x * grad


def square_rows(x):
    return Square.apply(x).sum(dim=1)


def square_rows_wrong(x):
    return SquareOffByHalf.apply(x).sum(dim=1)


def mlp(x, W1, b1, W2, b2, target):
    hidden = torch.tanh(F.linear(x, W1, b1))
    return F.cross_entropy(F.linear(hidden, W2, b2), target)


def in_place(x):
    y = x.clone()
    y.mul_(2.0)
    y.add_(1.0)
    return torch.relu(y).clamp(max=2.5) * x


def half_precision_inside(x, w):
    return (x.float() * w.float()).sin().to(x.dtype)


def softmax_attention(q, k):
    scores = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5
    return torch.softmax(scores, dim=-1), scores.amax(dim=-1)


def depends_on_value(x):
    if x.sum() > 0:  # control flow at the traced point
        return x.exp()
    return -x


def constant_weights(x):
    return x * torch.tensor([1.0, 2.0, 3.0], dtype=x.dtype)


def unsupported(x):
    return torch.erfinv(x.tanh() * 0.5)


def view_mutated(x):
    y = x.clone()
    y[0].mul_(2.0)
    return y
