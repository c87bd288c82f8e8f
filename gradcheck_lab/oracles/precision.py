"""How precisely does the function under test compute? Measured at the point, not assumed.

A Function whose forward computes in float32 inside float64 code (``x.float()`` ...
``.double()``: mixed precision, references for fused kernels) has a forward noise of about
float32's epsilon. Finite differences at float64's step (1e-6) are then swamped (an error of
0.1, not 1e-10), and its float32 backward differs from the exact gradient by more than
float64's tolerance, although nothing is wrong.

The noise is measured from the fourth difference of f along a few seeded directions at a
step small enough that a smooth function is linear there to far below float64's rounding
(f'''' h⁴ at h = 1e-6), yet large enough to move every input by several float32 ulps: what
the fourth difference shows is round-off. Per evaluation, the noise relative to the
function's term scale is about |Δ⁴f| / 6 of it (Δ⁴ sums five noisy values with weights
1, -4, 6, -4, 1). It classifies into the dtype whose epsilon it matches (the geometric means
of neighbouring epsilons are the boundaries), which is what the check then compares at.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from gradcheck_lab.oracles.base import Point

RELATIVE_STEP = 1e-6  # float64 central differences: truncation O(h²) against round-off O(eps/h)
EPS64 = 2.0**-52
NOISE_STEP = 1e-6  # relative to max(1, |x|), for each input moved along a direction
NOISE_DIRECTIONS = 4
_NOISE_STREAM = 6
# Finest first: (dtype, epsilon).
_EPSILONS = (("float64", 2.0**-52), ("float32", 2.0**-23), ("float16", 2.0**-10),
             ("bfloat16", 2.0**-7))


@dataclass(frozen=True)
class Precision:
    """The measured relative round-off of the function's forward (per evaluation, relative
    to its term scale) and the dtype it corresponds to."""

    noise: float
    dtype: str
    evaluations: int = 0

    @property
    def epsilon(self) -> float:
        return dict(_EPSILONS)[self.dtype]

    def coarser_than(self, dtype: str) -> bool:
        return self.epsilon > dict(_EPSILONS)[dtype]

    @property
    def relative_step(self) -> float:
        """The finite-difference step, relative to max(1, |x|): float64's 1e-6, or for a
        coarser function the central-difference optimum, noise^(1/3) (truncation h², against
        round-off noise/h)."""
        if self.dtype == "float64":
            return RELATIVE_STEP
        return max(RELATIVE_STEP, self.noise ** (1.0 / 3.0))

    @property
    def roundoff(self) -> float:
        """The relative round-off per evaluation that the error bars assume."""
        return EPS64 if self.dtype == "float64" else max(self.noise, EPS64)

    def describe(self) -> str:
        return (f"about {self.dtype} (forward round-off {self.noise:.2g} of its terms, "
                "measured at the point)")


FLOAT64 = Precision(EPS64, "float64")


def classify(noise: float) -> str:
    """The dtype whose epsilon the noise matches: between two neighbouring epsilons, the
    boundary is their geometric mean."""
    for (finer, eps_finer), (_, eps_coarser) in itertools.pairwise(_EPSILONS):
        if noise <= math.sqrt(eps_finer * eps_coarser):
            return finer
    return _EPSILONS[-1][0]


def at_least(precision: Precision, dtype: str) -> Precision:
    """``precision``, or ``dtype``'s when that is coarser (an output returned in float32)."""
    if dtype not in dict(_EPSILONS) or not Precision(0.0, dtype).coarser_than(precision.dtype):
        return precision
    return Precision(max(precision.noise, dict(_EPSILONS)[dtype]), dtype,
                     precision.evaluations)


def measure(evaluate: object, point: Point, names: list[str], term_scale: float,
            seed: int) -> Precision:
    """The forward's noise at ``point``: ``evaluate(values)`` is f at input values (by name),
    flat, in float64; ``names`` the inputs moved (the differentiated ones)."""
    rng = np.random.default_rng([seed, _NOISE_STREAM])
    center = evaluate(point.values)  # type: ignore[operator]
    worst = 0.0
    evaluations = 1
    for _ in range(NOISE_DIRECTIONS):
        directions = {name: rng.standard_normal(point.values[name].shape)
                      * NOISE_STEP * np.maximum(1.0, np.abs(point.values[name]))
                      for name in names}
        values = {0: center}
        for k in (1, -1, 2, -2):
            values[k] = evaluate({**point.values, **{  # type: ignore[operator]
                name: point.values[name] + k * d for name, d in directions.items()}})
        evaluations += 4
        with np.errstate(all="ignore"):
            fourth = values[2] - 4 * values[1] + 6 * values[0] - 4 * values[-1] + values[-2]
            scale = np.maximum(np.max(np.abs(np.stack(list(values.values()))), axis=0),
                               term_scale)
            relative = np.abs(fourth) / (6 * scale)
        relative = relative[np.isfinite(relative)]
        if relative.size:
            worst = max(worst, float(relative.max()))
    noise = max(worst, FLOAT64.noise)
    return Precision(noise, classify(noise), evaluations)
