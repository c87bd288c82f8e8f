"""The point stage of a check: for each of a case's points at one dtype, the point, its
probes, the spec there and the results of the oracles that run once per point (the symbolic
oracle), shared by every device; a point on a kink moved off it where the case asks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gradcheck_lab.casefile import Case
from gradcheck_lab.errors import SpecError
from gradcheck_lab.oracles.contract import AT_POINT, Given, Gradients, Oracle, ran
from gradcheck_lab.pipeline.surrogate import with_surrogates
from gradcheck_lab.pipeline.tracing import forward, trace_bounds
from gradcheck_lab.program import Program
from gradcheck_lab.settings import Settings
from gradcheck_lab.subject.points import Point
from gradcheck_lab.subject.probes import Probe
from gradcheck_lab.trace import UntraceableError


@dataclass(frozen=True)
class PreparedPoint:
    """What every device of one dtype shares at one point: the point, its probes, the spec
    there, and the results of the oracles that run once per point (``AT_POINT``)."""

    point: Point
    probes: tuple[Probe, ...]
    found: dict[str, Any]  # no "symbolic": no spec (autograd vs finite differences)
    program: Program  # the spec at this point (a traced one is traced again at each point)

    @property
    def symbolic(self) -> Gradients | None:
        return self.found.get("symbolic")


class PointStage:
    """The points of one case at one dtype, prepared once (a failure kept, and raised again
    for every device)."""

    def __init__(self, case: Case, dtype: str, settings: Settings, oracles: list[Oracle],
                 missing: str | None = None) -> None:
        self.case = case
        self.dtype = dtype
        self.settings = settings
        self.oracles = oracles
        self.missing = missing  # why there is no spec: the symbolic oracle does not run
        self.kink_notes: list[str] = []  # points moved off a kink (avoid_kinks)
        self._prepared: list[PreparedPoint] | BaseException | None = None

    def prepared(self) -> list[PreparedPoint]:
        """Point, probes and symbolic gradients for each of the case's points, computed once
        (a failure is kept too, and raised again for every device)."""
        if self._prepared is None:
            try:
                self._prepared = [self.prepare(index) for index in range(self.case.points)]
            except Exception as exc:
                self._prepared = exc
        if isinstance(self._prepared, BaseException):
            raise self._prepared
        return self._prepared

    def prepare(self, index: int) -> PreparedPoint:
        from gradcheck_lab.subject.points import make_point
        from gradcheck_lab.subject.probes import make_probes

        probes = make_probes(self.case.program.output_node.shape, self.case.seed,
                             self.case.outputs)
        point = make_point(self.case, self.dtype, index)
        if self.missing is not None:
            return PreparedPoint(point, probes, {}, self.case.program)
        try:
            program = self.program_at(index, point)
        except UntraceableError as exc:  # another path at this point: two oracles there
            self.missing = f"{exc.message} (at point {index})"
            return PreparedPoint(point, probes, {}, self.case.program)
        given = Given(self.case, program, point, probes, self.settings)
        try:
            found = ran(self.oracles, AT_POINT, given)
        except Exception as exc:
            if not self.case.traced:
                raise
            # A traced spec the symbolic oracle cannot evaluate (an op's value refused at
            # this point, or gradcheck-lab's own bug, said as such) leaves the check to the
            # two other oracles: it is never the user's error.
            self.missing = (f"the traced spec cannot be evaluated here: {exc.message}"
                            if isinstance(exc, SpecError) else
                            f"the symbolic oracle failed on the traced spec ("
                            f"{type(exc).__name__}: {exc}; a gradcheck-lab bug: please report "
                            "it)")
            return PreparedPoint(point, probes, {}, program)
        sym = found["symbolic"]
        if sym.kinks and self.case.avoid_kinks:
            point, sym = self.off_kinks(index, point, probes, sym, program)
        found["symbolic"] = with_surrogates(sym, self.case.surrogates, point, probes)
        return PreparedPoint(point, probes, found, program)

    def program_at(self, index: int, point: Point) -> Program:
        """The spec at a point: the written one; a traced spec is traced again at every point
        after the first (run_case traced the first), since control flow may differ there."""
        if not self.case.traced or index == 0:
            return self.case.program
        from gradcheck_lab.trace import trace

        program = trace(self.case, point.values, forward(self.case),
                        **trace_bounds(self.settings)).program
        shape = program.output_node.shape
        if shape != self.case.program.output_node.shape:
            raise SpecError(f"the traced forward's output has shape {list(shape)} at point "
                            f"{index}, {list(self.case.program.output_node.shape)} at the first",
                            key="impl")
        return program

    def off_kinks(self, index: int, point: Point, probes: tuple[Probe, ...],
                  sym: Gradients, program: Program) -> tuple[Point, Gradients]:
        """avoid_kinks: shift the inputs off the kink (seeded), and say so in the result."""
        from gradcheck_lab.oracles import symbolic
        from gradcheck_lab.subject.points import KINK_ATTEMPTS, KINK_SHIFT, moved_off_kinks

        hit = "; ".join(sym.kinks)
        for attempt in range(1, KINK_ATTEMPTS + 1):
            moved = moved_off_kinks(self.case, point, attempt)
            moved_sym = symbolic.gradients(program, moved, probes,
                                           symbolic.mode_for(self.settings.symbolic))
            if not moved_sym.kinks:
                self.kink_notes.append(
                    f"point {index} was {hit}; avoid_kinks moved it off: every real input "
                    f"shifted by about {KINK_SHIFT:g}·max(1,|x|) (seeded draw {attempt})")
                return moved, moved_sym
        return point, sym  # still on a kink: the result is a skip, as without avoid_kinks
