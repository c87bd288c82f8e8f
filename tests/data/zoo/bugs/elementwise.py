"""PLANTED BUGS: elementwise custom torch.autograd.Functions, one wrong backward each.

Every Function's forward is right; the line marked BUG in its backward is the planted mistake.
The case files in this folder give the correct math as `output:`.
"""

import torch


def unary(name, forward, vjp):
    """A Function y = forward(x) whose backward returns vjp(grad_output, x, y)."""

    def fwd(ctx, x):
        y = forward(x)
        ctx.save_for_backward(x, y)
        return y

    def bwd(ctx, grad):
        x, y = ctx.saved_tensors
        return vjp(grad, x, y)

    return type(name, (torch.autograd.Function,),
                {"forward": staticmethod(fwd), "backward": staticmethod(bwd)})


# -- wrong sign ------------------------------------------------------------------------------
SinNegated = unary("SinNegated", torch.sin,
                   lambda g, x, y: -g * torch.cos(x))  # BUG: d sin = +cos
TanhNegated = unary("TanhNegated", torch.tanh,
                    lambda g, x, y: g * (y * y - 1))  # BUG: 1 - y², not y² - 1
ExpNegated = unary("ExpNegated", torch.exp,
                   lambda g, x, y: -g * y)  # BUG: d exp = +exp


def sin_wrong_sign(x):
    return SinNegated.apply(x)


def tanh_wrong_sign(x):
    return TanhNegated.apply(x).sum()


def exp_wrong_sign_in_loss(x):
    return torch.log(ExpNegated.apply(x).sum())


# -- missing factor --------------------------------------------------------------------------
SquareNoTwo = unary("SquareNoTwo", lambda x: x * x,
                    lambda g, x, y: g * x)  # BUG: 2x, not x
CubeNoThree = unary("CubeNoThree", lambda x: x**3,
                    lambda g, x, y: g * x * x)  # BUG: 3x², not x²
ExpTwoXNoChain = unary("ExpTwoXNoChain", lambda x: torch.exp(2 * x),
                       lambda g, x, y: g * y)  # BUG: chain rule drops the inner 2
SqrtNoHalf = unary("SqrtNoHalf", torch.sqrt,
                   lambda g, x, y: g / y)  # BUG: 1 / (2 sqrt x), not 1 / sqrt x


def square_missing_two(x):
    return SquareNoTwo.apply(x).sum()


def cube_missing_three(x):
    return CubeNoThree.apply(x)


def exp_2x_missing_chain_factor(x):
    return ExpTwoXNoChain.apply(x).mean()


def sqrt_missing_half(x):
    return SqrtNoHalf.apply(x).sum()


# -- missing product-rule term ---------------------------------------------------------------
XSinX = unary("XSinX", lambda x: x * torch.sin(x),
              lambda g, x, y: g * x * torch.cos(x))  # BUG: + sin x missing
XLogX = unary("XLogX", lambda x: x * torch.log(x),
              lambda g, x, y: g * torch.log(x))  # BUG: + 1 missing
XExpX = unary("XExpX", lambda x: x * torch.exp(x),
              lambda g, x, y: g * x * torch.exp(x))  # BUG: + exp x missing
Swish = unary("Swish", lambda x: x * torch.sigmoid(x),
              lambda g, x, y: g * x * torch.sigmoid(x) * (1 - torch.sigmoid(x)))  # BUG: + s missing
XTanhX = unary("XTanhX", lambda x: x * torch.tanh(x),
               lambda g, x, y: g * torch.tanh(x))  # BUG: + x (1 - tanh²) missing


def x_sin_x_missing_term(x):
    return XSinX.apply(x).sum()


def x_log_x_missing_term(x):
    return XLogX.apply(x).sum()


def x_exp_x_missing_term(x):
    return XExpX.apply(x)


def swish_missing_term(x):
    return Swish.apply(x).sum()


def x_tanh_x_missing_term(x):
    return XTanhX.apply(x).sum()


# -- ignored grad_output ---------------------------------------------------------------------
SigmoidNoGrad = unary("SigmoidNoGrad", torch.sigmoid,
                      lambda g, x, y: y * (1 - y))  # BUG: not multiplied by g
ExpNoGrad = unary("ExpNoGrad", torch.exp,
                  lambda g, x, y: y)  # BUG: not multiplied by g
SinNoGrad = unary("SinNoGrad", torch.sin,
                  lambda g, x, y: torch.cos(x))  # BUG: not multiplied by g


def sigmoid_ignores_grad_output(x):
    """A tensor output: each Jacobian row is probed with a one-hot cotangent."""
    return SigmoidNoGrad.apply(x)


def exp_ignores_grad_output_in_loss(x):
    """exp feeding further computation: the incoming gradient is 2·exp(x), not 1."""
    return (ExpNoGrad.apply(x) ** 2).sum()


def sin_ignores_grad_output_projected(x):
    """25 outputs: probed with random cotangents."""
    return SinNoGrad.apply(x)


# -- scaled everywhere -----------------------------------------------------------------------
TanhScaled1e3 = unary("TanhScaled1e3", torch.tanh,
                      lambda g, x, y: g * (1 - y * y) * (1 + 1e-3))  # BUG: 0.1 % too large
ExpScaled1e5 = unary("ExpScaled1e5", torch.exp,
                     lambda g, x, y: g * y * (1 + 1e-5))  # BUG: 0.001 % too large
SinScaled1e5 = unary("SinScaled1e5", torch.sin,
                     lambda g, x, y: g * torch.cos(x) * (1 - 1e-5))  # BUG: 0.001 % too small


def tanh_scaled_1e3(x):
    return TanhScaled1e3.apply(x).sum()


def exp_scaled_1e5(x):
    return ExpScaled1e5.apply(x).sum()


def sin_scaled_1e5(x):
    return SinScaled1e5.apply(x)


# -- one element off -------------------------------------------------------------------------
def _one_element(t, index, factor):
    t = t.clone()
    t.view(-1)[index] *= factor
    return t


SinOneOff = unary("SinOneOff", torch.sin,
                  lambda g, x, y: _one_element(g * torch.cos(x), 3, 1 + 1e-3))  # BUG: element 3
SquareOneOff = unary("SquareOneOff", lambda x: x * x,
                     lambda g, x, y: _one_element(2 * g * x, 7, 1 - 1e-3))  # BUG: element 7


def sin_one_element_off(x):
    return SinOneOff.apply(x).sum()


def square_one_element_off(x):
    return SquareOneOff.apply(x).sum()


# -- NaN in the gradient ---------------------------------------------------------------------
SigmoidUnstable = unary(
    "SigmoidUnstable", torch.sigmoid,
    # BUG: recomputed as exp(-x) / (1 + exp(-x))², which is inf / inf = NaN for x < -710
    lambda g, x, y: g * torch.exp(-x) / (1 + torch.exp(-x)) ** 2)
LogNan = unary(
    "LogNan", torch.log,
    # BUG: 1 / x written as exp(-log x) · x² / x²: inf / inf = NaN where x² overflows
    lambda g, x, y: g * torch.exp(-y) * (x * x) / (x * x))


def sigmoid_backward_nan(x):
    return SigmoidUnstable.apply(x).sum()


def log_backward_nan_at_large_x(x):
    return LogNan.apply(x).sum()


# -- None for an input that matters ----------------------------------------------------------
class MulNoneForY(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y):
        ctx.save_for_backward(x, y)
        return x * y

    @staticmethod
    def backward(ctx, grad):
        x, y = ctx.saved_tensors
        return grad * y, None  # BUG: y gets no gradient


class DivNoneForDenominator(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y):
        ctx.save_for_backward(x, y)
        return x / y

    @staticmethod
    def backward(ctx, grad):
        x, y = ctx.saved_tensors
        return grad / y, None  # BUG: the denominator gets no gradient


class DivWrongSign(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y):
        ctx.save_for_backward(x, y)
        return x / y

    @staticmethod
    def backward(ctx, grad):
        x, y = ctx.saved_tensors
        return grad / y, grad * x / (y * y)  # BUG: d(x/y)/dy = -x/y²


def mul_none_for_y(x, y):
    return MulNoneForY.apply(x, y).sum()


def div_none_for_denominator(x, y):
    return DivNoneForDenominator.apply(x, y)


def div_wrong_sign_for_denominator(x, y):
    return DivWrongSign.apply(x, y).sum()


# -- the gradient returned transposed ---------------------------------------------------------
SinTransposed = unary("SinTransposed", torch.sin,
                      lambda g, x, y: (g * torch.cos(x)).T)  # BUG: rows and columns swapped


def sin_gradient_transposed(x):
    return SinTransposed.apply(x)
