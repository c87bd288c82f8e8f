"""The factory of elementwise ops: one scalar sympy form, from which sympy derives the
derivative rule, beside a numpy and a torch form; broadcasting and its VJP (summing back)
shared. ``ops.elementwise`` (arithmetic and the math functions) and ``ops.activations`` are
lists of its entries.

Keyword values (``softplus(x, beta=2.0)``) reach every form: the scalar sympy form gets them
as exact numbers (a float keyword as the Fraction of its binary value), the numpy and torch
forms as they were written, and the derived rule is cached per op and keyword values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from gradcheck_lab.ops.base import (
    ArgInfo,
    FoldRule,
    Op,
    Param,
    Params,
    Shape,
    broadcast_shapes,
    elementwise_sympy,
    torch_module,
    unbroadcast,
)
from gradcheck_lab.ops.derivatives import exact_keywords

SympyForm = Callable[..., Any]


def elementwise(
    name: str,
    arity: int,
    sympy_form: SympyForm,
    numpy_forward: Callable[..., np.ndarray],
    torch_forward: Callable[..., Any],
    *,
    params: tuple[Param, ...] = (),
    callable_: bool = True,
    infix: str | None = None,
    kinks: Callable[..., np.ndarray] | None = None,
    kink_where: str = "at 0",
    limits: Callable[..., None] | None = None,
    derivative_terms: Callable[..., np.ndarray] | None = None,
    fold: FoldRule | None = None,
    exact_limit: Callable[[Sequence[ArgInfo]], str | None] | None = None,
    flat_at_zero: bool = False,
    smooth_range: tuple[float, float] = (-2.0, 2.0),
    torch_scalar_args: frozenset[int] = frozenset(),
    check: Callable[[Params], None] | None = None,
    group: str | None = None,
    doc: str = "",
) -> Op:
    """An elementwise op whose derivative rule sympy derives from ``sympy_form(sympy, *s,
    **keywords)``; ``numpy_forward(*arrays, **keywords)``, ``torch_forward(torch, *tensors,
    **keywords)`` and ``kinks(*arrays, **keywords)`` take the same keywords.

    ``limits(position, local, args)`` patches elements where the derived formula is an
    indeterminate form but the derivative has a well-defined limit (0 ** b for pow).
    ``derivative_terms(*args, **keywords)``: the sum of |terms| a backward computes f'(x)
    from, where that is larger than |f'(x)|: torch's sigmoid' is y·(1 - y), 0 at y = 1
    where the exact value is 4e-18, and its rounding is relative to y, not to the result.
    ``check(keywords)`` refuses keyword values the op cannot take (a SpecError), when the
    case is loaded.
    """

    def vjp(g: np.ndarray, args: Sequence[np.ndarray], out: np.ndarray, params: Params,
            needs: Sequence[bool]) -> list[np.ndarray | None]:
        return _chain_rule(op, g, args, needs, params, limits, None)

    def vjp_magnitude(g: np.ndarray, args: Sequence[np.ndarray], out: np.ndarray,
                      params: Params, needs: Sequence[bool]) -> list[np.ndarray | None]:
        return _chain_rule(op, g, args, needs, params, limits, derivative_terms or _no_terms)

    def symbolic(args: Sequence[np.ndarray], params: Params) -> np.ndarray:
        import sympy

        exact = exact_keywords(params)
        return elementwise_sympy(lambda *s: sympy_form(sympy, *s, **exact))(*args)

    def forward(args: Sequence[np.ndarray], params: Params) -> np.ndarray:
        with np.errstate(all="ignore"):
            return np.asarray(numpy_forward(*args, **params), dtype=np.float64)

    def shape(args: Sequence[ArgInfo], params: Params) -> Shape:
        if check is not None:
            check(params)
        return broadcast_shapes(*(a.shape for a in args))

    op = Op(
        name=name, min_args=arity, max_args=arity, shape=shape, params=params,
        torch=lambda args, p: torch_forward(torch_module(), *args, **p),
        numpy=forward, vjp=vjp, vjp_magnitude=vjp_magnitude, sympy=symbolic,
        kinks=(lambda args, p: kinks(*args, **p)) if kinks is not None else None,
        kink_where=kink_where, flat_at_zero=flat_at_zero, callable=callable_, infix=infix,
        scalar_form=sympy_form, fold=fold, exact_limit=exact_limit,
        arg_names=("x",) if arity == 1 else ("a", "b"),
        group=group or ("operator" if not callable_ else "elementwise"),
        smooth_range=smooth_range, torch_scalar_args=torch_scalar_args, doc=doc,
    )
    return op


def _no_terms(*args: np.ndarray, **keywords: Any) -> float:
    return 0.0


def _chain_rule(op: Op, g: np.ndarray, args: Sequence[np.ndarray], needs: Sequence[bool],
                params: Params, limits: Callable[..., None] | None,
                terms: Callable[..., np.ndarray | float] | None) -> list[np.ndarray | None]:
    """g times each needed partial derivative, summed back over broadcast dims. ``terms``
    given: the magnitude rule instead, |g| times the larger of |f'| and ``terms(*args)``."""
    grads: list[np.ndarray | None] = []
    rule = op.rule(params)
    for position, arg in enumerate(args):
        if not needs[position]:
            grads.append(None)
            continue
        local = rule.partial(position, *args)
        if limits is not None:
            limits(position, local, args)
        with np.errstate(all="ignore"):
            if terms is None:
                term = g * local
            else:
                term = np.abs(g) * np.maximum(np.abs(local), terms(*args, **params))
            grads.append(unbroadcast(term, np.shape(arg)))
    return grads
