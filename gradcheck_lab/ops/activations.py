"""Activation functions, spelled as in ``torch.nn.functional`` with torch's keywords and
defaults. Each is one ``ops.pointwise.elementwise`` entry: a scalar sympy form (sympy derives
the rule, keyword values taken exactly), a numpy forward that does not overflow where torch
does not, and the torch call. Where an activation switches formula (relu's 0, hardtanh's
bounds, softplus's threshold) the point of the switch is a kink, skipped as relu's is.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gradcheck_lab.errors import SpecError
from gradcheck_lab.ops.base import Param, Params, float_param
from gradcheck_lab.ops.derivatives import erf
from gradcheck_lab.ops.pointwise import elementwise

# torch's SELU constants (Klambauer et al. 2017), as torch writes them.
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
GELU_TANH_KAPPA = 0.044715


def _functional(name: str) -> Any:
    return lambda t, a, **keywords: getattr(t.nn.functional, name)(a, **keywords)


def _sigmoid(a: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return 0.5 * (1.0 + np.tanh(0.5 * a))


def _softplus_numpy(a: np.ndarray, beta: float, threshold: float) -> np.ndarray:
    # torch: x where beta·x > threshold, else log1p(exp(beta·x)) / beta.
    return np.where(a * beta > threshold, a, np.logaddexp(0.0, a * beta) / beta)


def _softplus_sympy(sp: Any, s: Any, beta: Any, threshold: Any) -> Any:
    return sp.Piecewise((s, beta * s > threshold), (sp.log(1 + sp.exp(beta * s)) / beta, True))


def _nonzero(name: str) -> Any:
    def check(params: Params) -> None:
        if params[name] == 0:
            raise SpecError(f"{name}= must not be 0")

    return check


def _gelu_numpy(a: np.ndarray, approximate: str) -> np.ndarray:
    if approximate == "tanh":
        inner = np.sqrt(2.0 / np.pi) * (a + GELU_TANH_KAPPA * a**3)
        return 0.5 * a * (1.0 + np.tanh(inner))
    return 0.5 * a * (1.0 + erf(a / np.sqrt(2.0)))


def _gelu_sympy(sp: Any, s: Any, approximate: str) -> Any:
    if approximate == "tanh":
        kappa = sp.Rational(GELU_TANH_KAPPA)  # the binary value torch holds
        return s / 2 * (1 + sp.tanh(sp.sqrt(2 / sp.pi) * (s + kappa * s**3)))
    return s / 2 * (1 + sp.erf(s / sp.sqrt(2)))


# What torch's backward sums where it computes f'(x) from terms that cancel (see
# ``derivative_terms`` in ops.pointwise): silu' = σ(x)·(1 + x·(1 - σ(x))) is near 0 at -1.28.
def _silu_terms(a: np.ndarray) -> np.ndarray:
    s = _sigmoid(a)
    return s * (1.0 + np.abs(a) * (1.0 - s))


def _gelu_terms(a: np.ndarray, approximate: str) -> np.ndarray:
    if approximate == "tanh":
        t = np.tanh(np.sqrt(2.0 / np.pi) * (a + GELU_TANH_KAPPA * a**3))
        slope = np.sqrt(2.0 / np.pi) * (1.0 + 3.0 * GELU_TANH_KAPPA * a**2)
        return 0.5 * np.abs(1.0 + t) + 0.5 * np.abs(a) * (1.0 - t**2) * slope
    cdf = 0.5 * (1.0 + erf(a / np.sqrt(2.0)))
    return cdf + np.abs(a) * np.exp(-0.5 * a**2) / np.sqrt(2.0 * np.pi)  # Φ + |x|·φ


def _mish_terms(a: np.ndarray) -> np.ndarray:
    t = np.tanh(np.logaddexp(0.0, a))
    return np.abs(t) + np.abs(a) * _sigmoid(a) * (1.0 - t**2)


def _hardtanh_check(params: Params) -> None:
    if float_param(params, "min_val") > float_param(params, "max_val"):
        raise SpecError("hardtanh(): min_val= must not exceed max_val=")


def _clip_sympy(sp: Any, s: Any, low: Any, high: Any) -> Any:
    return sp.Piecewise((low, s <= low), (high, s >= high), (s, True))


def _at(*points: float) -> Any:
    return lambda a, **keywords: np.isin(a, points)


_SLOPE = (Param("negative_slope", "float", default=0.01),)
_ALPHA = (Param("alpha", "float", default=1.0),)
_BOUNDS = (Param("min_val", "float", default=-1.0), Param("max_val", "float", default=1.0))

ACTIVATIONS = [
    elementwise(
        "softplus", 1, _softplus_sympy, _softplus_numpy, _functional("softplus"),
        params=(Param("beta", "float", default=1.0), Param("threshold", "float", default=20.0)),
        check=_nonzero("beta"),
        kinks=lambda a, beta, threshold: a * beta == threshold,
        kink_where="where beta·x = threshold (torch switches to x there)",
        group="activation", doc="log(1 + exp(beta·x)) / beta; x where beta·x > threshold"),
    elementwise(
        "gelu", 1, _gelu_sympy, _gelu_numpy, _functional("gelu"),
        params=(Param("approximate", "str", default="none", choices=("none", "tanh")),),
        derivative_terms=_gelu_terms, group="activation",
        doc='x·Φ(x); approximate="tanh" is the tanh form'),
    elementwise(
        "silu", 1, lambda sp, s: s / (1 + sp.exp(-s)), lambda a: a * _sigmoid(a),
        _functional("silu"), derivative_terms=_silu_terms, group="activation",
        doc="x·sigmoid(x)"),
    elementwise(
        "mish", 1, lambda sp, s: s * sp.tanh(sp.log(1 + sp.exp(s))),
        lambda a: a * np.tanh(np.logaddexp(0.0, a)), _functional("mish"),
        derivative_terms=_mish_terms, group="activation", doc="x·tanh(softplus(x))"),
    elementwise(
        "elu", 1, lambda sp, s, alpha: sp.Piecewise((s, s > 0), (alpha * (sp.exp(s) - 1), True)),
        lambda a, alpha: np.where(a > 0, a, alpha * np.expm1(np.minimum(a, 0.0))),
        _functional("elu"), params=_ALPHA,
        kinks=lambda a, alpha: (a == 0) & (alpha != 1.0), kink_where="at 0 (alpha != 1)",
        group="activation", doc="x above 0, alpha·(exp(x) - 1) below"),
    elementwise(
        "selu", 1,
        lambda sp, s: sp.Rational(SELU_SCALE) * sp.Piecewise(
            (s, s > 0), (sp.Rational(SELU_ALPHA) * (sp.exp(s) - 1), True)),
        lambda a: SELU_SCALE * np.where(a > 0, a, SELU_ALPHA * np.expm1(np.minimum(a, 0.0))),
        _functional("selu"), kinks=lambda a: a == 0, group="activation",
        doc="scale·elu(x, alpha) with torch's fixed scale and alpha"),
    elementwise(
        "celu", 1,
        lambda sp, s, alpha: sp.Piecewise((s, s > 0), (alpha * (sp.exp(s / alpha) - 1), True)),
        lambda a, alpha: np.where(a > 0, a, alpha * np.expm1(np.minimum(a, 0.0) / alpha)),
        _functional("celu"), params=_ALPHA, check=_nonzero("alpha"), group="activation",
        doc="x above 0, alpha·(exp(x / alpha) - 1) below"),
    elementwise(
        "leaky_relu", 1,
        lambda sp, s, negative_slope: sp.Piecewise((s, s > 0), (negative_slope * s, True)),
        lambda a, negative_slope: np.where(a > 0, a, negative_slope * a),
        _functional("leaky_relu"), params=_SLOPE,
        kinks=lambda a, negative_slope: (a == 0) & (negative_slope != 1.0),
        group="activation", doc="x above 0, negative_slope·x below"),
    elementwise(
        "hardtanh", 1, lambda sp, s, min_val, max_val: _clip_sympy(sp, s, min_val, max_val),
        lambda a, min_val, max_val: np.clip(a, min_val, max_val), _functional("hardtanh"),
        params=_BOUNDS, check=_hardtanh_check,
        kinks=lambda a, min_val, max_val: (a == min_val) | (a == max_val),
        kink_where="at min_val and max_val", group="activation", zero_slope_is_flat=True,
        doc="x clipped to [min_val, max_val]"),
    elementwise(
        "relu6", 1, lambda sp, s: _clip_sympy(sp, s, 0, 6), lambda a: np.clip(a, 0.0, 6.0),
        _functional("relu6"), kinks=_at(0.0, 6.0), kink_where="at 0 and 6",
        flat_at_zero=True, zero_slope_is_flat=True, group="activation",
        doc="x clipped to [0, 6]"),
    elementwise(
        "hardsigmoid", 1,
        lambda sp, s: _clip_sympy(sp, s / 6 + sp.Rational(1, 2), 0, 1),
        lambda a: np.clip(a / 6.0 + 0.5, 0.0, 1.0),
        # Not F.hardsigmoid: its backward multiplies by 1/6 rounded to float32 even in
        # float64 (torch 2.13: 0.16666667163, 3e-8 off, twice float64's tolerance), and a
        # spec's lowering must not be what fails. relu6's backward is exact.
        lambda t, a: t.nn.functional.relu6(a + 3.0) / 6.0,
        kinks=_at(-3.0, 3.0), kink_where="at ±3", flat_at_zero=True, zero_slope_is_flat=True,
        smooth_range=(-2.5, 2.5), group="activation", doc="x / 6 + 1/2 clipped to [0, 1]"),
    elementwise(
        "hardswish", 1,
        lambda sp, s: sp.Piecewise((0, s <= -3), (s, s >= 3), (s * (s + 3) / 6, True)),
        lambda a: a * np.clip(a + 3.0, 0.0, 6.0) / 6.0, _functional("hardswish"),
        kinks=_at(-3.0, 3.0), kink_where="at ±3", smooth_range=(-2.5, 2.5),
        group="activation", doc="x·hardsigmoid(x)"),
    elementwise(
        "logsigmoid", 1, lambda sp, s: -sp.log(1 + sp.exp(-s)),
        lambda a: -np.logaddexp(0.0, -a), _functional("logsigmoid"), group="activation",
        doc="log(sigmoid(x))"),
    elementwise(
        "softsign", 1, lambda sp, s: s / (1 + sp.Abs(s)), lambda a: a / (1.0 + np.abs(a)),
        _functional("softsign"),
        # torch differentiates the quotient: 1/(1 + |x|) - |x|/(1 + |x|)².
        derivative_terms=lambda a: 1.0 / (1.0 + np.abs(a)) + np.abs(a) / (1.0 + np.abs(a)) ** 2,
        group="activation", doc="x / (1 + |x|)"),
    elementwise(
        "tanhshrink", 1, lambda sp, s: s - sp.tanh(s), lambda a: a - np.tanh(a),
        _functional("tanhshrink"),
        # torch computes 1 - (1 - tanh²): 1e-6 at x = 1e-3, from numbers near 1.
        derivative_terms=lambda a: 2.0 - np.tanh(a) ** 2,
        group="activation", doc="x - tanh(x)"),
]
