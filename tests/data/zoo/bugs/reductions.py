"""PLANTED BUGS: reductions and losses as custom torch.autograd.Functions, one wrong backward
each: mean where sum belongs and back, the wrong dim, a missing factor, a skipped grad_output."""

import torch


class SumAveraged(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.shape, ctx.n = x.shape, x.numel()
        return x.sum()

    @staticmethod
    def backward(ctx, grad):
        return grad.expand(ctx.shape) / ctx.n  # BUG: mean's backward for a sum


class MeanSummed(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.shape = x.shape
        return x.mean()

    @staticmethod
    def backward(ctx, grad):
        return grad.expand(ctx.shape).clone()  # BUG: sum's backward for a mean (no 1/n)


class SumDim1WrongAxis(torch.autograd.Function):
    """sum(x, dim=1) of a square x."""

    @staticmethod
    def forward(ctx, x):
        ctx.shape = x.shape
        return x.sum(dim=1)

    @staticmethod
    def backward(ctx, grad):
        return grad[None, :].expand(ctx.shape).clone()  # BUG: broadcast along dim 0


class MeanDim0WrongCount(torch.autograd.Function):
    """mean(x, dim=0) of a [2, 5] x."""

    @staticmethod
    def forward(ctx, x):
        ctx.shape = x.shape
        return x.mean(dim=0)

    @staticmethod
    def backward(ctx, grad):
        return grad[None, :].expand(ctx.shape) / ctx.shape[1]  # BUG: divides by size(1)


class MeanOneElementOff(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.shape = x.shape
        return x.mean()

    @staticmethod
    def backward(ctx, grad):
        out = grad.expand(ctx.shape) / ctx.shape.numel()
        out = out.clone()
        out[2] *= 1 - 1e-3  # BUG: one element off by 0.1 %
        return out


class MseNoTwo(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pred, target):
        ctx.save_for_backward(pred, target)
        return ((pred - target) ** 2).mean()

    @staticmethod
    def backward(ctx, grad):
        pred, target = ctx.saved_tensors
        d = grad * (pred - target) / pred.numel()  # BUG: 2 (pred - target) / n
        return d, -d


class SumDimIgnoresGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.shape = x.shape
        return x.sum(dim=1)

    @staticmethod
    def backward(ctx, grad):
        return torch.ones(ctx.shape, dtype=grad.dtype)  # BUG: grad_output ignored


class MseTargetSign(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pred, target):
        ctx.save_for_backward(pred, target)
        return ((pred - target) ** 2).mean()

    @staticmethod
    def backward(ctx, grad):
        pred, target = ctx.saved_tensors
        d = 2 * grad * (pred - target) / pred.numel()
        return d, d  # BUG: the target's gradient is -d


def sum_backward_averages(x):
    return SumAveraged.apply(x)


def mean_backward_sums(x):
    return torch.exp(MeanSummed.apply(x))


def sum_dim1_broadcast_wrong_axis(x):
    return SumDim1WrongAxis.apply(x)


def mean_dim0_wrong_count(x):
    return MeanDim0WrongCount.apply(x)


def mean_one_element_off(x):
    return MeanOneElementOff.apply(x)


def mse_missing_two(pred, target):
    return MseNoTwo.apply(pred, target)


def sum_dim_ignores_grad_output_in_loss(x):
    return (SumDimIgnoresGrad.apply(x) ** 2).sum()


def mse_target_wrong_sign(pred, target):
    return MseTargetSign.apply(pred, target)
