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
    GIVEN,
    ArgInfo,
    FoldRule,
    Op,
    Param,
    Params,
    Shape,
    VjpRule,
    broadcast_shapes,
    elementwise_sympy,
    torch_module,
    unbroadcast,
    unbroadcast_probes,
)
from gradcheck_lab.ops.derivatives import (
    ElementwiseRule,
    SecondOrderRule,
    exact_keywords,
    shared_partial,
)
from gradcheck_lab.ops.second_order import JvpRule, PairRule, Tangents

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
    second_limits: Callable[..., None] | None = None,
    derivative_terms: Callable[..., np.ndarray] | None = None,
    fold: FoldRule | None = None,
    exact_limit: Callable[[Sequence[ArgInfo]], str | None] | None = None,
    flat_at_zero: bool = False,
    zero_slope_is_flat: bool = False,
    smooth_range: tuple[float, float] = (-2.0, 2.0),
    torch_scalar_args: frozenset[int] = frozenset(),
    check: Callable[[Params], None] | None = None,
    group: str | None = None,
    doc: str = "",
    returns: str = "real",
    bool_args: frozenset[int] = frozenset(),
    min_arity: int | None = None,
    arg_names: tuple[str, ...] | None = None,
) -> Op:
    """An elementwise op whose derivative rule sympy derives from ``sympy_form(sympy, *s,
    **keywords)``; ``numpy_forward(*arrays, **keywords)``, ``torch_forward(torch, *tensors,
    **keywords)`` and ``kinks(*arrays, **keywords)`` take the same keywords.

    ``limits(position, local, args)`` patches elements where the derived formula is an
    indeterminate form but the derivative has a well-defined limit (0 ** b for pow);
    ``second_limits(i, j, local, args)`` the same for the second partials.
    ``derivative_terms(*args, **keywords)``: the sum of |terms| a backward computes f'(x)
    from, where that is larger than |f'(x)|: torch's sigmoid' is y·(1 - y), 0 at y = 1
    where the exact value is 4e-18, and its rounding is relative to y, not to the result.
    ``check(keywords)`` refuses keyword values the op cannot take (a SpecError), when the
    case is loaded. ``zero_slope_is_flat``: a partial is exactly 0 only where the op does not
    depend on that argument near the point (clamp beyond a bound, the unselected side of
    maximum, a step), so an infinite cotangent there still gives 0 (pow's infinite slope at
    0 behind a clamp: the composite is constant), where a smooth op's isolated 0 (x² at 0)
    keeps 0·inf undefined.

    Integer and bool operands mix with real ones as torch promotes them (``returns``, see
    ``ops.base.RESULT_KINDS``); a "bool" op (a comparison) has no derivative at all; the
    ``bool_args`` positions take conditions. ``min_arity`` below ``arity``: the op takes the
    hidden ``GIVEN`` keyword, and its forms get only the arguments a call gave.
    """
    def shape(args: Sequence[ArgInfo], params: Params) -> Shape:
        if check is not None:
            check(params)
        return broadcast_shapes(*(a.shape for a in args))

    vjp, vjp_magnitude, probes_vjp = _vjp_rules(lambda params: op.rule(params),
                                                returns != "bool", limits, derivative_terms,
                                                zero_slope_is_flat)
    if min_arity is not None:
        params = (*params, Param(GIVEN, "dims", hidden=True))
    op = Op(
        name=name, min_args=arity if min_arity is None else min_arity, max_args=arity,
        shape=shape, params=params, returns=returns, bool_args=bool_args,
        integer_args=frozenset(range(arity)) - bool_args, nondifferentiable_args=bool_args,
        torch=lambda args, p: torch_forward(torch_module(), *args, **p),
        numpy=_numpy_form(numpy_forward, returns, bool_args), vjp=vjp,
        vjp_magnitude=vjp_magnitude, probes_vjp=probes_vjp,
        sympy=_sympy_form(sympy_form, bool_args),
        jvp=elementwise_jvp(lambda p: op.rule(p), limits) if returns != "bool" else _no_tangent,
        pairs=elementwise_pairs(lambda p: op.rule(p), lambda p: op.second_rule(p),
                                returns != "bool", limits, second_limits),
        kinks=(lambda args, p: kinks(*args, **p)) if kinks is not None else None,
        kink_where=kink_where, flat_at_zero=flat_at_zero, callable=callable_, infix=infix,
        scalar_form=sympy_form, fold=fold, exact_limit=exact_limit,
        arg_names=arg_names or (("input",) if arity == 1 else ("input", "other")),
        group=group or ("operator" if not callable_ else "elementwise"),
        smooth_range=smooth_range, torch_scalar_args=torch_scalar_args, doc=doc,
    )
    return op


def _vjp_rules(rule: Callable[[Params], ElementwiseRule], differentiable: bool,
               limits: Callable[..., None] | None,
               derivative_terms: Callable[..., np.ndarray] | None,
               zero_slope_is_flat: bool = False) -> tuple[VjpRule, VjpRule, VjpRule]:
    """The VJP, its magnitude rule, and the VJP of every probe at once (g with a leading
    probe axis), by the chain rule over the derived partials (a comparison has none: its
    arguments get no gradient through it)."""

    def vjp(g: np.ndarray, args: Sequence[np.ndarray], out: np.ndarray, params: Params,
            needs: Sequence[bool]) -> list[np.ndarray | None]:
        if not differentiable:
            return [None] * len(args)
        return _chain_rule(rule(params), g, args, needs, params, limits, None,
                           zero_slope_is_flat)

    def vjp_magnitude(g: np.ndarray, args: Sequence[np.ndarray], out: np.ndarray,
                      params: Params, needs: Sequence[bool]) -> list[np.ndarray | None]:
        if not differentiable:
            return [None] * len(args)
        return _chain_rule(rule(params), g, args, needs, params, limits,
                           derivative_terms or _no_terms, zero_slope_is_flat)

    def probes_vjp(g: np.ndarray, args: Sequence[np.ndarray], out: np.ndarray,
                   params: Params, needs: Sequence[bool]) -> list[np.ndarray | None]:
        if not differentiable:
            return [None] * len(args)
        return _chain_rule(rule(params), g, args, needs, params, limits, None,
                           zero_slope_is_flat, unbroadcast_probes)

    return vjp, vjp_magnitude, probes_vjp


def _sympy_form(sympy_form: SympyForm, bool_args: frozenset[int]) -> Callable[..., np.ndarray]:
    """The op over object arrays: conditions where it takes them, numbers elsewhere."""

    def symbolic(args: Sequence[np.ndarray], params: Params) -> np.ndarray:
        import sympy

        exact = exact_keywords(params)

        def scalar(*values: Any) -> Any:
            values = tuple(as_condition(v) if i in bool_args else as_number(v)
                           for i, v in enumerate(values))
            return sympy_form(sympy, *values, **exact)

        return elementwise_sympy(scalar)(*args)

    return symbolic


def _numpy_form(numpy_forward: Callable[..., np.ndarray], returns: str,
                bool_args: frozenset[int]) -> Callable[..., np.ndarray]:
    """The float64 forward; bool for a comparison, int64 where integers promote to one."""

    def forward(args: Sequence[np.ndarray], params: Params) -> np.ndarray:
        with np.errstate(all="ignore"):
            result = np.asarray(numpy_forward(*args, **params))
        if returns == "bool":
            return result.astype(bool)
        operands = [a for i, a in enumerate(args) if i not in bool_args]
        if returns == "promote" and all(np.asarray(a).dtype.kind in "biu" for a in operands):
            return result.astype(np.int64)
        return result.astype(np.float64)

    return forward


def as_number(value: Any) -> Any:
    """A condition where a number is wanted ((x > 0) * x): 1 where it holds, else 0, as torch
    promotes bool to a number."""
    import sympy
    from sympy.logic.boolalg import BooleanAtom, BooleanFunction

    if isinstance(value, (bool, np.bool_)):
        return sympy.Integer(int(value))
    if isinstance(value, (sympy.core.relational.Relational, BooleanFunction, BooleanAtom)):
        return sympy.Piecewise((1, value), (0, True))
    return value


def as_condition(value: Any) -> Any:
    """A bool, as sympy's true or false (numpy's bool_ is not a sympy Boolean)."""
    import sympy

    if isinstance(value, (bool, np.bool_)):
        return sympy.true if value else sympy.false
    return value


def _no_tangent(*args: Any) -> None:
    return None  # a comparison's value does not move with its arguments


def _no_terms(*args: np.ndarray, **keywords: Any) -> float:
    return 0.0


def _chain_rule(rule: ElementwiseRule, g: np.ndarray, args: Sequence[np.ndarray],
                needs: Sequence[bool], params: Params, limits: Callable[..., None] | None,
                terms: Callable[..., np.ndarray | float] | None,
                zero_slope_is_flat: bool = False,
                summed_to: Callable[[np.ndarray, Shape], np.ndarray] = unbroadcast,
                ) -> list[np.ndarray | None]:
    """g times each needed partial derivative, summed back over broadcast dims
    (``summed_to``: ``unbroadcast_probes`` where g has a leading probe axis). ``terms``
    given: the magnitude rule instead, |g| times the larger of |f'| and ``terms(*args)``."""
    grads: list[np.ndarray | None] = []
    for position, arg in enumerate(args):
        if not needs[position]:
            grads.append(None)
            continue
        local = _partial(rule, position, args, limits)
        with np.errstate(all="ignore"):
            if terms is None:
                term = g * local
            else:
                term = np.abs(g) * np.maximum(np.abs(local), terms(*args, **params))
            # Where the cotangent is exactly 0 nothing downstream reads the element: its
            # term is 0, even where the local slope is infinite (sqrt at 0 behind a clamp
            # that a gather then skips), not 0·inf.
            term = np.where(g == 0, 0.0, term)
            if zero_slope_is_flat:  # the op is constant in this argument here
                term = np.where(local == 0, 0.0, term)
            grads.append(summed_to(term, np.shape(arg)))
    return grads


def _partial(rule: ElementwiseRule, position: int, args: Sequence[np.ndarray],
             limits: Callable[..., None] | None) -> np.ndarray:
    """∂f/∂a_position over the arguments, with the op's limits patched in (read-only: shared
    by the sweeps of one point, ``one_point_partials``)."""
    return shared_partial(rule, position, args, limits)


def _second(rule: SecondOrderRule, i: int, j: int, args: Sequence[np.ndarray],
            limits: Callable[..., None] | None) -> np.ndarray:
    """∂²f/∂a_i∂a_j over the arguments, with the op's limits patched in."""
    local = rule.second(i, j, *args)
    if limits is not None:
        limits(i, j, local, args)
    return local


def elementwise_jvp(first: Callable[[dict], ElementwiseRule],
                    limits: Callable[..., None] | None) -> JvpRule:
    """Σ_j ∂f/∂a_j · ȧ_j, from the derived partials."""

    def jvp(args: Sequence[np.ndarray], tangents: Tangents, out: np.ndarray,
            params: dict) -> np.ndarray | None:
        terms = [_partial(first(params), j, args, limits) * t for j, t in enumerate(tangents)
                 if t is not None]
        if not terms:
            return None
        with np.errstate(all="ignore"):
            return np.broadcast_to(sum(terms[1:], terms[0]), np.shape(out)).copy()

    return jvp


def elementwise_pairs(first: Callable[[dict], ElementwiseRule],
                      second: Callable[[dict], SecondOrderRule], differentiable: bool,
                      limits: Callable[..., None] | None,
                      second_limits: Callable[..., None] | None) -> PairRule:
    """The op's VJP, g·∂f/∂a_i (limits and all, as ``_chain_rule`` gives it), beside its
    tangent ġ·∂f/∂a_i + g·Σ_j ∂²f/∂a_i∂a_j·ȧ_j, both summed back to each argument's shape;
    each first partial evaluated once for both."""

    def pairs(g: np.ndarray, g_dot: np.ndarray | None, args: Sequence[np.ndarray],
              tangents: Tangents, out: np.ndarray, params: dict,
              needs: Sequence[bool]) -> list[tuple[np.ndarray, np.ndarray | None] | None]:
        result: list[tuple[np.ndarray, np.ndarray | None] | None] = []
        for i, arg in enumerate(args):
            if not (differentiable and needs[i]):
                result.append(None)
                continue
            local = _partial(first(params), i, args, limits)
            with np.errstate(all="ignore"):
                grad = unbroadcast(g * local, np.shape(arg))
                terms = [g_dot * local] if g_dot is not None else []
                for j, t in enumerate(tangents):
                    if t is not None:
                        terms.append(g * _second(second(params), i, j, args, second_limits) * t)
            dot = (unbroadcast(np.broadcast_to(sum(terms[1:], terms[0]), np.shape(out)),
                               np.shape(arg)) if terms else None)
            result.append((grad, dot))
        return result

    return pairs
