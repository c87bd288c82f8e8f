"""What a gradient mismatch looks like, when it has an obvious cause: a sign error, a wrong
constant, a transposed gradient, a backward that ignores grad_output, one element off, or no
gradient at all. Each pattern holds on every element of every probe within the comparison's
own bounds, or it is not said.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gradcheck_lab.compare.findings import agree
from gradcheck_lab.program.naming import element_index, index_text
from gradcheck_lab.results import Mismatch


@dataclass(frozen=True)
class Probed:
    """One input at one probe: symbolic and autograd, flat, their bounds (summed: two values
    agree within ``bound``), and where the comparison found them to agree."""

    symbolic: np.ndarray
    autograd: np.ndarray
    bound: np.ndarray
    agrees: np.ndarray


def diagnose(name: str, shape: tuple[int, ...], probes: Sequence[Probed],
             scales_with_cotangent: bool, reference: str = "symbolic") -> str | None:
    """The one pattern that explains every disagreement of ``name``, worded for the report,
    or None. ``scales_with_cotangent``: the probes' cotangents differ, so a right gradient
    differs between them too. ``reference``: what autograd is held to (Probed.symbolic holds
    finite differences' partials in a check without the symbolic oracle)."""
    if not probes or not all(np.isfinite(p.symbolic).all() and np.isfinite(p.autograd).all()
                             for p in probes):
        return None
    if all(not p.symbolic.any() for p in probes):
        return None  # a zero truth: no ratio or order to speak of
    if all(not p.autograd.any() for p in probes):
        return (f"autograd's gradient of {name} is zero on every element: no gradient flows "
                "back to it (detached, computed under no_grad, or not connected)")
    if scales_with_cotangent and len(probes) > 1 and _ignores_cotangent(probes):
        return (f"autograd's gradient of {name} does not scale with grad_output: the "
                "backward does not multiply by (or ignores) the incoming gradient")
    factor = _constant_factor(probes)
    if factor is not None:
        simple, c = factor
        if simple == "-1":
            return (f"autograd = -1 × {reference} on every element of {name}: a sign error")
        if simple is not None:
            return (f"autograd = {simple} × {reference} on every element of {name}: a missing "
                    "or extra factor")
        if _size(shape) == 1:
            return None  # any two numbers have a ratio: only a simple one says something
        return (f"autograd = c × {reference} on every element of {name}, with c = "
                f"{c:.6g}: a wrong constant")
    if _transposed(shape, probes):
        return (f"autograd = {reference}ᵀ on every element of {name}: the gradient is "
                "transposed (rows and columns swapped, or broadcast along the wrong dim)")
    wrong: set[int] = set()
    for p in probes:
        wrong.update(int(f) for f in np.flatnonzero(~p.agrees))
    if len(wrong) == 1 and _size(shape) > 1:
        (flat,) = wrong
        return (f"one element of {name} differs, {name}"
                f"{index_text(element_index(flat, shape))}; every other agrees")
    return None


def _size(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape, dtype=np.int64))


def _ignores_cotangent(probes: Sequence[Probed]) -> bool:
    """Autograd the same at every probe where the truth is not."""
    first = probes[0]
    same_autograd = all(agree(p.autograd, first.autograd, p.bound).all() for p in probes[1:])
    same_truth = all(agree(p.symbolic, first.symbolic, p.bound).all() for p in probes[1:])
    return same_autograd and not same_truth


# Beyond this, an integer factor or its reciprocal is a wrong constant, not a missing n.
_LARGEST_SIMPLE = 64


def _constant_factor(probes: Sequence[Probed]) -> tuple[str | None, float] | None:
    """c with autograd = c·symbolic on every element of every probe (c ≠ 1), and c as a
    reader writes it where it is an integer n or 1/n within the bounds (a missing 2 in a
    square's derivative, a mean's 1/n read as a sum): ("-1", -1.0), ("1/3", 0.333...); or
    (None, c) for any other constant. None when no constant fits."""
    s = np.concatenate([p.symbolic for p in probes])
    a = np.concatenate([p.autograd for p in probes])
    bound = np.concatenate([p.bound for p in probes])
    norm = float(s @ s)
    if norm == 0:
        return None
    c = float(a @ s) / norm
    if not np.isfinite(c) or c == 0 or all(p.agrees.all() for p in probes):
        return None
    candidates = [(str(n), float(n)) for n in {round(c)} if n not in (0, 1)]
    if abs(c) < 1:
        candidates += [(f"{'-' if c < 0 else ''}1/{n}", 1 / n * np.sign(c))
                       for n in {round(1 / abs(c))} if n > 1]
    for text, value in candidates:
        if abs(value) <= _LARGEST_SIMPLE and 1 / abs(value) <= _LARGEST_SIMPLE and agree(
                a, value * s, bound).all():
            return text, value
    return (None, c) if agree(a, c * s, bound).all() else None


def _transposed(shape: tuple[int, ...], probes: Sequence[Probed]) -> bool:
    """A square matrix's gradient with rows and columns swapped."""
    if len(shape) != 2 or shape[0] != shape[1] or shape[0] < 2:
        return False
    return all(agree(p.autograd, p.symbolic.reshape(shape).T.reshape(-1), p.bound).all()
               for p in probes) and not all(p.agrees.all() for p in probes)


def located(mismatches: Sequence[Mismatch], backwards: Sequence[str]) -> list[str]:
    """Where autograd is the odd one out in any check, the custom Functions' backward
    methods its graph holds (``oracles.autograd.custom_backwards``): what to open."""
    if not backwards or not any(m.odd_oracle == "autograd" for m in mismatches):
        return []
    more = f" and {len(backwards) - 3} more" if len(backwards) > 3 else ""
    return [f"the backward under test: {', '.join(backwards[:3])}{more}"]
