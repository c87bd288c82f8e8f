"""Tolerances: one table keyed by dtype, merged with a case's override in one function.

Two values agree when |a - b| <= bound_a + bound_b, each oracle contributing its own error
bound. For a dtype the bound is ``atol + rtol·|reference|`` with rtol = sqrt(eps): about half
the dtype's digits, the usual allowance for rounding accumulated through a computation. atol
is rtol times a scale of the terms involved (the largest reference element, or the output's
magnitude per unit of input), so an exact gradient of 1e-17 against an autograd 0 is not a
failure while an element that is wrong relative to its neighbours is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gradcheck_lab.casefile import Tolerance

EPSILON = {
    "float64": 2.0**-52,
    "float32": 2.0**-23,
    "float16": 2.0**-10,
    "bfloat16": 2.0**-7,
}
# The exact oracle's only error is the final rounding to float64.
EXACT_RTOL = 4 * EPSILON["float64"]
# A computed value carries the rounding of its largest intermediate, a few ulps per step:
# sum((x + 1e8) - 1e8) in float32 is 0, not 2, and that is float32's precision, not a bug.
TERM_ULPS = 16


@dataclass(frozen=True)
class ToleranceRule:
    """How far a value computed in ``dtype`` may be from the truth."""

    dtype: str
    rtol: float
    atol: float | None  # None: derived per comparison, rtol × scale
    source: str

    def bound(self, reference: np.ndarray, scale: float, terms: float = 0.0) -> np.ndarray:
        return self.absolute(scale, terms) + self.rtol * np.abs(reference)

    def absolute(self, scale: float, terms: float = 0.0) -> float:
        """rtol × scale, or the rounding of the largest term (``terms``) if that is larger;
        a case's own atol replaces both."""
        if self.atol is not None:
            return self.atol
        return max(self.rtol * scale, TERM_ULPS * EPSILON[self.dtype] * terms)

    def describe(self) -> str:
        atol = (f"atol = {self.atol:g}" if self.atol is not None
                else "atol = rtol × scale of the terms")
        return f"rtol = {self.rtol:.3g}, {atol} ({self.source})"


def default_rtol(dtype: str) -> float:
    return math.sqrt(EPSILON[dtype])


def rule_for(dtype: str, override: Tolerance | None = None) -> ToleranceRule:
    """The dtype's derived rule, with a case's ``tolerance:`` override merged in."""
    rtol = default_rtol(dtype)
    if override is None or (override.rtol is None and override.atol is None):
        return ToleranceRule(dtype, rtol, None, f"derived: sqrt(eps) of {dtype}")
    return ToleranceRule(
        dtype,
        override.rtol if override.rtol is not None else rtol,
        override.atol,
        "case override" + ("" if override.rtol is not None else f", rtol derived for {dtype}"),
    )


def symbolic_rule(exact: bool) -> ToleranceRule:
    """The symbolic oracle's own bound: rounding of an exact value, or a float64 sweep."""
    if exact:
        return ToleranceRule("float64", EXACT_RTOL, None, "exact, rounded once to float64")
    return ToleranceRule("float64", default_rtol("float64"), None,
                         "rule sweep in float64: sqrt(eps)")


def gradient_scale(reference: np.ndarray, output_magnitude: float, input_magnitude: float) -> float:
    """The size of the terms a gradient is made of, for the absolute part of a bound."""
    finite = np.abs(reference[np.isfinite(reference)])
    largest = float(finite.max()) if finite.size else 0.0
    per_input = output_magnitude / max(1.0, input_magnitude)
    if not np.isfinite(per_input):
        per_input = 0.0  # an infinite output is reported by the value check, not scaled in
    return max(largest, per_input, np.finfo(np.float64).tiny)
