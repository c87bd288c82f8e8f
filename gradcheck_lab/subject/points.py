"""Case x dtype -> Point: the input values every oracle sees.

Random inputs follow the case format's definition exactly (a seeded torch.Generator, drawn in
float64 on CPU), then are rounded to the case's dtype. The symbolic and finite-difference
oracles work at those rounded values in float64, so a float32 verdict measures the backward's
error, not the rounding of its inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from gradcheck_lab.casefile import Case, InputSpec

__all__ = ["KINK_ATTEMPTS", "KINK_SHIFT", "Point", "make_point", "moved_off_kinks",
           "point_seed"]


@dataclass(frozen=True)
class Point:
    """Input values: float64 arrays (rounded to ``dtype``) or int64 arrays; exact literals."""

    dtype: str
    values: dict[str, np.ndarray]
    # Object arrays of Fractions for literals written as ints or decimals (float64 only); other
    # values are exactly their binary floats.
    exact: dict[str, np.ndarray]

    def scale(self, name: str) -> float:
        """The input's magnitude, max(1, max |x|): the unit of its finite-difference steps."""
        values = self.values[name]
        return float(max(1.0, np.max(np.abs(values)))) if values.size else 1.0


# Point k >= 1 of a case with ``points: N`` re-draws each random input with the seed
# (seed + k * POINT_SEED_STRIDE) mod 2**63; literals, zeros and ones stay as written.
POINT_SEED_STRIDE = 1_000_003
RANDOM_INITS = ("randn", "uniform", "randint")


def point_seed(seed: int, index: int) -> int:
    return (seed + index * POINT_SEED_STRIDE) % 2**63


def make_point(case: Case, dtype: str, index: int = 0) -> Point:
    """The inputs of point ``index`` (0: as the case file says)."""
    import torch

    values: dict[str, np.ndarray] = {}
    exact: dict[str, np.ndarray] = {}
    target = getattr(torch, dtype)
    for spec in case.inputs:
        drawn = _draw(spec, torch, index)
        if spec.is_integer:
            values[spec.name] = drawn.numpy().astype(np.int64)
            continue
        rounded = drawn.to(target).to(torch.float64).numpy().copy()
        values[spec.name] = rounded
        if spec.literal is not None and spec.literal.dtype == object and dtype == "float64":
            exact[spec.name] = spec.literal
    return Point(dtype, values, exact)


def _draw(spec: InputSpec, torch: Any, index: int) -> Any:  # torch module -> torch.Tensor
    if spec.literal is not None:
        if spec.is_integer:
            return torch.tensor(np.asarray(spec.literal, dtype=np.int64))
        return torch.tensor(spec.literal_float64)
    # A drawn input always has a seed and its bounds (the loader fills them in).
    assert spec.seed is not None, f"{spec.name} has an init but no seed"
    seed = spec.seed if index == 0 or spec.init not in RANDOM_INITS else point_seed(
        spec.seed, index)
    generator = torch.Generator().manual_seed(seed)
    shape = spec.shape
    if spec.init == "randn":
        return torch.randn(shape, generator=generator, dtype=torch.float64) * spec.std + spec.mean
    if spec.init in ("uniform", "randint"):
        assert spec.low is not None and spec.high is not None, f"{spec.name}: no bounds"
        if spec.init == "randint":
            return torch.randint(int(spec.low), int(spec.high), shape, generator=generator)
        unit = torch.rand(shape, generator=generator, dtype=torch.float64)
        return unit * (spec.high - spec.low) + spec.low
    if spec.init == "zeros":
        return torch.zeros(shape, dtype=torch.float64)
    if spec.init == "ones":
        return torch.ones(shape, dtype=torch.float64)
    raise AssertionError(f"unknown init {spec.init}")  # the schema admits no other


# avoid_kinks: each move shifts every real input by KINK_SHIFT relative (times a seeded normal
# draw), tried up to KINK_ATTEMPTS times until no kink is hit.
KINK_SHIFT = 1e-4
KINK_ATTEMPTS = 5
_KINK_STREAM = 5


def moved_off_kinks(case: Case, point: Point, attempt: int) -> Point:
    """The point with every real differentiable input shifted by about KINK_SHIFT·max(1,|x|)
    (seeded by the case's seed and the attempt), rounded to the point's dtype again."""
    import torch

    rng = np.random.default_rng([case.seed, _KINK_STREAM, attempt])
    values = dict(point.values)
    for spec in case.differentiable_inputs:
        x = point.values[spec.name]
        shifted = x + KINK_SHIFT * np.maximum(1.0, np.abs(x)) * rng.standard_normal(x.shape)
        values[spec.name] = torch.tensor(shifted).to(getattr(torch, point.dtype)).to(
            torch.float64).numpy().copy()
    moved = {spec.name for spec in case.differentiable_inputs}
    exact = {name: v for name, v in point.exact.items() if name not in moved}
    return Point(point.dtype, values, exact)
