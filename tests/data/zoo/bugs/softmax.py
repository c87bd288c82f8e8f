"""PLANTED BUGS: softmax, log_softmax and cross_entropy as custom torch.autograd.Functions, one
wrong backward each."""

import torch


class LogSoftmax(torch.autograd.Function):
    """log_softmax over the last dim, correct; subclasses override the backward formula."""

    @staticmethod
    def forward(ctx, x):
        y = torch.log_softmax(x, dim=-1)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def grad(g, y):
        return g - torch.exp(y) * g.sum(dim=-1, keepdim=True)

    @classmethod
    def backward(cls, ctx, grad):
        (y,) = ctx.saved_tensors
        return cls.grad(grad, y)


class LogSoftmaxSign(LogSoftmax):
    @staticmethod
    def grad(g, y):
        return g + torch.exp(y) * g.sum(dim=-1, keepdim=True)  # BUG: wrong sign


class LogSoftmaxScaled1e5(LogSoftmax):
    @staticmethod
    def grad(g, y):
        return (g - torch.exp(y) * g.sum(dim=-1, keepdim=True)) * (1 + 1e-5)  # BUG: 0.001 %


class Softmax(torch.autograd.Function):
    """softmax over the last dim, correct; subclasses override the backward formula."""

    @staticmethod
    def forward(ctx, x):
        s = torch.softmax(x, dim=-1)
        ctx.save_for_backward(x, s)
        return s

    @staticmethod
    def grad(g, x, s):
        return s * (g - (g * s).sum(dim=-1, keepdim=True))

    @classmethod
    def backward(cls, ctx, grad):
        x, s = ctx.saved_tensors
        return cls.grad(grad, x, s)


class SoftmaxScaled1e3(Softmax):
    @staticmethod
    def grad(g, x, s):
        return s * (g - (g * s).sum(dim=-1, keepdim=True)) * (1 + 1e-3)  # BUG: 0.1 % too large


class SoftmaxUnstable(Softmax):
    @staticmethod
    def grad(g, x, s):
        # BUG: softmax recomputed without subtracting the max: exp(800) = inf, inf / inf = NaN
        e = torch.exp(x)
        s = e / e.sum(dim=-1, keepdim=True)
        return s * (g - (g * s).sum(dim=-1, keepdim=True))


class SoftmaxIgnoresGrad(Softmax):
    @staticmethod
    def grad(g, x, s):
        # BUG: the diagonal of the Jacobian, s (1 - s), whatever grad_output is
        return s * (1 - s)


class SoftmaxMissingTerm(Softmax):
    @staticmethod
    def grad(g, x, s):
        return s * g  # BUG: the - s (g · s) term of the quotient rule is missing


class CrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of logits [N, C] against class indices."""

    @staticmethod
    def forward(ctx, logits, target):
        ctx.save_for_backward(logits, target)
        return torch.nn.functional.cross_entropy(logits, target)

    @staticmethod
    def grad(logits, target):
        onehot = torch.nn.functional.one_hot(target, logits.shape[-1]).to(logits.dtype)
        return (torch.softmax(logits, dim=-1) - onehot) / logits.shape[0]

    @classmethod
    def backward(cls, ctx, grad):
        logits, target = ctx.saved_tensors
        return grad * cls.grad(logits, target), None


class CrossEntropyNotAveraged(CrossEntropy):
    @staticmethod
    def grad(logits, target):
        onehot = torch.nn.functional.one_hot(target, logits.shape[-1]).to(logits.dtype)
        return torch.softmax(logits, dim=-1) - onehot  # BUG: / N missing (mean reduction)


class CrossEntropyWrongDim(CrossEntropy):
    @staticmethod
    def grad(logits, target):
        onehot = torch.nn.functional.one_hot(target, logits.shape[-1]).to(logits.dtype)
        return (torch.softmax(logits, dim=0) - onehot) / logits.shape[0]  # BUG: dim 0


def log_softmax_wrong_sign(x):
    return LogSoftmaxSign.apply(x)


def log_softmax_scaled_1e5(x, c):
    return (LogSoftmaxScaled1e5.apply(x) * c).sum()


def softmax_scaled_1e3(x):
    return SoftmaxScaled1e3.apply(x)


def softmax_backward_nan(x):
    return SoftmaxUnstable.apply(x)


def softmax_ignores_grad_output(x):
    return SoftmaxIgnoresGrad.apply(x)


def softmax_missing_term_in_loss(x):
    return (SoftmaxMissingTerm.apply(x) ** 2).sum()


def cross_entropy_not_averaged(logits, t):
    return CrossEntropyNotAveraged.apply(logits, t)


def cross_entropy_softmax_wrong_dim(logits, t):
    return CrossEntropyWrongDim.apply(logits, t)
