"""Elementwise ops: arithmetic operators and the unary functions.

Each op is one entry: its scalar sympy form (from which sympy derives the derivative rule),
its numpy forward and its torch form. Broadcasting and its VJP (summing back) are shared.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from gradcheck_lab.ops.base import (
    ArgInfo,
    Op,
    Params,
    Shape,
    broadcast_shapes,
    elementwise_sympy,
    torch_module,
    unbroadcast,
)
from gradcheck_lab.ops.derivatives import derive

SympyForm = Callable[..., Any]


def _broadcast_rule(name: str) -> Callable[[Sequence[ArgInfo], Params], Shape]:
    def rule(args: Sequence[ArgInfo], params: Params) -> Shape:
        return broadcast_shapes(*(a.shape for a in args))

    return rule


def _elementwise(
    name: str,
    arity: int,
    sympy_form: SympyForm,
    numpy_forward: Callable[..., np.ndarray],
    torch_forward: Callable[..., Any],
    *,
    callable_: bool = True,
    infix: str | None = None,
    kinks: Callable[..., np.ndarray] | None = None,
    limits: Callable[..., None] | None = None,
    derivative_terms: Callable[..., np.ndarray] | None = None,
) -> Op:
    """An elementwise op whose derivative rule sympy derives from ``sympy_form``.

    ``limits(gradients, args)`` patches elements where the derived formula is an
    indeterminate form but the derivative has a well-defined limit (0 ** b for pow).
    ``derivative_terms(*args)``: the sum of |terms| a backward computes f'(x) from, where that
    is larger than |f'(x)|: torch's sigmoid' is y·(1 - y), 0 at y = 1 where the exact value
    is 4e-18, and its rounding is relative to y, not to the result.
    """

    def rule() -> Any:
        return derive(name, arity, sympy_form)

    def products(g: np.ndarray, args: Sequence[np.ndarray], needs: Sequence[bool],
                 magnitude: bool) -> list[np.ndarray | None]:
        grads: list[np.ndarray | None] = []
        for position, arg in enumerate(args):
            if not needs[position]:
                grads.append(None)
                continue
            local = rule().partial(position, *args)
            if limits is not None:
                limits(position, local, args)
            with np.errstate(all="ignore"):
                if magnitude:
                    size = np.abs(local)
                    if derivative_terms is not None:
                        size = np.maximum(size, derivative_terms(*args))
                    term = np.abs(g) * size
                else:
                    term = g * local
                grads.append(unbroadcast(term, np.shape(arg)))
        return grads

    def vjp(g: np.ndarray, args: Sequence[np.ndarray], out: np.ndarray, params: Params,
            needs: Sequence[bool]) -> list[np.ndarray | None]:
        return products(g, args, needs, magnitude=False)

    def vjp_magnitude(g: np.ndarray, args: Sequence[np.ndarray], out: np.ndarray,
                      params: Params, needs: Sequence[bool]) -> list[np.ndarray | None]:
        return products(g, args, needs, magnitude=True)

    def symbolic(args: Sequence[np.ndarray], params: Params) -> np.ndarray:
        import sympy

        return elementwise_sympy(lambda *s: sympy_form(sympy, *s))(*args)

    def forward(args: Sequence[np.ndarray], params: Params) -> np.ndarray:
        with np.errstate(all="ignore"):
            return np.asarray(numpy_forward(*args), dtype=np.float64)

    def kink_mask(args: Sequence[np.ndarray], params: Params) -> np.ndarray:
        assert kinks is not None
        return kinks(*args)

    return Op(
        name=name,
        min_args=arity,
        max_args=arity,
        shape=_broadcast_rule(name),
        torch=lambda args, params: torch_forward(torch_module(), *args),
        numpy=forward,
        vjp=vjp,
        vjp_magnitude=vjp_magnitude,
        sympy=symbolic,
        kinks=kink_mask if kinks is not None else None,
        callable=callable_,
        infix=infix,
        extra={"rule": rule, "sympy_form": sympy_form},
    )


def _stable_sigmoid(a: np.ndarray) -> np.ndarray:
    positive = a >= 0
    safe = np.where(positive, -a, a)  # exp never overflows
    e = np.exp(safe)
    return np.where(positive, 1.0 / (1.0 + e), e / (1.0 + e))


def _pow_limits(position: int, local: np.ndarray, args: Sequence[np.ndarray]) -> None:
    """Where sympy's form of a partial of a**b is 0/0 or 0·inf at a = 0, use its value there:
    ∂/∂a = b·a**b/a is 0/0, and b·a**(b-1) (torch's formula) is its value; ∂/∂b = a**b·log(a)
    is 0·(-inf), and for b > 0 its limit (and torch's value) is 0."""
    base, exponent = np.broadcast_arrays(*args)
    at_zero = base == 0
    if not at_zero.any():
        return
    if position == 0:
        with np.errstate(all="ignore"):
            local[at_zero] = (exponent * np.power(base, exponent - 1))[at_zero]
    else:
        local[at_zero & (exponent > 0)] = 0.0


OPERATORS = [
    _elementwise("add", 2, lambda sp, a, b: a + b, np.add, lambda t, a, b: a + b,
                 callable_=False, infix="+"),
    _elementwise("sub", 2, lambda sp, a, b: a - b, np.subtract, lambda t, a, b: a - b,
                 callable_=False, infix="-"),
    _elementwise("mul", 2, lambda sp, a, b: a * b, np.multiply, lambda t, a, b: a * b,
                 callable_=False, infix="*"),
    _elementwise("div", 2, lambda sp, a, b: a / b, np.divide, lambda t, a, b: a / b,
                 callable_=False, infix="/"),
    _elementwise("pow", 2, lambda sp, a, b: a**b, np.power, lambda t, a, b: t.pow(a, b),
                 callable_=False, infix="**", limits=_pow_limits),
    _elementwise("neg", 1, lambda sp, a: -a, np.negative, lambda t, a: -a,
                 callable_=False, infix="-"),
]

FUNCTIONS = [
    _elementwise("exp", 1, lambda sp, s: sp.exp(s), np.exp, lambda t, a: t.exp(a)),
    _elementwise("log", 1, lambda sp, s: sp.log(s), np.log, lambda t, a: t.log(a)),
    _elementwise("sqrt", 1, lambda sp, s: sp.sqrt(s), np.sqrt, lambda t, a: t.sqrt(a)),
    _elementwise("sin", 1, lambda sp, s: sp.sin(s), np.sin, lambda t, a: t.sin(a)),
    _elementwise("cos", 1, lambda sp, s: sp.cos(s), np.cos, lambda t, a: t.cos(a)),
    _elementwise("tan", 1, lambda sp, s: sp.tan(s), np.tan, lambda t, a: t.tan(a)),
    _elementwise("tanh", 1, lambda sp, s: sp.tanh(s), np.tanh, lambda t, a: t.tanh(a),
                 derivative_terms=lambda a: 1.0 + np.tanh(a) ** 2),  # 1 - y**2
    _elementwise("sigmoid", 1, lambda sp, s: 1 / (1 + sp.exp(-s)), _stable_sigmoid,
                 lambda t, a: t.sigmoid(a),
                 derivative_terms=lambda a: _stable_sigmoid(a) * (1.0 + _stable_sigmoid(a))),
    # relu as a Piecewise, not Max(0, s): sympy differentiates Max into Heaviside, whose
    # value at 0 is 1/2; the kink at 0 is reported instead of compared.
    _elementwise("relu", 1, lambda sp, s: sp.Piecewise((s, s > 0), (0, True)),
                 lambda a: np.maximum(a, 0.0), lambda t, a: t.relu(a),
                 kinks=lambda a: a == 0),
    _elementwise("abs", 1, lambda sp, s: sp.Abs(s), np.abs, lambda t, a: t.abs(a),
                 kinks=lambda a: a == 0),
]
