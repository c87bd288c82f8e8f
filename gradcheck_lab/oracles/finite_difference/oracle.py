"""The finite-difference oracle of the contract: which estimates to take (every partial,
directions over all inputs at once, or per input where symbolic and autograd disagree), by
what the oracles before it found. The estimates themselves are the package's
(``finite_difference``, ``finite_difference.exhaustive``)."""

from __future__ import annotations

import dataclasses

import numpy as np

from gradcheck_lab.casefile import Case
from gradcheck_lab.oracles.contract import ON_DEVICE, FiniteDifferences, Given, Gradients, HeldTo
from gradcheck_lab.oracles.finite_difference import (
    DIRECTIONS_PER_INPUT,
    SCREENING_DIRECTIONS,
    estimate,
    exhaustive,
    focus_elements,
    joint_screen,
    takes_every_partial,
)

# The elements where symbolic and autograd disagree most that partials are taken at.
FOCUS_ELEMENTS = 16
# What finite differences may spend on an impl's calls without the symbolic oracle, where they
# are the only reference, estimated from one forward+backward (``mode_for``).
TWO_WAY_SECONDS = 10.0


class FiniteDifferenceOracle:
    """Central differences of the subject in float64, each with its own error bar. Beside the
    symbolic oracle they look where it and autograd disagree (``Given.found``), and confirm
    the rest along random directions; without it they are the only reference."""

    name = "finite_difference"
    stage = ON_DEVICE

    def gradients(self, given: Given) -> FiniteDifferences:
        return self.estimates(given, joint=True)

    def estimates(self, given: Given, joint: bool) -> FiniteDifferences:
        """Every partial, batched (exhaustive); along directions over all inputs at once
        where ``joint`` and symbolic and autograd agree on every element (``joint_screen``);
        else per-input directions and partials where the two disagree most. The precision
        measurement's evaluations counted in; a declared surrogate input left out."""
        assert given.subject is not None  # an ON_DEVICE oracle gets the device's subject
        case, point, probes, precision = given.case, given.point, given.probes, given.precision
        sym, ag = given.found.get("symbolic"), given.found["autograd"]
        reference, terms = given.subject.reference, _term_scale(sym)
        mode = mode_for(case, given.settings.fd, sym is None, ag.unit_seconds)
        if mode == "exhaustive":
            label = f"{case.name}[{point.dtype}-{reference.device}] finite differences"
            with given.progress(label) as progress:
                fd = exhaustive.estimate(reference, point, probes,
                                         reference=None if sym is None else sym.per_probe,
                                         term_scale=terms, progress=progress,
                                         precision=precision)
        else:
            # Without the symbolic oracle nothing says where to look: directions only.
            focus = {} if sym is None else focus_elements(
                case, sym, ag, FOCUS_ELEMENTS, agreed_gap(given.rule))
            if joint and joint_screens(case, sym, focus, mode):
                fd = joint_screen(reference, point, probes, term_scale=terms,
                                  precision=precision)
            else:
                fd = estimate(reference, point, probes, focus=focus, mode=mode,
                              term_scale=terms, precision=precision,
                              directions=(SCREENING_DIRECTIONS if sym is not None
                                          else DIRECTIONS_PER_INPUT))
        # A declared surrogate input is left out: differences see the true derivative, which
        # its surrogate differs from on purpose.
        return dataclasses.replace(
            fd, evaluations=fd.evaluations + precision.evaluations,
            per_input={name: estimates for name, estimates in fd.per_input.items()
                       if name not in case.surrogates})


ORACLE = FiniteDifferenceOracle()


def _term_scale(sym: Gradients | None) -> float:
    return 0.0 if sym is None else sym.term_scale


def mode_for(case: Case, setting: str, two_way: bool, unit_seconds: float | None) -> str:
    """How finite differences run: the ``fd`` setting, or for "auto" on an impl, by who else
    is there. Beside the symbolic oracle, which compares every element with autograd, they
    screen along random directions (any error vector shows in a random direction) and take
    partials where the two disagree (``focus_elements``): every partial would cost 4 calls an
    element to confirm what two oracles already agree on. Without it they are the only
    reference, so every element (2 calls each, batched) while that stays within
    TWO_WAY_SECONDS (one forward+backward, ``unit_seconds``, bounds a forward)."""
    if setting != "auto" or case.impl is None:
        return setting
    if not two_way:
        return "projections"
    elements = sum(spec.size for spec in case.differentiable_inputs)
    unit = unit_seconds or 0.0
    return ("exhaustive" if elements * 2 * unit <= TWO_WAY_SECONDS
            or elements <= FOCUS_ELEMENTS else "projections")


def joint_screens(case: Case, sym: Gradients | None, focus: dict[str, np.ndarray],
                  mode: str) -> bool:
    """Whether finite differences first screen along joint directions: beside the symbolic
    oracle, where it agrees with autograd on every element (no focus element), without
    declared surrogates (differences see the true derivative, not those), where every partial
    is not taken anyway. One input too, unless it is so small that it takes its partials
    (``estimate``): its one joint direction costs half its two screening ones, and a
    direction that does not settle hands over to those."""
    inputs = case.differentiable_inputs
    return (sym is not None and not focus and not case.surrogates
            and (len(inputs) > 1 or sum(spec.size for spec in inputs) > SCREENING_DIRECTIONS)
            and not takes_every_partial(case, mode))


def agreed_gap(rule: HeldTo | None) -> float:
    """The relative gap between symbolic and autograd below which an element is agreed on,
    so that finite differences need not look at it: a sixteenth of the rule's rtol (float64
    paths differ by ~1e-15 against an rtol of ~1e-8; a gap within a sixteenth of the
    tolerance cannot turn into a mismatch). 0 (every element a candidate) where the case sets
    an absolute tolerance, which a relative gap cannot be set against."""
    return 0.0 if rule is None or rule.atol is not None else rule.rtol / 16

