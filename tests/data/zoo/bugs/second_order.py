"""PLANTED BUGS: backwards whose first-order values are right but that cut the graph, so the
gradient itself is not differentiable (double backward gives zero or fails). Only a
second-order check can see them."""

import torch


class ExpNoGradBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        y = torch.exp(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        with torch.no_grad():  # BUG: under create_graph=True the result has no graph
            return grad * y


class TanhDetachedBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        y = torch.tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        y = y.detach()  # BUG: the second derivative through y is lost
        return grad * (1 - y * y)


def exp_backward_under_no_grad(x):
    return ExpNoGradBackward.apply(x).sum()


def tanh_backward_on_detached(x):
    return (TanhDetachedBackward.apply(x) * 3).sum()
