"""How small an error would this check have caught? (``run --sensitivity``)

A pass says the gradients agree within the tolerance; it does not say how wrong a backward
could be and still pass. This module plants relative errors into the autograd gradients and
re-runs the comparison (no oracle runs again: each trial is one ``compare`` call), to find the
smallest relative error r that turns the verdict into a fail:

- one element: the largest-|gradient| element of each input multiplied by (1 + r), the
  element whose error a bug would most plausibly show in and that the tolerance is widest for
  in absolute terms (atol is rtol × the largest element);
- all elements: every element of every input multiplied by (1 + r), a backward that is off by
  a constant factor.

r is searched on a log grid from 1e-16 to 1 (a decade a step), then bisected in log space
between the last grid value that passes and the first that fails. The planted gradients
replace the reruns too, so the nondeterminism check (the same backward twice) does not fire.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from gradcheck_lab.compare import OracleResults, Verdict, compare
from gradcheck_lab.compare.tolerances import ToleranceRule
from gradcheck_lab.oracles.contract import Gradients
from gradcheck_lab.program.naming import index_text

GRID = tuple(10.0 ** exponent for exponent in range(-16, 1))  # 1e-16 .. 1
BISECT_STEPS = 6  # a decade halved 6 times in log space: within a factor of 10**(1/64) ≈ 1.04
# The check's own failures, which planted errors would be reported among.
_CAUGHT_BY = ("gradient", "expect")


def measure(results: OracleResults, rule: ToleranceRule, baseline: Verdict) -> dict[str, Any]:
    """The result's ``sensitivity`` field: ``one_element`` and ``all_elements`` (the smallest
    relative errors caught, or None when none up to 1 is) and ``element`` (which one)."""
    if baseline.status != "pass":
        # Planting an error into gradients that already fail measures nothing.
        return {"note": "not measured: the check fails without a planted error"}
    ag = results.autograd
    largest = _largest_elements(ag)

    def one_element(r: float) -> Verdict:
        return compare(dataclasses.replace(results, autograd=_planted(ag, largest, r)), rule)

    def all_elements(r: float) -> Verdict:
        return compare(dataclasses.replace(results, autograd=_planted(ag, None, r)), rule)

    one, caught = smallest_caught(one_element) if largest else (None, None)
    every, _ = smallest_caught(all_elements)
    return {"one_element": _rounded(one), "all_elements": _rounded(every),
            "element": _caught_element(caught, largest, ag)}


def smallest_caught(trial: Callable[[float], Verdict]) -> tuple[float | None, Verdict | None]:
    """The smallest r whose trial verdict fails (grid, then bisection), with that verdict;
    (None, None) when no r up to 1 fails."""
    below = None
    for r in GRID:
        verdict = trial(r)
        if verdict.status == "fail":
            above, caught = r, verdict
            break
        below = r
    else:
        return None, None
    if below is None:  # caught at the grid's smallest value already
        return above, caught
    for _ in range(BISECT_STEPS):
        middle = float(np.sqrt(below * above))
        verdict = trial(middle)
        if verdict.status == "fail":
            above, caught = middle, verdict
        else:
            below = middle
    return above, caught


def _largest_elements(ag: Gradients) -> dict[str, int]:
    """Per input, the flat index of the largest finite |gradient| over all probes (inputs
    whose gradient is all zero are left out: no relative error shows in a zero)."""
    chosen = {}
    for name in ag.per_probe[0]:
        with np.errstate(all="ignore"):
            magnitude = np.max([np.abs(grads[name].reshape(-1)) for grads in ag.per_probe],
                               axis=0)
        magnitude = np.where(np.isfinite(magnitude), magnitude, 0.0)
        if magnitude.size and magnitude.max() > 0:
            chosen[name] = int(np.argmax(magnitude))
    return chosen


def _planted(ag: Gradients, elements: dict[str, int] | None, r: float) -> Gradients:
    """``ag`` with ``elements`` (input -> flat index; None: every element of every input)
    multiplied by 1 + r, as a deterministic backward would return them every time."""
    per_probe = []
    for grads in ag.per_probe:
        changed = {}
        for name, grad in grads.items():
            grad = np.array(grad, dtype=np.float64)  # a copy: the real result stays intact
            if elements is None:
                grad *= 1.0 + r
            elif name in elements:
                grad.reshape(-1)[elements[name]] *= 1.0 + r
            changed[name] = grad
        per_probe.append(changed)
    return dataclasses.replace(ag, per_probe=tuple(per_probe),
                               reruns={label: per_probe[ag.rerun_probe] for label in ag.reruns})


def _caught_element(verdict: Verdict | None, largest: dict[str, int],
                    ag: Gradients) -> str | None:
    """The planted element the check caught first (``W1[3, 17]``), or None."""
    if not largest:
        return None
    name = next(iter(largest))
    if verdict is not None:
        name = next((m.input for m in verdict.mismatches
                     if m.check in _CAUGHT_BY and m.input in largest), name)
    shape = ag.per_probe[0][name].shape
    if not shape:
        return name
    return name + index_text(np.unravel_index(largest[name], shape))


def _rounded(value: float | None) -> float | None:
    # Three digits: the bisection resolves r to about 4%, more digits would be noise.
    return None if value is None else float(f"{value:.3g}")


def describe(sensitivity: dict[str, Any]) -> str:
    """One line for the terminal report."""
    if "note" in sensitivity:
        return f"sensitivity: {sensitivity['note']}"

    def text(value: float | None) -> str:
        return "not caught up to 1" if value is None else f"{value:.2g}"

    element = f" ({sensitivity['element']})" if sensitivity.get("element") else ""
    return (f"sensitivity: catches a relative error of {text(sensitivity['one_element'])} in "
            f"one element{element}, {text(sensitivity['all_elements'])} in all elements")
