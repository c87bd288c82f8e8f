"""Declared surrogate gradients (``surrogate:``): straight-through estimators, gradient
reversal and scaling compute on purpose a backward that is not the forward's derivative.

For those inputs the symbolic oracle's VJP is the declared expression, evaluated at the point
with ``grad_output`` the probe's cotangent (exactly, with the exact oracle: rationals, rounded
once), so that symbolic vs autograd checks the intent; finite differences, which can only
see the forward's true derivative, are left out for them and check the forward's values.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from gradcheck_lab.casefile.calling import GRAD_OUTPUT
from gradcheck_lab.ops.base import object_array
from gradcheck_lab.ops.derivatives import sympy_to_float
from gradcheck_lab.oracles.contract import Gradients
from gradcheck_lab.oracles.symbolic import exact_rational
from gradcheck_lab.program import Program
from gradcheck_lab.program.interpret import NUMPY, SYMPY, input_values, interpret
from gradcheck_lab.subject.points import Point
from gradcheck_lab.subject.probes import Probe


def declared(program: Program, point: Point, cotangent: np.ndarray, exact: bool) -> np.ndarray:
    """The surrogate VJP at ``point`` for one cotangent, float64."""
    values = {**point.values, GRAD_OUTPUT: np.asarray(cotangent, dtype=np.float64)}
    if not exact:
        env = interpret(program, input_values(program, values), [program.output], NUMPY)
        return np.asarray(env[program.output], dtype=np.float64)
    import sympy

    def rational(array: np.ndarray) -> np.ndarray:
        if array.dtype.kind in "iub":
            return array
        flat = [exact_rational(float(v)) for v in np.asarray(array).reshape(-1)]
        return object_array(np.array(flat, dtype=object).reshape(np.shape(array)))

    env = interpret(program, input_values(program, {k: rational(np.asarray(v))
                                                    for k, v in values.items()}),
                    [program.output], SYMPY)
    out = np.asarray(env[program.output], dtype=object)
    # safe: the interpreter's sympy objects and numbers, never text; strict refuses strings.
    return np.array([sympy_to_float(sympy.sympify(v, strict=True)) for v in out.reshape(-1)],
                    dtype=np.float64).reshape(out.shape)


def with_surrogates(symbolic: Gradients, surrogates: Mapping[str, Program], point: Point,
                    probes: tuple[Probe, ...]) -> Gradients:
    """The symbolic oracle's gradients with each declared input's VJP replaced by its
    surrogate, and a note saying so."""
    if not surrogates:
        return symbolic
    per_probe = []
    magnitudes = []
    for k, probe in enumerate(probes):
        grads = dict(symbolic.per_probe[k])
        terms = dict(symbolic.term_magnitudes[k]) if symbolic.term_magnitudes else {}
        for name, program in surrogates.items():
            grads[name] = declared(program, point, probe.cotangent, symbolic.exact)
            terms[name] = np.abs(grads[name])  # one rounding of the declared value
        per_probe.append(grads)
        magnitudes.append(terms)
    names = ", ".join(sorted(surrogates))
    note = (f"surrogate: the backward of {names} is checked against the declared surrogate "
            "gradient, not the forward's derivative; finite differences check the forward only "
            "there")
    return dataclasses.replace(symbolic, per_probe=tuple(per_probe),
                               term_magnitudes=tuple(magnitudes) if magnitudes else (),
                               notes=(*symbolic.notes, note))

