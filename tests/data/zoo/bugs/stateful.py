"""PLANTED BUGS: backwards that keep state between calls, so a second backward differs from
the first. A single backward per forward (a scalar output) cannot see it."""

import torch

_buffers = {}


class ExpAccumulating(torch.autograd.Function):
    """exp, whose backward adds into a module-level buffer it never zeroes (a 'workspace'
    reused across calls): right on the first backward in the process, 2x on the second, ..."""

    @staticmethod
    def forward(ctx, x):
        y = torch.exp(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        key = ("exp", tuple(y.shape), y.dtype)
        buffer = _buffers.setdefault(key, torch.zeros_like(y))
        buffer += grad * y  # BUG: accumulates; the buffer should start from zero every call
        return buffer.clone()


class SquareAccumulatingOnCtx(torch.autograd.Function):
    """x², whose backward accumulates into a tensor kept on ctx: right on the first backward
    through a graph, 2x on the second through the same graph (retain_graph=True)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        ctx.grad_x = torch.zeros_like(x)
        return x * x

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        ctx.grad_x += 2 * grad * x  # BUG: accumulates; should be a fresh tensor every call
        return ctx.grad_x.clone()


class SinAccumulatingOnCtx(torch.autograd.Function):
    """sin, with the same accumulation bug."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        ctx.grad_x = torch.zeros_like(x)
        return torch.sin(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        ctx.grad_x += grad * torch.cos(x)  # BUG: accumulates across backward calls
        return ctx.grad_x.clone()


def exp_accumulating_buffer(x):
    return ExpAccumulating.apply(x).sum()


def square_accumulates_on_ctx(x):
    return SquareAccumulatingOnCtx.apply(x).sum()


def sin_accumulates_on_ctx_tensor_output(x):
    """A tensor output: the oracle's backward runs once per Jacobian row on one graph, so the
    second row already sees the first row's gradient added in."""
    return SinAccumulatingOnCtx.apply(x)
