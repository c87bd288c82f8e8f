"""Tolerances: one table keyed by dtype, merged with a case's override in one function.

Two values agree when |a - b| <= bound_a + bound_b, each oracle contributing its own error
bound. For a dtype the bound is ``atol + rtol·|reference|`` with rtol = sqrt(eps): about half
the dtype's digits, the usual allowance for rounding accumulated through a computation. atol
is the larger of rtol × the largest reference element (an element wrong relative to its
neighbours fails) and a few ulps of the terms that element is computed from (an exact gradient
of 1e-17 that autograd computes as 1 - 1 = 0 is rounding, not a bug). The output's magnitude
never enters a gradient's bound: a large loss must not hide a wrong small gradient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gradcheck_lab.casefile import Tolerance
from gradcheck_lab.dtypes import EPSILON, SMALLEST_NORMAL

# Below a dtype's smallest normal number, numbers are spaced SMALLEST_NORMAL × eps apart
# (subnormals), and smaller values underflow: an exact 3e-70 is 0 in float32. That spacing, a
# few times over, is the absolute floor of a bound.
__all__ = ["EPSILON", "SMALLEST_NORMAL", "ToleranceRule", "default_rtol", "gradient_scale",
           "gradient_scales", "rule_for", "symbolic_rule"]
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
    term_ulps: float = TERM_ULPS  # 0 for a value rounded once from an exact one
    # The case's nondet_tol: a backward that differs run to run by this much (atomic adds,
    # a randomized kernel) is allowed that much against every other oracle too.
    nondet: float = 0.0

    def bound(self, reference: np.ndarray, scale: float | np.ndarray,
              terms: float | np.ndarray = 0.0) -> np.ndarray:
        return self.absolute(scale, terms) + self.rtol * np.abs(reference)

    def bound_of_magnitude(self, magnitude: np.ndarray, scale: float | np.ndarray,
                           terms: float | np.ndarray = 0.0) -> np.ndarray:
        """``bound`` from |reference|, already taken (the comparison's two bounds share it):
        a new array of ``magnitude``'s shape, computed in place."""
        bound = np.multiply(magnitude, self.rtol)
        bound += self.absolute(scale, terms)
        return bound

    def flushed(self, reference: np.ndarray, other: np.ndarray) -> np.ndarray:
        """Where ``other`` is exactly 0 and the reference lies below the dtype's smallest
        normal number: a kernel that flushes subnormal results to zero (GPUs do, and CPUs
        with flush-to-zero set), not a bug. Anything else subnormal is compared as usual."""
        zero = np.asarray(other) == 0
        if self.atol is not None or self.term_ulps == 0 or not zero.any():
            return np.zeros(np.shape(reference), dtype=bool)
        with np.errstate(invalid="ignore"):
            return zero & (np.abs(reference) < SMALLEST_NORMAL[self.dtype]) & (
                np.asarray(reference) != 0)

    def absolute(self, scale: float | np.ndarray,
                 terms: float | np.ndarray = 0.0) -> np.ndarray:
        """rtol × scale, or the rounding of the terms (``terms``: their |sum|, elementwise or
        one number) where that is larger; a case's own atol replaces both. ``scale`` may be a
        column, one scale per row of ``terms`` (a row per probe)."""
        if self.atol is not None:
            return np.maximum(np.asarray(self.atol), self.nondet)
        with np.errstate(all="ignore"):
            rounding = self.term_ulps * EPSILON[self.dtype] * np.asarray(terms, dtype=np.float64)
        underflow = self.term_ulps * SMALLEST_NORMAL[self.dtype] * EPSILON[self.dtype]
        return np.maximum(np.maximum(np.maximum(self.rtol * scale, underflow), self.nondet),
                          np.where(np.isfinite(rounding), rounding, 0.0))

    def describe(self) -> str:
        atol = (f"atol = {self.atol:g}" if self.atol is not None
                else "atol = rtol × scale of the terms")
        text = f"rtol = {self.rtol:.3g}, {atol} ({self.source})"
        if self.nondet:
            text += f"; atol at least nondet_tol = {self.nondet:g}"
        if self.atol is None and self.term_ulps and self.dtype != "float64":
            text += (f"; a value below {self.dtype}'s smallest normal "
                     f"({SMALLEST_NORMAL[self.dtype]:.3g}) flushed to 0 agrees")
        return text


def default_rtol(dtype: str) -> float:
    return math.sqrt(EPSILON[dtype])


def rule_for(dtype: str, override: Tolerance | None = None,
             source: str | None = None, nondet: float | None = None) -> ToleranceRule:
    """The dtype's derived rule, with a case's ``tolerance:`` override merged in; ``source``
    says why this dtype, when it is not the case's; ``nondet``: the case's nondet_tol."""
    rtol = default_rtol(dtype)
    if override is None or (override.rtol is None and override.atol is None):
        return ToleranceRule(dtype, rtol, None, source or f"derived: sqrt(eps) of {dtype}",
                             nondet=nondet or 0.0)
    return ToleranceRule(
        dtype,
        override.rtol if override.rtol is not None else rtol,
        override.atol,
        "case override" + ("" if override.rtol is not None else f", rtol derived for {dtype}"),
        nondet=nondet or 0.0,
    )


def symbolic_rule(exact: bool, screened: bool = False) -> ToleranceRule:
    """The symbolic oracle's own bound: rounding of an exact value, or a float64 sweep; a
    screening sweep (``Gradients.screened``) only its round-off, TERM_ULPS ulps of the terms
    each element is computed from, so that a screen passes only what the exact oracle would
    (an element off by more is handed to the exact oracle, never passed)."""
    if exact:
        return ToleranceRule("float64", EXACT_RTOL, None, "exact, rounded once to float64",
                             term_ulps=0.0)
    if screened:
        return ToleranceRule("float64", EXACT_RTOL, None,
                             f"rule sweep in float64: {TERM_ULPS} ulps of its terms")
    return ToleranceRule("float64", default_rtol("float64"), None,
                         "rule sweep in float64: sqrt(eps)")


def gradient_scale(reference: np.ndarray) -> float:
    """The largest finite |element| of a reference gradient, for the rtol × scale part of atol."""
    finite = np.abs(reference[np.isfinite(reference)])
    largest = float(finite.max()) if finite.size else 0.0
    return max(largest, np.finfo(np.float64).tiny)


def gradient_scales(references: np.ndarray) -> np.ndarray:
    """``gradient_scale`` of each row of ``references`` (one reference gradient per row)."""
    magnitudes = np.where(np.isfinite(references), np.abs(references), 0.0)
    return np.maximum(magnitudes.max(axis=1, initial=0.0), np.finfo(np.float64).tiny)
