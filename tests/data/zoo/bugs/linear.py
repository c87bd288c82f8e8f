"""PLANTED BUGS: matrix products as custom torch.autograd.Functions, one wrong backward each.

Square matrices where a transposed operand would still have the right shape, so the bug
cannot announce itself with a shape error.
"""

import torch


class MatMul(torch.autograd.Function):
    """A @ B, correct; subclasses override one gradient."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a @ b

    @staticmethod
    def grads(g, a, b):
        return g @ b.T, a.T @ g

    @classmethod
    def backward(cls, ctx, grad):
        a, b = ctx.saved_tensors
        return cls.grads(grad, a, b)


class MatMulTransposedA(MatMul):
    @staticmethod
    def grads(g, a, b):
        return g @ b, a.T @ g  # BUG: g @ b.T


class MatMulTransposedB(MatMul):
    @staticmethod
    def grads(g, a, b):
        return g @ b.T, a @ g  # BUG: a.T @ g


class MatMulIgnoresGrad(MatMul):
    @staticmethod
    def grads(g, a, b):
        ones = torch.ones_like(g)
        return ones @ b.T, a.T @ ones  # BUG: ones instead of g


class MatMulScaled1e5(MatMul):
    @staticmethod
    def grads(g, a, b):
        return g @ b.T * (1 + 1e-5), a.T @ g * (1 + 1e-5)  # BUG: 0.001 % too large


class MatVecTransposed(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w, v):
        ctx.save_for_backward(w, v)
        return w @ v

    @staticmethod
    def backward(ctx, grad):
        w, v = ctx.saved_tensors
        return torch.outer(grad, v), w @ grad  # BUG: w.T @ grad


class Linear(torch.autograd.Function):
    """x @ W.T + b, correct; subclasses override one gradient."""

    @staticmethod
    def forward(ctx, x, w, b):
        ctx.save_for_backward(x, w)
        return x @ w.T + b

    @staticmethod
    def grads(g, x, w):
        return g @ w, g.T @ x, g.sum(dim=0)

    @classmethod
    def backward(cls, ctx, grad):
        x, w = ctx.saved_tensors
        return cls.grads(grad, x, w)


class LinearNegatedX(Linear):
    @staticmethod
    def grads(g, x, w):
        return -(g @ w), g.T @ x, g.sum(dim=0)  # BUG: wrong sign


class LinearTransposedX(Linear):
    @staticmethod
    def grads(g, x, w):
        return g @ w.T, g.T @ x, g.sum(dim=0)  # BUG: g @ w


class LinearWeightScaled1e3(Linear):
    @staticmethod
    def grads(g, x, w):
        return g @ w, (g.T @ x) * (1 + 1e-3), g.sum(dim=0)  # BUG: 0.1 % too large


class LinearOneElementOff(Linear):
    @staticmethod
    def grads(g, x, w):
        gx = g @ w
        gx[1, 2] *= 1 + 1e-3  # BUG: one element off by 0.1 %
        return gx, g.T @ x, g.sum(dim=0)


class LinearNoneForBias(Linear):
    @staticmethod
    def grads(g, x, w):
        return g @ w, g.T @ x, None  # BUG: the bias gets no gradient


class QuadraticForm(torch.autograd.Function):
    """x^T A x for a non-symmetric A."""

    @staticmethod
    def forward(ctx, x, a):
        ctx.save_for_backward(x, a)
        return x @ a @ x

    @staticmethod
    def backward(ctx, grad):
        x, a = ctx.saved_tensors
        # BUG: d/dx x^T A x = (A + A^T) x; the A^T x term of the product rule is missing
        return grad * (a @ x), grad * torch.outer(x, x)


def matmul_transposed_grad_a(A, B):
    return MatMulTransposedA.apply(A, B)


def matmul_transposed_grad_b(A, B):
    return MatMulTransposedB.apply(A, B).sum()


def matmul_ignores_grad_output_in_loss(A, B):
    return torch.tanh(MatMulIgnoresGrad.apply(A, B)).pow(2).sum()


def matmul_scaled_1e5(A, B):
    return torch.sin(MatMulScaled1e5.apply(A, B)).sum()


def matvec_transposed(W, v):
    return MatVecTransposed.apply(W, v)


def linear_negated_x(x, W, b):
    return LinearNegatedX.apply(x, W, b)


def linear_transposed_x(x, W, b):
    return LinearTransposedX.apply(x, W, b).pow(2).mean()


def linear_weight_scaled_1e3(x, W, b):
    return LinearWeightScaled1e3.apply(x, W, b).pow(2).mean()


def linear_one_element_off(x, W, b):
    return torch.tanh(LinearOneElementOff.apply(x, W, b)).sum()


def linear_none_for_bias(x, W, b):
    return LinearNoneForBias.apply(x, W, b)


def quadratic_form_missing_term(x, A):
    return QuadraticForm.apply(x, A)
