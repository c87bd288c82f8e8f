"""The finite-difference oracle: central differences in float64, with their own error bars.

Steps are relative to each element's magnitude, h = 1e-6·max(1, |x|) (for float64 central
differences this balances truncation, O(h²), against round-off, O(eps/h)). Every estimate is
taken at h and at 2h, and its error bar adds three parts: their difference (about three times
the truncation error at h); the noise seen in the fourth difference of the five values
f(x + kh), k = -2..2 (near zero for a smooth function, the size of the round-off noise for a
noisy one); and a round-off floor from the largest term involved (the function's values, or a
larger intermediate the caller knows of). An ill-conditioned difference thus widens its own
bar instead of failing a correct gradient.

Small cases get every partial derivative. Large ones get directional derivatives along seeded
random directions for each input, plus partials at the elements that the caller names (where
symbolic and autograd disagree most), so the cost stays bounded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from gradcheck_lab.casefile import Case
from gradcheck_lab.oracles.base import Estimates, FiniteDifferences, Gradients, Point, Probe
from gradcheck_lab.oracles.function import FunctionUnderTest, owned

RELATIVE_STEP = 1e-6
ALL_PARTIALS_MAX_ELEMENTS = 2048
DIRECTIONS_PER_INPUT = 8
EPS64 = float(np.finfo(np.float64).eps)
ROUNDOFF_FACTOR = 4.0  # a few ulps of the function's value per evaluation
_DIRECTION_STREAM = 2  # seed stream of the directions (the cotangents use stream 1)

METHOD = "central, h=1e-6·max(1,|x|), error from h vs 2h"


def estimate(function: FunctionUnderTest, point: Point, probes: tuple[Probe, ...], *,
             focus: dict[str, np.ndarray] | None = None, mode: str = "auto",
             term_scale: float = 0.0) -> FiniteDifferences:
    """Estimates for every differentiable input of ``function`` (called in float64).
    ``mode``: "auto", "all" or "projections".

    ``term_scale``: the largest intermediate value of the computation, when known, for the
    round-off floor of the error bars.
    """
    case = function.case
    counter = [0]

    def evaluate(name: str | None = None, replacement: np.ndarray | None = None) -> np.ndarray:
        counter[0] += 1
        moved = point.values if name is None else {**point.values, name: replacement}
        return evaluate_at(function, moved)

    value = evaluate()

    def central(name: str, x: np.ndarray, direction: np.ndarray,
                step: float) -> tuple[np.ndarray, np.ndarray]:
        return central_difference(lambda t: evaluate(name, x + t * direction), value,
                                  term_scale, step)

    cotangents = np.stack([np.asarray(p.cotangent, dtype=np.float64).reshape(-1)
                           for p in probes])
    differentiable = case.differentiable_inputs
    total = sum(spec.size for spec in differentiable)
    all_partials = mode == "all" or (mode == "auto" and total <= ALL_PARTIALS_MAX_ELEMENTS)
    per_input: dict[str, Estimates] = {}
    for number, spec in enumerate(differentiable):
        x = np.asarray(point.values[spec.name])
        if all_partials:
            indices = np.arange(x.size)
        else:
            indices = np.asarray((focus or {}).get(spec.name, np.zeros(0, dtype=np.int64)),
                                 dtype=np.int64)
        partials, partial_errors = [], []
        for flat in indices:
            column, error = partial_difference(
                lambda moved, name=spec.name: evaluate(name, moved), x, int(flat), value,
                term_scale)
            partials.append(cotangents @ column)
            partial_errors.append(np.abs(cotangents) @ error)
        directions = np.zeros((0, *x.shape))
        directional, directional_errors = [], []
        if not all_partials:
            rng = np.random.default_rng([case.seed, _DIRECTION_STREAM, number])
            scale = np.maximum(1.0, np.abs(x))
            directions = rng.standard_normal((DIRECTIONS_PER_INPUT, *x.shape)) * scale
            for direction in directions:
                column, error = central(spec.name, x, direction, RELATIVE_STEP)
                directional.append(cotangents @ column)
                directional_errors.append(np.abs(cotangents) @ error)
        per_input[spec.name] = Estimates(
            indices=indices,
            partials=_columns(partials, len(probes)),
            partial_errors=_columns(partial_errors, len(probes)),
            directions=directions,
            directional=_columns(directional, len(probes)),
            directional_errors=_columns(directional_errors, len(probes)),
        )
    kind = "every partial" if all_partials else (
        f"{DIRECTIONS_PER_INPUT} random directions per input + focus elements")
    return FiniteDifferences(f"{METHOD}; {kind}; on {function.label}", value.reshape(
        case.program.output_node.shape), per_input, counter[0])


def focus_elements(case: Case, sym: Gradients, ag: Gradients,
                   count: int) -> dict[str, np.ndarray]:
    """The ``count`` elements where symbolic and autograd differ most, relative to the
    gradient's scale, over all inputs and probes: where finite differences should look."""
    candidates: list[tuple[float, str, int]] = []
    for spec in case.differentiable_inputs:
        worst = None
        for k in range(len(sym.per_probe)):
            s = sym.per_probe[k][spec.name].reshape(-1)
            a = ag.per_probe[k][spec.name].reshape(-1)
            with np.errstate(all="ignore"):
                scale = max(float(np.nanmax(np.abs(s))) if s.size else 0.0, 1e-300)
                gap = np.nan_to_num(np.abs(s - a) / scale, nan=np.inf, posinf=np.inf)
            worst = gap if worst is None else np.maximum(worst, gap)
        if worst is None or not worst.size:
            continue
        top = np.argsort(-worst)[:count]
        candidates.extend((float(worst[i]), spec.name, int(i)) for i in top)
    candidates.sort(key=lambda item: -item[0])
    chosen: dict[str, list[int]] = {}
    for _, name, flat in candidates[:count]:
        chosen.setdefault(name, []).append(flat)
    return {name: np.asarray(sorted(flats), dtype=np.int64) for name, flats in chosen.items()}


def partial_difference(at: Callable[[np.ndarray], np.ndarray], x: np.ndarray, flat: int,
                       center: np.ndarray, term_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """d f / d x[flat], with its error bar: ``at(moved)`` is f with the input x replaced by
    ``moved``; the step is h = RELATIVE_STEP·max(1, |x[flat]|)."""
    direction = np.zeros(x.size)
    direction[flat] = 1.0
    direction = direction.reshape(x.shape)
    step = RELATIVE_STEP * max(1.0, abs(float(x.reshape(-1)[flat])))
    return central_difference(lambda t: at(x + t * direction), center, term_scale, step)


def input_tensors(case: Case, values: Mapping[str, np.ndarray], device: str) -> dict[str, Any]:
    """Every input of the case as a tensor without grad: float64, or int64 for integer ones.
    What finite differences evaluate the function at."""
    import torch

    return {spec.name: torch.tensor(values[spec.name],
                                    dtype=torch.int64 if spec.is_integer else torch.float64,
                                    device=device)
            for spec in case.inputs}


def evaluate_at(function: FunctionUnderTest, values: Mapping[str, np.ndarray]) -> np.ndarray:
    """The function at ``values`` (every input, by name), flat, in float64, without a graph."""
    import torch

    with torch.no_grad():
        out = function(input_tensors(function.case, values, function.device))
    return owned(out).reshape(-1)


def central_difference(shifted: Callable[[float], np.ndarray], center: np.ndarray,
                       term_scale: float, step: float) -> tuple[np.ndarray, np.ndarray]:
    """d/dt F(t) at t = 0 from F(±h), F(±2h) (``shifted(t)`` is F(t), ``center`` F(0)), and an
    error bar for each element."""
    outputs = {0: center}
    for multiple in (1, -1, 2, -2):
        outputs[multiple] = shifted(multiple * step)
    with np.errstate(all="ignore"):
        at_h = (outputs[1] - outputs[-1]) / (2 * step)
        at_2h = (outputs[2] - outputs[-2]) / (4 * step)
        fourth = outputs[2] - 4 * outputs[1] + 6 * outputs[0] - 4 * outputs[-1] + outputs[-2]
        magnitude = np.maximum(np.max(np.abs(np.stack(list(outputs.values()))), axis=0),
                               term_scale)
        roundoff = ROUNDOFF_FACTOR * EPS64 * magnitude / step
        error = np.abs(at_h - at_2h) + np.abs(fourth) / (2 * step) + roundoff
    return at_h, error


def joint_step(point: Point, tangents: dict[str, np.ndarray]) -> float:
    """One step for moving every input at once along its tangent: relative to the largest."""
    largest = max((float(np.max(np.abs(point.values[name]))) for name in tangents
                   if point.values[name].size), default=1.0)
    return RELATIVE_STEP * max(1.0, largest)


def jacobian_vector_product(function: FunctionUnderTest, point: Point,
                            tangents: dict[str, np.ndarray], term_scale: float = 0.0
                            ) -> tuple[np.ndarray, np.ndarray]:
    """d/dt f(x + t·v) for the tangents v of all inputs at once, with error bars."""

    def shifted(t: float) -> np.ndarray:
        moved = {name: values + t * tangents[name] if name in tangents else values
                 for name, values in point.values.items()}
        return evaluate_at(function, moved).reshape(function.output_shape)

    return central_difference(shifted, shifted(0.0), term_scale, joint_step(point, tangents))


def hessian_vector_products(function: FunctionUnderTest, point: Point,
                            probes: tuple[Probe, ...], tangents: dict[str, np.ndarray]
                            ) -> tuple[dict[str, np.ndarray], ...]:
    """Per probe u, d/dt of autograd's first-order VJP u·J at x + t·v, in float64, as
    {input: (estimate, error bar)} stacked along a leading axis of 2."""
    import torch

    from gradcheck_lab.oracles.autograd import make_leaves

    case, device = function.case, function.device
    names = list(tangents)
    sizes = [point.values[name].size for name in names]

    def gradient_at(t: float, probe: Probe) -> np.ndarray:
        moved = Point(point.dtype, {name: values + t * tangents[name] if name in tangents
                                    else values for name, values in point.values.items()},
                      {})
        leaves = make_leaves(case, moved, "float64", device)
        with torch.enable_grad():
            out = function(leaves)
        if not out.requires_grad:
            return np.zeros(sum(sizes))
        cotangent = torch.tensor(probe.cotangent, dtype=out.dtype, device=out.device)
        grads = torch.autograd.grad(out, [leaves[n] for n in names], grad_outputs=cotangent,
                                    allow_unused=True)
        return np.concatenate([
            np.zeros(size) if grad is None
            else owned(grad).reshape(-1)
            for grad, size in zip(grads, sizes, strict=True)])

    step = joint_step(point, tangents)
    results = []
    for probe in probes:
        estimate, error = central_difference(lambda t, p=probe: gradient_at(t, p),
                                             gradient_at(0.0, probe), 0.0, step)
        split = np.cumsum(sizes)[:-1]
        results.append({
            name: np.stack([e.reshape(point.values[name].shape),
                            b.reshape(point.values[name].shape)])
            for name, e, b in zip(names, np.split(estimate, split), np.split(error, split),
                                  strict=True)})
    return tuple(results)


def _columns(rows: list[np.ndarray], probes: int) -> np.ndarray:
    """Stack per-element rows of probe values into a (probes, elements) array."""
    if not rows:
        return np.zeros((probes, 0))
    return np.stack(rows, axis=1)
