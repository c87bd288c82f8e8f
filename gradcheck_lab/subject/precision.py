"""How precisely does the function under test compute? Measured at the point, not assumed.

A Function whose forward computes in float32 inside float64 code (``x.float()`` ...
``.double()``: mixed precision, references for fused kernels) has a forward noise of about
float32's epsilon. Finite differences at float64's step (1e-6) are then swamped (an error of
0.1, not 1e-10), and its float32 backward differs from the exact gradient by more than
float64's tolerance, although nothing is wrong.

Two measurements must agree before a function counts as coarser than float64, because each
alone can be fooled:

1. its forward values against the spec's, computed in float64: a float32-inside forward
   differs from them by about float32's epsilon of its terms (so does a forward with a small
   bug, which is no noise: the second test tells them apart);
2. round-off, seen as noise: the fourth difference of f along seeded directions, each input
   moved by a few ulps, relative to itself, of the dtype the first test points to, with its
   h**4 growth cancelled between steps h and 2h (what a smooth function has), so that what is
   left is noise; a kink could fool this test, not the first.

The forward's precision is the finer of the two. Where it is coarser than the case's dtype,
the gradients' own noise is measured the same way, through the backward: a forward that
returns bfloat16 from a float64 backward does not loosen the gradient's tolerance.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from gradcheck_lab.dtypes import EPSILON, FINEST_FIRST
from gradcheck_lab.subject.points import Point

RELATIVE_STEP = 1e-6  # float64 central differences: truncation O(h²) against round-off O(eps/h)
EPS64 = EPSILON["float64"]
NOISE_ULPS = 2  # inputs moved by about this many ulps (of the dtype tested for) per step
NOISE_DIRECTIONS = 4
GRADIENT_DIRECTIONS = 2
_NOISE_STREAM = 6

Evaluate = Callable[[Mapping[str, np.ndarray]], np.ndarray]


@dataclass(frozen=True)
class Precision:
    """How precisely the function computes: its forward's relative round-off (per
    evaluation, relative to its term scale), the dtype that corresponds to, and the dtype its
    gradients were measured at (None: as the forward)."""

    noise: float
    dtype: str
    gradient_dtype: str | None = None
    evaluations: int = 0
    step: float | None = None  # the case's fd_step: the step given, not derived
    # The function at the point, flat, in float64, as the measurement evaluated it (the
    # centre finite differences move from, evaluated once for both), and the dtype the
    # function was called in then (an impl that refuses float64 is called in its own after);
    # None: not measured.
    center: np.ndarray | None = field(default=None, compare=False, repr=False)
    center_called_in: str | None = field(default=None, compare=False, repr=False)

    def center_for(self, called_in: str) -> np.ndarray | None:
        """The measured centre where the function is still called in the same dtype."""
        return self.center if self.center_called_in == called_in else None

    @property
    def epsilon(self) -> float:
        return EPSILON[self.dtype]

    @property
    def gradients(self) -> str:
        return self.gradient_dtype or self.dtype

    def coarser_than(self, dtype: str) -> bool:
        return self.epsilon > EPSILON[dtype]

    @property
    def relative_step(self) -> float:
        """The finite-difference step, relative to max(1, |x|): float64's 1e-6, or for a
        coarser function the central-difference optimum, noise^(1/3) (truncation h², against
        round-off noise/h); the case's ``fd_step`` where it gives one."""
        if self.step is not None:
            return self.step
        if self.dtype == "float64":
            return RELATIVE_STEP
        return max(RELATIVE_STEP, self.noise ** (1.0 / 3.0))

    @property
    def roundoff(self) -> float:
        """The relative round-off per evaluation that the error bars assume."""
        return EPS64 if self.dtype == "float64" else max(self.noise, EPS64)

    def describe(self) -> str:
        gradients = (f", its gradients at about {self.gradient_dtype}"
                     if self.gradient_dtype not in (None, self.dtype) else "")
        return (f"about {self.dtype} (forward round-off {self.noise:.2g} of its terms, "
                f"measured at the point){gradients}")


FLOAT64 = Precision(EPS64, "float64")


def classify(noise: float) -> str:
    """The dtype whose epsilon the noise matches: between two neighbouring epsilons, the
    boundary is their geometric mean."""
    for finer, coarser in itertools.pairwise(FINEST_FIRST):
        if noise <= math.sqrt(EPSILON[finer] * EPSILON[coarser]):
            return finer
    return FINEST_FIRST[-1]


def finer(first: str, second: str) -> str:
    return first if EPSILON[first] <= EPSILON[second] else second


def at_least(precision: Precision, dtype: str) -> Precision:
    """``precision``, or ``dtype``'s when that is coarser (an impl called in float32)."""
    if dtype not in EPSILON or EPSILON[dtype] <= precision.epsilon:
        return precision
    return dataclasses.replace(precision, noise=max(precision.noise, EPSILON[dtype]),
                               dtype=dtype)


def fourth_difference(values: Mapping[int, np.ndarray]) -> np.ndarray:
    """f(2h) - 4f(h) + 6f(0) - 4f(-h) + f(-2h): near 0 for a smooth f, the size of the noise
    for a noisy one (Δ⁴ sums five noisy values with weights 1, -4, 6, -4, 1)."""
    with np.errstate(all="ignore"):
        return values[2] - 4 * values[1] + 6 * values[0] - 4 * values[-1] + values[-2]


def measure(evaluate: Evaluate, point: Point, names: list[str],
            spec_value: np.ndarray | None, term_scale: float, seed: int,
            center: np.ndarray | None = None) -> Precision:
    """The forward's precision at ``point``: ``evaluate(values)`` is f at input values (by
    name), flat, in float64, and ``center`` f at the point where the caller has it;
    ``names`` the inputs moved (the differentiated ones); ``spec_value`` what the spec gives
    there, in float64 (None: there is no spec, and the noise alone, probed at float32's
    ulps, says). The result keeps the centre (``Precision.center``)."""
    if center is None:
        center = evaluate(point.values)
    if spec_value is None:
        noise, evaluations = _noise(evaluate, center, point, names, EPSILON["float32"],
                                    term_scale, seed, NOISE_DIRECTIONS)
        return Precision(max(noise, EPS64), classify(noise), evaluations=evaluations + 1,
                         center=center)
    scale = np.maximum(np.abs(np.asarray(spec_value, dtype=np.float64).reshape(-1)),
                       term_scale)
    with np.errstate(all="ignore"):
        gap = np.abs(center - np.asarray(spec_value, dtype=np.float64).reshape(-1)) / scale
    gap = gap[np.isfinite(gap)]
    candidate = classify(float(gap.max()) if gap.size else 0.0)
    if candidate == "float64":
        return Precision(EPS64, "float64", evaluations=1, center=center)
    noise, evaluations = _noise(evaluate, center, point, names, EPSILON[candidate],
                                term_scale, seed, NOISE_DIRECTIONS)
    dtype = finer(candidate, classify(noise))
    return Precision(max(noise, EPS64), dtype, evaluations=evaluations + 1, center=center)


def measure_gradients(vjp: Evaluate, point: Point, names: list[str], precision: Precision,
                      seed: int) -> Precision:
    """``precision`` with its gradients' dtype measured: the noise of ``vjp(values)`` (a
    gradient, flat) along seeded directions, as for the forward; at most as coarse as the
    forward (a kink in a gradient is no noise of the backward)."""
    center = vjp(point.values)
    noise, evaluations = _noise(vjp, center, point, names, precision.epsilon, 0.0, seed + 1,
                                GRADIENT_DIRECTIONS)
    return dataclasses.replace(precision, gradient_dtype=finer(classify(noise), precision.dtype),
                               evaluations=precision.evaluations + evaluations + 1)


def _noise(evaluate: Evaluate, center: np.ndarray, point: Point, names: list[str],
           epsilon: float, term_scale: float, seed: int, directions: int) -> tuple[float, int]:
    """Round-off along ``directions`` seeded directions, each input moved by about NOISE_ULPS
    ulps of ``epsilon``, relative to the values (or ``term_scale``). A smooth function's
    fourth difference grows as h**4: D(h) - D(2h)/16 cancels that, and what is left is noise
    (which does not scale with h); a sixth of it per evaluation."""
    rng = np.random.default_rng([seed, _NOISE_STREAM])
    step = NOISE_ULPS * epsilon
    worst = 0.0
    evaluations = 0
    for _ in range(directions):
        moves = {name: rng.standard_normal(point.values[name].shape) * step
                 * np.abs(point.values[name]) for name in names}
        values = {0: center}
        for k in (1, -1, 2, -2, 4, -4):
            values[k] = evaluate({**point.values, **{
                name: point.values[name] + k * move for name, move in moves.items()}})
        evaluations += 6
        doubled = {0: center, 1: values[2], -1: values[-2], 2: values[4], -2: values[-4]}
        with np.errstate(all="ignore"):
            scale = np.maximum(np.max(np.abs(np.stack(list(values.values()))), axis=0),
                               term_scale)
            residual = fourth_difference(values) - fourth_difference(doubled) / 16
            relative = np.abs(residual) / (6 * scale)
        relative = relative[np.isfinite(relative)]
        if relative.size:
            worst = max(worst, float(relative.max()))
    return worst, evaluations
