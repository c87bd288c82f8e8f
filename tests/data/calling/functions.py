"""Custom Functions as real code writes them, for the case keys that call them: constants:,
surrogate:, several outputs and params: (tests/test_calling.py)."""

import torch
from torch import nn


class MulConstant(torch.autograd.Function):
    """From the PyTorch docs: y = x * constant, the constant a Python number."""

    @staticmethod
    def forward(ctx, tensor, constant):
        ctx.constant = constant
        return tensor * constant

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output * ctx.constant, None


def mul_constant(x, k):
    return MulConstant.apply(x, k)


class GradientReversal(torch.autograd.Function):
    """Domain-adversarial training's layer: the identity forward, -lambd × grad backward."""

    @staticmethod
    def forward(ctx, x, lambd):
        ctx.lambd = lambd
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output.neg() * ctx.lambd, None


def reversal(x, w, lambd):
    return (GradientReversal.apply(x, lambd) * w).sum()


class WrongReversal(GradientReversal):
    @staticmethod
    def backward(ctx, grad_output):
        return grad_output.neg() * ctx.lambd * 0.5, None  # half the declared scale


def wrong_reversal(x, w, lambd):
    return (WrongReversal.apply(x, lambd) * w).sum()


class StraightThrough(torch.autograd.Function):
    """round() forward, identity backward (quantization-aware training)."""

    @staticmethod
    def forward(ctx, x):
        return torch.round(x)

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output


def straight_through(x):
    return StraightThrough.apply(x)


class Attention(torch.autograd.Function):
    """Softmax attention returning the output and the attention weights, with a hand-written
    backward for both."""

    @staticmethod
    def forward(ctx, q, k, v):
        scale = q.shape[-1] ** -0.5
        attn = torch.softmax(q @ k.transpose(-2, -1) * scale, dim=-1)
        out = attn @ v
        ctx.save_for_backward(q, k, v, attn)
        ctx.scale = scale
        return out, attn

    @staticmethod
    def backward(ctx, grad_out, grad_attn):
        q, k, v, attn = ctx.saved_tensors
        grad_v = attn.transpose(-2, -1) @ grad_out
        grad_weights = grad_out @ v.transpose(-2, -1) + grad_attn
        grad_scores = attn * (grad_weights - (grad_weights * attn).sum(-1, keepdim=True))
        grad_q = grad_scores @ k * ctx.scale
        grad_k = grad_scores.transpose(-2, -1) @ q * ctx.scale
        return grad_q, grad_k, grad_v


def attention(q, k, v):
    return Attention.apply(q, k, v)


class AttentionIgnoringWeightsGrad(Attention):
    @staticmethod
    def backward(ctx, grad_out, grad_attn):
        return Attention.backward(ctx, grad_out, torch.zeros_like(grad_attn))


def attention_dropping_attn_grad(q, k, v):
    return AttentionIgnoringWeightsGrad.apply(q, k, v)


def attention_dict(q, k, v):
    out, attn = Attention.apply(q, k, v)
    return {"attn": attn, "o": out}


def mlp():
    """An MNIST-shaped MLP, smaller: its parameters are bound to inputs by params:."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 8), nn.Tanh(), nn.Linear(8, 4))


def mlp_sized(hidden):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, hidden), nn.Tanh(), nn.Linear(hidden, 4))


def attention_off_weights(q, k, v):
    out, attn = Attention.apply(q, k, v)
    return out, attn * 1.001  # the second output's forward is off


def attention_one_output(q, k, v):
    return Attention.apply(q, k, v)[0]


class Scale(nn.Module):
    def __init__(self, factor):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(3))
        self.factor = factor

    def forward(self, x):
        return x * self.weight * self.factor


def scale_module(factor):
    return Scale(factor)
