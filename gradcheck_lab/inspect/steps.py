"""``gradcheck-lab steps``: the error of a central difference against its step size.

For one gradient element, |(f(x + h) - f(x - h)) / 2h - symbolic value| over h from 1e-14 to
1e-1 draws the V of float64 finite differences: round-off, about eps·|f|/h, falls as h grows,
truncation, about h²·|f'''|/6, rises. The finite-difference oracle's step,
h = 1e-6·max(1, |x|), should sit near the bottom. The element is the one whose difference at
that step is furthest from the symbolic value (every element is tried when the case has up to
ALL_PARTIALS_MAX_ELEMENTS, as the check does), or else the one with the largest gradient.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from gradcheck_lab.casefile import Case
from gradcheck_lab.casefile.selection import located
from gradcheck_lab.errors import GradcheckLabError, SpecError
from gradcheck_lab.oracles import symbolic
from gradcheck_lab.oracles.finite_difference import ALL_PARTIALS_MAX_ELEMENTS, input_tensors
from gradcheck_lab.program.naming import OUTPUT, format_number, index_text
from gradcheck_lab.subject.function import FunctionUnderTest
from gradcheck_lab.subject.points import Point, make_point
from gradcheck_lab.subject.precision import RELATIVE_STEP
from gradcheck_lab.subject.probes import Probe, make_probes

SMALLEST_STEP, LARGEST_STEP = 1e-14, 1e-1
STEPS_PER_DECADE = 8


@dataclass(frozen=True)
class StepCurve:
    """The error of the central difference at each step, for one element of one input."""

    case: str
    subject: str  # what is differentiated: "output", or a probe such as "output[0,0]"
    input: str
    index: tuple[int, ...]
    x: float  # the element's value at the point
    symbolic: float  # the reference: the symbolic oracle's gradient element
    steps: np.ndarray
    errors: np.ndarray  # |central difference(h) - symbolic|, per step
    check_step: float  # the finite-difference oracle's step for this element
    check_error: float
    chosen_because: str
    kinks: tuple[str, ...] = ()  # the point sits on a kink: differences straddle it

    @property
    def element(self) -> str:
        return self.input + index_text(self.index)

    @property
    def best_step(self) -> float:
        """The step with the smallest error (the first, on a tie); nan if none is finite."""
        if not np.isfinite(self.errors).any():
            return float("nan")
        return float(self.steps[int(np.nanargmin(np.where(np.isfinite(self.errors),
                                                          self.errors, np.nan)))])

    @property
    def best_error(self) -> float:
        finite = self.errors[np.isfinite(self.errors)]
        return float(finite.min()) if finite.size else float("nan")


def step_curve(case: Case, dtype: str, steps: np.ndarray | None = None) -> StepCurve:
    """The curve for the case's worst element at its first point, rounded to ``dtype``."""
    if steps is None:
        decades = round(float(np.log10(LARGEST_STEP / SMALLEST_STEP)))
        steps = np.logspace(np.log10(SMALLEST_STEP), np.log10(LARGEST_STEP),
                            decades * STEPS_PER_DECADE + 1)
    try:
        return _curve(case, make_point(case, dtype), np.asarray(steps, dtype=np.float64))
    except SpecError as exc:  # a rule that fails at this point: say where
        raise located(case, exc) from None


def _curve(case: Case, point: Point, steps: np.ndarray) -> StepCurve:
    program = case.program
    # The first of the check's own probes: the output itself when it is a scalar.
    probe = make_probes(program.output_node.shape, case.seed, case.outputs)[0]
    gradients = symbolic.gradients(program, point, (probe,))
    gradient = gradients.per_probe[0]
    if not gradient:
        raise GradcheckLabError(f"{case.name}: no input is differentiated")
    scalar = _ScalarFunction(case, point, probe)
    name, flat, because = _worst_element(scalar, point, gradient)
    x = point.values[name]
    x0 = float(x.reshape(-1)[flat])
    reference = float(gradient[name].reshape(-1)[flat])
    check_step = RELATIVE_STEP * max(1.0, abs(x0))
    all_steps = np.unique(np.append(steps, check_step))
    with np.errstate(all="ignore"):
        errors = np.array([abs(scalar.central(name, flat, h) - reference) for h in all_steps])
    check_error = float(errors[np.searchsorted(all_steps, check_step)])
    index = tuple(int(i) for i in np.unravel_index(flat, x.shape)) if x.shape else ()
    subject = OUTPUT if probe.label == "output" else probe.label
    return StepCurve(case.name, subject, name, index, x0, reference, all_steps, errors,
                     check_step, check_error, because, gradients.kinks)


class _ScalarFunction:
    """u·f(x) for the probe u, with f the case's function lowered to torch in float64 (the
    impl, when the case has one), as the finite-difference oracle evaluates it."""

    def __init__(self, case: Case, point: Point, probe: Probe) -> None:
        self.case = case
        self.function = FunctionUnderTest(case, "float64", "cpu")
        self.base = {name: np.asarray(values) for name, values in point.values.items()}
        self.cotangent = np.asarray(probe.cotangent, dtype=np.float64).reshape(-1)
        # The lowered spec never writes into its inputs, so their tensors can be made once;
        # an impl might (a bug the check reports), so it gets fresh ones on every call.
        self.tensors: dict[str, Any] | None = None
        if case.impl is None:
            self.tensors = self._tensors()

    def _tensors(self, name: str | None = None,
                 values: np.ndarray | None = None) -> dict[str, Any]:
        import torch

        if name is None:
            return input_tensors(self.case, self.base, "cpu")
        assert values is not None  # given with its name
        if self.tensors is None:
            return input_tensors(self.case, {**self.base, name: values}, "cpu")
        return {**self.tensors, name: torch.tensor(values, dtype=torch.float64)}

    def __call__(self, name: str, values: np.ndarray) -> float:
        import torch

        tensors = self._tensors(name, values)
        with torch.no_grad():
            out = self.function(tensors)
        return float(self.cotangent @ out.detach().to(torch.float64).numpy().reshape(-1))

    def central(self, name: str, flat: int, step: float) -> float:
        """(F(x + h e) - F(x - h e)) / 2h, x + h e computed in float64 as the oracle does."""
        x = self.base[name]
        direction: np.ndarray = np.zeros(x.size)
        direction[flat] = 1.0
        direction = direction.reshape(x.shape)
        return (self(name, x + step * direction) - self(name, x - step * direction)) / (2 * step)


def _worst_element(scalar: _ScalarFunction, point: Point,
                   gradient: dict[str, np.ndarray]) -> tuple[str, int, str]:
    """(input, flat index, why): the largest |difference at the check's step - symbolic|
    relative to the gradient's scale; the largest |gradient| element when there are too many
    elements to try, or when every difference is exact."""
    total = sum(g.size for g in gradient.values())
    largest = max(((name, int(np.nanargmax(np.abs(g).reshape(-1))), float(np.nanmax(np.abs(g))))
                   for name, g in gradient.items() if g.size and np.isfinite(g).any()),
                  key=lambda item: item[2], default=None)
    if largest is None:
        name = next(iter(gradient))
        return name, 0, "no finite gradient element; the first element"
    if total > ALL_PARTIALS_MAX_ELEMENTS:
        return largest[0], largest[1], (f"largest |gradient| ({total} elements: too many to "
                                        "try each)")
    scale = max(largest[2], np.finfo(np.float64).tiny)
    worst: tuple[float, str, int] = (-1.0, "", 0)
    with np.errstate(all="ignore"):
        for name, g in gradient.items():
            x = point.values[name].reshape(-1)
            for flat in range(g.size):
                step = RELATIVE_STEP * max(1.0, abs(float(x[flat])))
                error = abs(scalar.central(name, flat, step) - float(g.reshape(-1)[flat]))
                if np.isfinite(error) and error / scale > worst[0]:
                    worst = (error / scale, name, flat)
    if worst[0] <= 0:
        return largest[0], largest[1], "largest |gradient| (every difference is exact)"
    return worst[1], worst[2], (f"largest finite-difference error at the check's step, "
                                f"{format_number(worst[0], 3)} of the largest gradient")


def draw(curve: StepCurve, path: Path, file: IO[bytes] | None = None) -> None:
    """Log-log plot of the curve, the check's step marked, to ``path`` or to ``file`` where
    given (``path`` opened by the caller, as the command line opens every output); the format
    follows the path's suffix."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.rc_context({"svg.fonttype": "none"}):
        figure = Figure(figsize=(7.0, 4.6))
        FigureCanvasAgg(figure)  # the Agg backend, without switching pyplot's global one
        axes = figure.add_subplot()
        # A difference that is exact (error 0) has no place on a log axis: it is left out.
        shown = np.where(curve.errors > 0, curve.errors, np.nan)
        axes.loglog(curve.steps, shown, marker=".", color="#1f5fa8",
                    label="|central difference − symbolic|")
        axes.axvline(curve.check_step, color="#c0392b", linestyle="--", linewidth=1,
                     label=f"check's step h = 1e-6·max(1, |x|) = "
                           f"{format_number(curve.check_step, 3)}")
        if curve.check_error > 0:
            axes.plot([curve.check_step], [curve.check_error], "o", color="#c0392b")
        if np.isfinite(curve.best_error) and curve.best_error > 0:
            axes.plot([curve.best_step], [curve.best_error], "v", color="#2e7d32",
                      label=f"smallest error {format_number(curve.best_error, 3)} at h = "
                            f"{format_number(curve.best_step, 3)}")
        axes.set_xlabel("step h")
        axes.set_ylabel("absolute error")
        axes.set_title(f"{curve.case}: ∂{curve.subject}/∂{curve.element} at "
                       f"{curve.element} = {format_number(curve.x, 6)}, symbolic "
                       f"{format_number(curve.symbolic, 8)}", fontsize=9)
        axes.grid(True, which="major", linewidth=0.4, alpha=0.6)
        axes.legend(fontsize=8, loc="best")
        figure.savefig(path if file is None else file, format=path.suffix[1:].lower(),
                       bbox_inches="tight")


def summary(curve: StepCurve) -> str:
    """What the plot shows, in a few lines."""
    lines = [
        f"{curve.case}: ∂{curve.subject}/∂{curve.element} at {curve.element} = "
        f"{format_number(curve.x, 8)} ({curve.chosen_because})",
        f"symbolic {format_number(curve.symbolic, 12)}; the check's step "
        f"h = {format_number(curve.check_step, 3)} has error "
        f"{format_number(curve.check_error, 3)}",
    ]
    if np.isfinite(curve.best_error):
        lines.append(f"smallest error {format_number(curve.best_error, 3)} at h = "
                     f"{format_number(curve.best_step, 3)}")
    lines += [f"note: {kink}; differences across it do not converge" for kink in curve.kinks]
    return "\n".join(lines)
