"""Each op's rules differentiated once more, for the symbolic oracle's second-order sweep.

Forward over reverse: along a tangent v of the inputs, every node gets its tangent (the JVP of
its op) and, in the reverse sweep, every adjoint g gets its tangent ġ (the derivative of the
op's VJP along v, g's own tangent included). Two rules per op:

* an elementwise op differentiates its sympy-derived partials once more (``derive_second``;
  the rules are ``ops.pointwise``'s): ġ_i = ġ·∂f/∂a_i + g·Σ_j ∂²f/∂a_i∂a_j·ȧ_j, summed back
  over broadcast dims;
* a structural op (matmul, softmax, conv, max_pool, ...) differentiates its closed-form numpy
  forward and VJP by a complex step: the arguments, adjoint and output move to x + i·h·ẋ and
  the derivative is the imaginary part over h. With h = 1e-30 nothing is subtracted, so the
  result is exact to rounding (the O(h²) truncation is below the smallest float), unlike a
  finite difference. The rules keep complex values complex for it (``base.as_float``,
  ``real_abs``, ``real_sign``); tests/test_second_order.py confirms every op's pair of
  rules against elementwise sympy.

A tangent of None is zero (an argument that does not depend on the differentiated inputs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

Tangents = Sequence[np.ndarray | None]
# (arguments, their tangents, output, params) -> the output's tangent
JvpRule = Callable[[Sequence[np.ndarray], Tangents, np.ndarray, dict], np.ndarray | None]
# (adjoint, its tangent, arguments, their tangents, output, params, needs) -> per argument
# (its adjoint contribution, that contribution's tangent), or None where it needs none
PairRule = Callable[[np.ndarray, np.ndarray | None, Sequence[np.ndarray], Tangents, np.ndarray,
                     dict, Sequence[bool]],
                    list[tuple[np.ndarray, np.ndarray | None] | None]]
VjpRule = Callable[..., list]
NumpyForm = Callable[[Sequence[np.ndarray], dict], np.ndarray]

# The complex step: small enough that the O(h²) error vanishes below float64's resolution of
# the real part, large enough that h × (a tangent scaled to at most 1) × (any derivative
# above 1e-270) stays a normal number.
STEP = 1e-30


def _scale(*tangents: np.ndarray | None) -> float:
    """The largest |element| of the tangents, so that every step is STEP × at most 1."""
    largest = max((float(np.max(np.abs(t))) for t in tangents if t is not None and t.size),
                  default=0.0)
    return largest if np.isfinite(largest) and largest > 0 else 1.0


def _stepped(values: Sequence[np.ndarray], tangents: Tangents,
             scale: float) -> list[np.ndarray]:
    """values + i·STEP·tangent/scale: the tangent brought to at most 1 first, so that neither
    a huge tangent (exp(700)'s) nor the step underflows or overflows."""
    return [np.asarray(v) if t is None
            else np.asarray(v, dtype=np.float64) + 1j * STEP * (t / scale)
            for v, t in zip(values, tangents, strict=True)]


def _derivative(stepped: np.ndarray, scale: float) -> np.ndarray:
    """The derivative along the tangent from a result at the complex step."""
    return (np.imag(stepped) / STEP) * scale


def complex_step_jvp(numpy_form: NumpyForm) -> JvpRule:
    """A structural op's JVP: its numpy forward at a + i·h·ȧ."""

    def jvp(args: Sequence[np.ndarray], tangents: Tangents, out: np.ndarray,
            params: dict) -> np.ndarray | None:
        if all(t is None for t in tangents):
            return None
        scale = _scale(*tangents)
        return _derivative(numpy_form(_stepped(args, tangents, scale), params), scale)

    return jvp


def complex_step_pairs(numpy_form: NumpyForm, vjp: VjpRule) -> PairRule:
    """A structural op's VJP and its tangent: the VJP at (g + i·h·ġ, a + i·h·ȧ) with the
    output recomputed there (so that a rule that compares the output with its arguments,
    max's selection, sees exactly the numbers it was computed from)."""

    def pairs(g: np.ndarray, g_dot: np.ndarray | None, args: Sequence[np.ndarray],
              tangents: Tangents, out: np.ndarray, params: dict,
              needs: Sequence[bool]) -> list[tuple[np.ndarray, np.ndarray | None] | None]:
        if g_dot is None and all(t is None for t in tangents):
            return [None if grad is None else (grad, None)
                    for grad in vjp(g, args, out, params, needs)]
        scale = _scale(g_dot, *tangents)
        stepped = _stepped(args, tangents, scale)
        stepped_out = numpy_form(stepped, params) if any(t is not None for t in tangents) \
            else out
        (stepped_g,) = _stepped([g], [g_dot], scale)
        grads = vjp(stepped_g, stepped, stepped_out, params, needs)
        return [None if grad is None else
                (np.real(grad).astype(np.float64), _derivative(grad, scale))
                for grad in grads]

    return pairs
