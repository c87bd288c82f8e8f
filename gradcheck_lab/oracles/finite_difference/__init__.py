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

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from gradcheck_lab.casefile import Case
from gradcheck_lab.oracles.contract import Estimates, FiniteDifferences, Gradients
from gradcheck_lab.subject.function import FunctionUnderTest, owned
from gradcheck_lab.subject.points import Point
from gradcheck_lab.subject.precision import EPS64, FLOAT64, Precision, fourth_difference
from gradcheck_lab.subject.probes import Probe

ALL_PARTIALS_MAX_ELEMENTS = 2048
DIRECTIONS_PER_INPUT = 8
# A check first takes this many directions per input (``estimate(directions=...)``): enough
# for a third opinion where symbolic and autograd agree, since a random direction meets any
# error vector; the inputs where they disagree then get DIRECTIONS_PER_INPUT, whose votes
# name the odd one out (``more_directions``), the same seeded directions as a full draw.
SCREENING_DIRECTIONS = 2
# Estimates × program nodes: each estimate evaluates the whole program four times. The bundled
# cases stay under 10,000; 3,000 scalar inputs summed in lets would be 2.4e8 for 8 directions
# each (minutes).
FD_MAX_WORK = 1_000_000
ROUNDOFF_FACTOR = 4.0  # a few ulps of the function's value per evaluation
_DIRECTION_STREAM = 2  # seed stream of the directions (the cotangents use stream 1)
_JOINT_STREAM = 3  # seed stream of the joint directions (``joint_screen``)
# Where symbolic and autograd agree on every element, finite differences first screen along
# this many directions over all inputs at once (``joint_screen``), 4 evaluations each
# whatever the number of inputs, instead of SCREENING_DIRECTIONS per input. One: a random
# direction meets any error vector, and where it does not settle the comparison (a gap, an
# inconclusive estimate) the per-input directions follow; a second would only repeat it.
JOINT_DIRECTIONS = 1

METHOD = "central, h=1e-6·max(1,|x|), error from h vs 2h"


def estimate(function: FunctionUnderTest, point: Point, probes: tuple[Probe, ...], *,
             focus: dict[str, np.ndarray] | None = None, mode: str = "auto",
             term_scale: float = 0.0, precision: Precision = FLOAT64,
             directions: int = DIRECTIONS_PER_INPUT) -> FiniteDifferences:
    """Estimates for every differentiable input of ``function`` (called in float64).
    ``mode``: "auto", "all" or "projections". ``directions``: random directions per input
    (at most DIRECTIONS_PER_INPUT, fewer where the budget says so), when not every partial.

    ``term_scale``: the largest intermediate value of the computation, when known, for the
    round-off floor of the error bars. ``precision``: how precisely the function computes
    (``subject.precision``), which sets the step and the round-off in the bars.
    """
    case = function.case
    counter = [0]

    def evaluate(name: str | None = None, replacement: np.ndarray | None = None) -> np.ndarray:
        counter[0] += 1
        if name is None or replacement is None:
            return evaluate_at(function, point.values, CENTER)
        return evaluate_at(function, {**point.values, name: replacement}, frozenset({name}))

    center = precision.center_for(function.called_in)
    value = center if center is not None else evaluate()

    cotangents = np.stack([np.asarray(p.cotangent, dtype=np.float64).reshape(-1)
                           for p in probes])
    differentiable = case.differentiable_inputs
    total = sum(spec.size for spec in differentiable)
    budget = estimate_budget(case)
    all_partials = mode == "all" or (mode == "auto" and total <= budget)
    directions_each, sampled = _directions_within(differentiable, budget, case.seed)
    notes = called_in_note(function)
    if not all_partials and (directions_each < DIRECTIONS_PER_INPUT or sampled is not None):
        notes += (_reduction_note(len(differentiable), directions_each, sampled, budget),)
    per_input: dict[str, Estimates] = {}
    screened = min(directions, directions_each)
    small: list[str] = []  # inputs that took every partial for being small
    for number, spec in enumerate(differentiable):
        x = np.asarray(point.values[spec.name])
        # An input of no more elements than the screening directions gets its partials
        # instead: no more evaluations, each along one element at the step as given (unless
        # the budget cut the directions: its reduction stands as the note says).
        every = all_partials or (x.size <= SCREENING_DIRECTIONS
                                 and directions_each == DIRECTIONS_PER_INPUT)
        if every and not all_partials:
            small.append(spec.name)
        if every:
            indices = np.arange(x.size)
        else:
            indices = np.asarray((focus or {}).get(spec.name, np.zeros(0, dtype=np.int64)),
                                 dtype=np.int64)
        partials, partial_errors = [], []
        for flat in indices:
            column, error = partial_difference(
                functools.partial(evaluate, spec.name), x, int(flat), value,
                term_scale, precision)
            partials.append(cotangents @ column)
            partial_errors.append(np.abs(cotangents) @ error)
        estimates = Estimates(
            indices=indices,
            partials=_columns(partials, len(probes)),
            partial_errors=_columns(partial_errors, len(probes)),
            directions=np.zeros((0, *x.shape)),
            directional=np.zeros((len(probes), 0)),
            directional_errors=np.zeros((len(probes), 0)),
        )
        if not every and (sampled is None or spec.name in sampled):
            estimates = _with_directions(estimates, screened,
                                         functools.partial(evaluate, spec.name),
                                         x, value, cotangents, case.seed, number, term_scale,
                                         precision)
        per_input[spec.name] = estimates
    kind = _kind(all_partials or len(small) == len(differentiable), small, directions_each,
                 screened)
    return FiniteDifferences(f"{method(precision)}; {kind}; on {function.label}",
                             value.reshape(case.program.output_node.shape), per_input,
                             counter[0], notes=notes)


def _kind(every: bool, small: list[str], directions_each: int, screened: int) -> str:
    """What an estimate took, for its method text."""
    if every:
        return "every partial"
    kind = (f"{directions_each} random directions per input + focus elements"
            if screened == directions_each else
            f"{screened} random directions per input ({directions_each} where symbolic and "
            "autograd disagree) + focus elements")
    if small:
        kind += f"; every partial of {', '.join(small)} (at most {SCREENING_DIRECTIONS} elements)"
    return kind


def takes_every_partial(case: Case, mode: str) -> bool:
    """Whether ``estimate`` in ``mode`` takes every partial of every input."""
    total = sum(spec.size for spec in case.differentiable_inputs)
    return mode == "all" or (mode == "auto" and total <= estimate_budget(case))


def joint_screen(function: FunctionUnderTest, point: Point, probes: tuple[Probe, ...], *,
                 term_scale: float = 0.0, precision: Precision = FLOAT64,
                 count: int = JOINT_DIRECTIONS) -> FiniteDifferences:
    """Directional derivatives along ``count`` seeded random directions that move every
    differentiated input at once: a screen that costs the same for one input or fifty. Each
    input's part of a direction is scaled to the same size (standard normal × max(1,|x|),
    over sqrt of its elements), so that a large weight matrix does not drown a bias. Any
    error vector shows along a random direction; where one does not agree, the check takes
    the per-input directions instead (``CaseCheck.oracle_results``), which say which input."""
    case = function.case
    differentiable = case.differentiable_inputs
    # The centre the precision measurement took, where it took one.
    center = precision.center_for(function.called_in)
    measured = center is not None
    value = center if center is not None else evaluate_at(function, point.values, CENTER)
    cotangents = np.stack([np.asarray(p.cotangent, dtype=np.float64).reshape(-1)
                           for p in probes])
    rng = np.random.default_rng([case.seed, _JOINT_STREAM])
    parts = {}
    for spec in differentiable:
        x = point.values[spec.name]
        part = rng.standard_normal((count, *x.shape))
        part *= np.maximum(np.abs(x), 1.0)  # in place, the same products in the same order
        part /= np.sqrt(max(spec.size, 1))
        parts[spec.name] = part
    directional, errors = [], []
    for j in range(count):
        shifted = moved_along(function, point, {name: part[j] for name, part in parts.items()})
        column, error = central_difference(shifted, value, term_scale,
                                           precision.relative_step, precision.roundoff)
        directional.append(cotangents @ column)
        errors.append(np.abs(cotangents) @ error)
    joined = np.concatenate([parts[spec.name].reshape(count, -1) for spec in differentiable],
                            axis=1)
    joint = Estimates(np.zeros(0, dtype=np.int64), np.zeros((len(probes), 0)),
                      np.zeros((len(probes), 0)), joined,
                      _columns(directional, len(probes)), _columns(errors, len(probes)))
    per_input = {spec.name: Estimates(
        np.zeros(0, dtype=np.int64), np.zeros((len(probes), 0)), np.zeros((len(probes), 0)),
        np.zeros((0, *point.values[spec.name].shape)), np.zeros((len(probes), 0)),
        np.zeros((len(probes), 0))) for spec in differentiable}
    return FiniteDifferences(
        f"{method(precision)}; {count} random directions over all inputs at once; on "
        f"{function.label}", value.reshape(case.program.output_node.shape), per_input,
        (0 if measured else 1) + 4 * count, notes=called_in_note(function), joint=joint)


def _with_directions(estimates: Estimates, count: int,
                     at: Callable[[np.ndarray], np.ndarray], x: np.ndarray, value: np.ndarray,
                     cotangents: np.ndarray, seed: int, number: int, term_scale: float,
                     precision: Precision) -> Estimates:
    """``estimates`` with its input's seeded random directions up to ``count``, taking
    those it has as they are. ``at(moved)`` is f with the input replaced by ``moved``."""
    have = len(estimates.directions)
    if count <= have:
        return estimates
    rng = np.random.default_rng([seed, _DIRECTION_STREAM, number])
    # The generator fills row by row: the first rows of a larger draw are a smaller draw.
    directions = rng.standard_normal((count, *x.shape)) * np.maximum(1.0, np.abs(x))
    directional, errors = list(estimates.directional.T), list(estimates.directional_errors.T)
    for direction in directions[have:]:
        column, error = central_difference(functools.partial(_stepped, at, x, direction), value,
                                           term_scale, precision.relative_step,
                                           precision.roundoff)
        directional.append(cotangents @ column)
        errors.append(np.abs(cotangents) @ error)
    return dataclasses.replace(estimates, directions=directions,
                               directional=_columns(directional, len(cotangents)),
                               directional_errors=_columns(errors, len(cotangents)))


def more_directions(function: FunctionUnderTest, point: Point, probes: tuple[Probe, ...],
                    differences: FiniteDifferences, inputs: set[str], term_scale: float = 0.0,
                    precision: Precision = FLOAT64) -> FiniteDifferences:
    """``differences`` with every random direction its budget allows for ``inputs`` (where
    symbolic and autograd disagree), beyond the screening ones an estimate took."""
    case = function.case
    differentiable = case.differentiable_inputs
    each, _ = _directions_within(differentiable, estimate_budget(case), case.seed)
    wanted = [(number, spec) for number, spec in enumerate(differentiable)
              if spec.name in inputs and spec.name in differences.per_input
              and 0 < len(differences.per_input[spec.name].directions) < each]
    if not wanted:
        return differences
    counter = [1]
    value = evaluate_at(function, point.values, CENTER)

    def at(name: str, moved: np.ndarray) -> np.ndarray:
        counter[0] += 1
        return evaluate_at(function, {**point.values, name: moved}, frozenset({name}))

    cotangents = np.stack([np.asarray(p.cotangent, dtype=np.float64).reshape(-1)
                           for p in probes])
    per_input = dict(differences.per_input)
    for number, spec in wanted:
        per_input[spec.name] = _with_directions(
            per_input[spec.name], each, functools.partial(at, spec.name),
            np.asarray(point.values[spec.name]), value, cotangents, case.seed, number,
            term_scale, precision)
    names = ", ".join(spec.name for _, spec in wanted)
    note = (f"finite differences took {each} random directions for {names}, where symbolic "
            "and autograd disagree")
    return dataclasses.replace(differences, per_input=per_input,
                               evaluations=differences.evaluations + counter[0],
                               notes=(*differences.notes, note))


def estimate_budget(case: Case) -> int:
    """How many estimates (partials and directional derivatives, four evaluations each) a
    case's finite differences may take: ALL_PARTIALS_MAX_ELEMENTS, fewer for a program so
    large that each evaluation costs much (thousands of scalar inputs summed in lets)."""
    nodes = max(len(case.program.nodes), 1)
    return max(1, min(ALL_PARTIALS_MAX_ELEMENTS, FD_MAX_WORK // nodes))


def _directions_within(differentiable: tuple[Any, ...], budget: int,
                       seed: int) -> tuple[int, frozenset[str] | None]:
    """Random directions per input, and the inputs that get them (None: all), so that
    inputs × directions stays within ``budget``: fewer directions first, then a seeded
    sample of the inputs (the others are compared symbolic vs autograd only)."""
    count = len(differentiable)
    if count * DIRECTIONS_PER_INPUT <= budget:
        return DIRECTIONS_PER_INPUT, None
    if count <= budget:
        return budget // count, None
    rng = np.random.default_rng([seed, _DIRECTION_STREAM])
    chosen = rng.choice(count, size=budget, replace=False)
    return 1, frozenset(differentiable[i].name for i in chosen)


def _reduction_note(inputs: int, each: int, sampled: frozenset[str] | None,
                    budget: int) -> str:
    which = (f"{each} random direction(s) for each of the {inputs} inputs" if sampled is None
             else f"1 random direction for {len(sampled)} of the {inputs} inputs, sampled "
                  "(the others: symbolic vs autograd only)")
    return (f"finite differences: {which}, not {DIRECTIONS_PER_INPUT} each, to stay within "
            f"their budget of {budget} estimates for a program of this size")


def called_in_note(function: FunctionUnderTest) -> tuple[str, ...]:
    """Said when the impl refused float64 inputs and finite differences called it in the
    case's dtype instead."""
    if function.called_in == function.dtype:
        return ()
    return (f"finite differences call the impl in {function.called_in}: it refused "
            f"{function.dtype} inputs ({function.refused})",)


# A second, incommensurate step for the refined estimates' independent noise sample.
REFINE_STEP_RATIO = 0.6180339887
REFINE_MAX_ELEMENTS = 32


def refine(function: FunctionUnderTest, point: Point, probes: tuple[Probe, ...],
           differences: FiniteDifferences, elements: dict[str, np.ndarray],
           precision: Precision = FLOAT64, term_scale: float = 0.0) -> FiniteDifferences:
    """The partials at ``elements`` (by input, flat indices) again, with error bars of their
    own: where symbolic and autograd disagree and the first estimates' bars were too wide to
    tell which is right.

    The first bars hold a floor from the measured round-off of the whole function, whatever
    the element: far too wide for one element of a function computing in float32, whose
    difference moves a single term. Here each element's round-off is measured by its own
    fourth differences, at the step and at a second, incommensurate one (two independent
    samples of the noise its difference really sees), beside the truncation seen between h
    and 2h; the floor stays float64's rounding of the largest term.
    """
    center = evaluate_at(function, point.values, CENTER)
    cotangents = np.stack([np.asarray(p.cotangent, dtype=np.float64).reshape(-1)
                           for p in probes])
    per_input = dict(differences.per_input)
    evaluations = differences.evaluations + 1
    for name, flats in elements.items():
        x = np.asarray(point.values[name])
        estimates = per_input[name]
        indices, partials = list(estimates.indices), estimates.partials.T.tolist()
        errors = estimates.partial_errors.T.tolist()
        for flat in [int(f) for f in flats][:REFINE_MAX_ELEMENTS]:
            column, error = _element_difference(function, point, name, x, flat, center,
                                                precision, term_scale)
            evaluations += 8
            row, bar = cotangents @ column, np.abs(cotangents) @ error
            if flat in indices:
                position = indices.index(flat)
                partials[position], errors[position] = list(row), list(bar)
            else:
                indices.append(flat)
                partials.append(list(row))
                errors.append(list(bar))
        order = np.argsort(indices, kind="stable")
        per_input[name] = dataclasses.replace(
            estimates, indices=np.asarray(indices, dtype=np.int64)[order],
            partials=_columns([np.asarray(partials[i]) for i in order], len(probes)),
            partial_errors=_columns([np.asarray(errors[i]) for i in order], len(probes)))
    notes = (*differences.notes, "finite differences re-estimated "
             f"{sum(min(len(f), REFINE_MAX_ELEMENTS) for f in elements.values())} partial(s) "
             "where symbolic and autograd disagree, with each element's own round-off "
             "measured (two fourth differences)")
    return dataclasses.replace(differences, per_input=per_input, evaluations=evaluations,
                               notes=notes)


def _element_difference(function: FunctionUnderTest, point: Point, name: str, x: np.ndarray,
                        flat: int, center: np.ndarray, precision: Precision,
                        term_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """d f / d x[flat] at the precision's step, its bar from this element's own noise."""
    unit: np.ndarray = np.zeros(x.size)
    unit[flat] = 1.0
    unit = unit.reshape(x.shape)

    def at(t: float) -> np.ndarray:
        return evaluate_at(function, {**point.values, name: x + t * unit}, frozenset({name}))

    step = precision.relative_step * max(1.0, abs(float(x.reshape(-1)[flat])))
    values = {0: center, **{k: at(k * step) for k in (1, -1, 2, -2)}}
    other = REFINE_STEP_RATIO * step
    second = {0: center, **{k: at(k * other) for k in (1, -1, 2, -2)}}
    with np.errstate(all="ignore"):
        at_h = (values[1] - values[-1]) / (2 * step)
        at_2h = (values[2] - values[-2]) / (4 * step)
        noise = np.maximum(*(np.abs(fourth_difference(v)) / 6 for v in (values, second)))
        # The floor: float64's rounding of the largest term (a difference of quantized values
        # can have zero fourth differences, (x + C) - C on C's grid), beside the noise.
        magnitude = np.maximum(np.max(np.abs(np.stack(list(values.values()))), axis=0),
                               term_scale)
        floor = ROUNDOFF_FACTOR * np.maximum(noise, EPS64 * magnitude) / step
        error = np.abs(at_h - at_2h) + floor
    return at_h, error


def method(precision: Precision) -> str:
    """The method in words: float64's step, the case's fd_step, or the step a coarser
    function gets."""
    if precision.step is not None:
        return (f"central, h={precision.step:.2g}·max(1,|x|) (the case's fd_step), error from "
                "h vs 2h")
    if precision.dtype == "float64":
        return METHOD
    return (f"central, h={precision.relative_step:.2g}·max(1,|x|) for a function computing at "
            f"about {precision.dtype} precision, error from h vs 2h")


def focus_elements(case: Case, sym: Gradients, ag: Gradients, count: int,
                   least: float = 0.0) -> dict[str, np.ndarray]:
    """The ``count`` elements where symbolic and autograd differ most, relative to the
    gradient's scale, over all inputs and probes: where finite differences should look.
    Elements whose relative gap is at most ``least`` are agreed on and never chosen."""
    candidates: list[tuple[float, str, int]] = []
    for spec in case.differentiable_inputs:
        if not sym.per_probe:
            continue
        # Every probe at once, a row each.
        s = np.stack([p[spec.name].reshape(-1) for p in sym.per_probe])
        a = np.stack([p[spec.name].reshape(-1) for p in ag.per_probe])
        if not s.shape[1]:
            continue
        # The largest |s| of each row from its extremes (no temporary) where they are finite.
        high, low = s.max(axis=1, initial=0.0), s.min(axis=1, initial=0.0)
        if np.isfinite(high).all() and np.isfinite(low).all():
            largest = np.maximum(high, -low)
        else:
            magnitudes = np.abs(s)
            largest = magnitudes.max(axis=1, where=np.isfinite(magnitudes), initial=0.0)
        scale = np.maximum(largest, 1e-300)[:, None]
        with np.errstate(all="ignore"):
            gap = np.subtract(s, a)
            np.abs(gap, out=gap)
            np.divide(gap, scale, out=gap)
        if math.isnan(float(gap.max(initial=0.0))):  # NaN carries through max
            gap[np.isnan(gap)] = np.inf  # a nan on either side: as far apart as can be
        worst = gap.max(axis=0)
        # Only the elements past ``least`` are ranked (nan compares false: kept).
        eligible = np.flatnonzero(~(worst <= least))
        top = eligible[np.argsort(-worst[eligible], kind="stable")[:count]]
        candidates.extend((float(worst[i]), spec.name, int(i)) for i in top)
    candidates.sort(key=lambda item: -item[0])
    chosen: dict[str, list[int]] = {}
    for _, name, flat in candidates[:count]:
        chosen.setdefault(name, []).append(flat)
    return {name: np.asarray(sorted(flats), dtype=np.int64) for name, flats in chosen.items()}


def partial_difference(at: Callable[[np.ndarray], np.ndarray], x: np.ndarray, flat: int,
                       center: np.ndarray, term_scale: float,
                       precision: Precision = FLOAT64) -> tuple[np.ndarray, np.ndarray]:
    """d f / d x[flat], with its error bar: ``at(moved)`` is f with the input x replaced by
    ``moved``; the step is h = the precision's relative step × max(1, |x[flat]|)."""
    direction: np.ndarray = np.zeros(x.size)
    direction[flat] = 1.0
    direction = direction.reshape(x.shape)
    step = precision.relative_step * max(1.0, abs(float(x.reshape(-1)[flat])))
    return central_difference(lambda t: at(x + t * direction), center, term_scale, step,
                              precision.roundoff)


def input_tensors(case: Case, values: Mapping[str, np.ndarray], device: str) -> dict[str, Any]:
    """Every input of the case as a tensor without grad: float64, or int64 for integer ones.
    What finite differences evaluate the function at."""
    import torch

    return {spec.name: torch.tensor(values[spec.name],
                                    dtype=torch.int64 if spec.is_integer else torch.float64,
                                    device=device)
            for spec in case.inputs}


CENTER: frozenset[str] = frozenset()  # ``moved`` of the evaluation the others move from


def evaluate_at(function: FunctionUnderTest, values: Mapping[str, np.ndarray],
                moved: frozenset[str] | None = None) -> np.ndarray:
    """The function at ``values`` (every input, by name), flat, in float64, without a graph.
    ``moved``: CENTER for the point the next evaluations move from, or the inputs that differ
    from it (see ``FunctionUnderTest.__call__``)."""
    import torch

    with torch.no_grad():
        out = function(function.input_tensors(values, center=moved == CENTER), moved)
    return owned(out).reshape(-1)


def central_difference(shifted: Callable[[float], np.ndarray], center: np.ndarray,
                       term_scale: float, step: float,
                       roundoff_per_evaluation: float = EPS64) -> tuple[np.ndarray, np.ndarray]:
    """d/dt F(t) at t = 0 from F(±h), F(±2h) (``shifted(t)`` is F(t), ``center`` F(0)), and an
    error bar for each element; ``roundoff_per_evaluation``: F's relative round-off."""
    outputs = {0: center}
    for multiple in (1, -1, 2, -2):
        outputs[multiple] = shifted(multiple * step)
    return difference_and_bar(outputs, step, term_scale, roundoff_per_evaluation)


def difference_and_bar(outputs: Mapping[int, np.ndarray], step: float | np.ndarray,
                       term_scale: float, roundoff_per_evaluation: float = EPS64
                       ) -> tuple[np.ndarray, np.ndarray]:
    """``central_difference`` from F at 0, ±h and ±2h (``outputs`` by multiple of h),
    elementwise: several steps at once where ``step`` is a column, a row of F each."""
    with np.errstate(all="ignore"):
        at_h = (outputs[1] - outputs[-1]) / (2 * step)
        at_2h = (outputs[2] - outputs[-2]) / (4 * step)
        fourth = fourth_difference(outputs)
        magnitude = np.maximum(np.max(np.abs(np.stack(np.broadcast_arrays(
            *outputs.values()))), axis=0), term_scale)
        roundoff = ROUNDOFF_FACTOR * roundoff_per_evaluation * magnitude / step
        error = np.abs(at_h - at_2h) + np.abs(fourth) / (2 * step) + roundoff
    return at_h, error


def joint_step(point: Point, tangents: dict[str, np.ndarray],
               precision: Precision = FLOAT64) -> float:
    """One step for moving every input at once along its tangent: relative to the largest."""
    largest = max((float(np.max(np.abs(point.values[name]))) for name in tangents
                   if point.values[name].size), default=1.0)
    return precision.relative_step * max(1.0, largest)


def jacobian_vector_product(function: FunctionUnderTest, point: Point,
                            tangents: dict[str, np.ndarray], term_scale: float = 0.0,
                            precision: Precision = FLOAT64) -> tuple[np.ndarray, np.ndarray]:
    """d/dt f(x + t·v) for the tangents v of all inputs at once, with error bars."""
    along = moved_along(function, point, tangents)

    def shifted(t: float) -> np.ndarray:
        return along(t).reshape(function.output_shape)

    return central_difference(shifted, shifted(0.0), term_scale,
                              joint_step(point, tangents, precision), precision.roundoff)


def moved_along(function: FunctionUnderTest, point: Point,
                tangents: Mapping[str, np.ndarray]) -> Callable[[float], np.ndarray]:
    """t -> f(x + t·v), flat: every input named in ``tangents`` moved along its tangent v at
    once, the others at the point."""
    moved = frozenset(tangents)

    def shifted(t: float) -> np.ndarray:
        return evaluate_at(function, {**point.values, **{
            name: point.values[name] + t * tangent for name, tangent in tangents.items()}},
            moved)

    return shifted


def hessian_vector_products(function: FunctionUnderTest, point: Point,
                            probes: tuple[Probe, ...], tangents: dict[str, np.ndarray],
                            precision: Precision = FLOAT64) -> tuple[dict[str, np.ndarray], ...]:
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

    step = joint_step(point, tangents, precision)
    results = []
    for probe in probes:
        estimate, error = central_difference(functools.partial(gradient_at, probe=probe),
                                             gradient_at(0.0, probe), 0.0, step,
                                             precision.roundoff)
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


def _stepped(at: Callable[[np.ndarray], np.ndarray], x: np.ndarray, direction: np.ndarray,
             t: float) -> np.ndarray:
    """f at x moved by t along ``direction``."""
    return at(x + t * direction)

