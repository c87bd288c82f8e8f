"""One point's oracle results: what every check of the comparison is a function of."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gradcheck_lab.casefile import Case
from gradcheck_lab.compare.findings import AUTOGRAD, SYMBOLIC
from gradcheck_lab.compare.findings import FD as FINITE_DIFFERENCE
from gradcheck_lab.compare.tolerances import ToleranceRule, symbolic_rule
from gradcheck_lab.oracles.contract import FiniteDifferences, Gradients
from gradcheck_lab.program import Program
from gradcheck_lab.subject.points import Point
from gradcheck_lab.subject.precision import FLOAT64, Precision
from gradcheck_lab.subject.probes import Probe


@dataclass(frozen=True)
class OracleResults:
    """The case at one point: its probes, and the gradients of the three oracles (finite
    differences may be absent: ``None``; the symbolic oracle too, where no spec could be had:
    then ``missing`` says why, and the check is autograd against finite differences)."""

    case: Case
    point: Point
    probes: tuple[Probe, ...]
    symbolic: Gradients | None
    autograd: Gradients
    finite_differences: FiniteDifferences | None
    # How precisely the function under test computes (subject.precision): float64 for the
    # spec, measured for an impl.
    precision: Precision = FLOAT64
    program: Program | None = None  # the spec at this point; None: the case's own
    missing: str | None = None  # why the symbolic oracle did not run
    # The further oracles of ``ORACLES`` (a complex step, a JAX reference), by name: each
    # compared with autograd element by element (``compare.others``).
    others: Mapping[str, Gradients] = field(default_factory=dict)

    @classmethod
    def of(cls, case: Case, point: Point, probes: tuple[Probe, ...], found: Mapping[str, Any],
           precision: Precision, program: Program, missing: str | None) -> OracleResults:
        """The results of every oracle, by name (``oracles.contract.ran``)."""
        return cls(case, point, probes, found.get(SYMBOLIC), found[AUTOGRAD],
                   found.get(FINITE_DIFFERENCE), precision, program, missing,
                   others={name: result for name, result in found.items()
                           if name not in (SYMBOLIC, AUTOGRAD, FINITE_DIFFERENCE)})

    @property
    def spec(self) -> Program:
        """The program the symbolic oracle differentiated at this point."""
        return self.program if self.program is not None else self.case.program

    @property
    def exact(self) -> bool:
        """Whether the symbolic gradients are exact (elementwise sympy) or the float64 sweep."""
        return self.symbolic is not None and self.symbolic.exact

    @property
    def methods(self) -> dict[str, str]:
        """How each oracle computed, as the result's ``oracles`` reports it."""
        symbolic = (self.symbolic.method if self.symbolic is not None
                    else f"not run: {self.missing}")
        methods = {SYMBOLIC: symbolic, AUTOGRAD: self.autograd.method}
        if self.finite_differences is not None:
            methods[FINITE_DIFFERENCE] = self.finite_differences.method
        methods.update({name: other.method for name, other in self.others.items()})
        return methods

    @property
    def three_way(self) -> Gradients:
        """The symbolic oracle's gradients, in a three-way comparison (where it ran)."""
        assert self.symbolic is not None, "a three-way comparison without the symbolic oracle"
        return self.symbolic

    @property
    def term_scale(self) -> float:
        """The largest intermediate value of the spec's forward (0: unknown, no spec)."""
        return 0.0 if self.symbolic is None else self.symbolic.term_scale

    @property
    def symbolic_rule(self) -> ToleranceRule:
        """The symbolic oracle's own error bound."""
        return symbolic_rule(self.exact, self.symbolic is not None and self.symbolic.screened)

    @property
    def input_names(self) -> list[str]:
        """The differentiated inputs, in the case's order."""
        return [spec.name for spec in self.case.differentiable_inputs]

    def terms(self, name: str, k: int) -> np.ndarray | float:
        """Sum of |terms| behind each gradient element of ``name`` at probe ``k`` (0 where
        the symbolic oracle gave none)."""
        if self.symbolic is None or not self.symbolic.term_magnitudes:
            return 0.0
        return self.symbolic.term_magnitudes[k][name].reshape(-1)

    def output_element(self, flat: int) -> tuple[str | None, int, tuple[int, ...]]:
        """A flat position of the output: with named outputs, which one, and the flat
        position and shape within it; else (None, flat, the output's shape)."""
        start = 0
        for name, shape in self.case.outputs:
            size = int(np.prod(shape, dtype=np.int64))
            if flat < start + size:
                return name, flat - start, shape
            start += size
        return None, flat, self.shape_of(None)

    def shape_of(self, name: str | None) -> tuple[int, ...]:
        """An input's shape, or the output's for ``None``."""
        if name is None:
            return np.shape(self.autograd.value if self.symbolic is None
                            else self.symbolic.value)
        return self.point.values[name].shape
