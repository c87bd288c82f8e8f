"""The check of one case, as a pipeline: points -> the three oracles -> the comparison and the
checks beside it -> one Result per dtype × device.

``run_case`` yields the results one at a time, so front doors can stream them. A CaseCheck
holds what one dtype shares across devices (the points and their symbolic gradients, computed
once); ``run(device)`` builds the function under test, runs the oracles at each point into one
OracleResults, compares them, localizes a spec-only gradient failure, checks forward mode and
second order when the case asks, holds every device after the first to the first's gradients,
merges the points, and ends with the training step. A case that cannot be checked becomes an
``error`` result; nothing here stops the other cases.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradcheck_lab.casefile import Case
from gradcheck_lab.compare import OracleResults, Verdict, compare
from gradcheck_lab.compare.findings import Findings, merge_points
from gradcheck_lab.compare.patterns import located
from gradcheck_lab.compare.tolerances import EPSILON, ToleranceRule, rule_for
from gradcheck_lab.errors import CaseError, ImplError, SpecError
from gradcheck_lab.oracles.autograd import cost_clock
from gradcheck_lab.oracles.contract import (
    AT_POINT,
    ON_DEVICE,
    FiniteDifferences,
    Given,
    Gradients,
    load_oracles,
    ran,
)
from gradcheck_lab.pipeline.cost import CostStart, started_or_now
from gradcheck_lab.pipeline.surrogate import with_surrogates, without_surrogates
from gradcheck_lab.program import Program, ProgramBuilder
from gradcheck_lab.results import Result
from gradcheck_lab.settings import Settings
from gradcheck_lab.subject.function import (
    FunctionUnderTest,
    Subject,
    device_available,
    held_threads,
)
from gradcheck_lab.subject.points import Point
from gradcheck_lab.subject.precision import Precision
from gradcheck_lab.subject.probes import Probe, independent
from gradcheck_lab.trace import Traced, UntraceableError


def run_case(case: Case, settings: Settings = Settings(),
             only: tuple[str, str] | None = None) -> Iterator[Result]:
    """One result per dtype × device (or only the one named by ``only``)."""
    since: CostStart | None = started_or_now()  # the first result's cost counts from here
    traced = missing = None
    if case.traced:
        try:
            # Tracing evaluates the traced program in numpy too: its BLAS held to torch's
            # threads as the check's is (idle OpenBLAS threads spin, doubling CPU time).
            with held_threads(settings.threads):
                case, traced = _traced(case, settings)
        except UntraceableError as exc:  # two oracles: autograd against finite differences
            case, missing = _without_spec(case, exc), exc.message
        except (SpecError, ImplError) as exc:
            for dtype in case.dtypes:
                for device in case.devices:
                    if only is None or only == (dtype, device):
                        yield CaseCheck(case, dtype, settings).failed(device, exc)
            return
    for dtype in case.dtypes:
        devices = [d for d in case.devices if only is None or only == (dtype, d)]
        if not devices:
            continue
        check = CaseCheck(case, dtype, settings, missing)
        for device in devices:
            result = check.run(device, since)
            since = None
            yield result if traced is None else _labelled(result, traced)


def _traced(case: Case, settings: Settings = Settings()) -> tuple[Case, Traced]:
    """The case with its spec traced from the impl's forward at the first point (float64)."""
    from gradcheck_lab.subject.points import make_point
    from gradcheck_lab.trace import traced_case

    return traced_case(case, make_point(case, "float64", 0).values, _forward(case),
                       **_trace_bounds(settings))


def _forward(case: Case) -> object:
    """The impl as the tracer calls it: in float64 on the CPU, its own result unchecked."""
    return FunctionUnderTest(case, "float64", "cpu").called


def _trace_bounds(settings: Settings) -> dict[str, object]:
    """The trace runs under the case's budgets: the program-node limit, the time budget."""
    return {"max_steps": settings.limits.max_program_nodes, "seconds": settings.case_timeout}


def _without_spec(case: Case, exc: UntraceableError) -> Case:
    """The case for a check without the symbolic oracle: a program of the forward's output
    shape (zeros, never differentiated), its parts named as a traced tuple's would be."""
    shapes, is_tuple = exc.outputs, exc.is_tuple
    if not shapes:  # the trace stopped early: the forward, called once, says
        shapes, is_tuple = _output_shapes(case)
    builder = ProgramBuilder()
    for spec in case.inputs:
        builder.add_input(spec.name, spec.shape, spec.is_integer, spec.requires_grad)
    parts = [builder.add_tensor_constant(np.zeros(shape), "impl") for shape in shapes]
    if not is_tuple:
        program = builder.build(parts[0])
        return dataclasses.replace(case, program=dataclasses.replace(program, casts=exc.casts))
    named = tuple((f"output{k}", shape) for k, shape in enumerate(shapes))
    program = builder.build(builder.add_call("pack", parts, (), "impl", None))
    return dataclasses.replace(case, program=dataclasses.replace(program, casts=exc.casts),
                               outputs=named)


def _output_shapes(case: Case) -> tuple[tuple[tuple[int, ...], ...], bool]:
    """The shapes of the forward's output parts at the first point, and whether it is a
    tuple."""
    import torch

    from gradcheck_lab.subject.points import make_point

    values = make_point(case, "float64", 0).values
    tensors = {spec.name: torch.tensor(values[spec.name], dtype=torch.int64 if spec.is_integer
                                       else torch.float64) for spec in case.inputs}
    with torch.no_grad():
        out = _forward(case)(tensors)  # type: ignore[operator]
    parts = out if isinstance(out, (tuple, list)) else (out,)
    return tuple(tuple(part.shape) for part in parts), isinstance(out, (tuple, list))


def _term_scale(sym: Gradients | None) -> float:
    """The largest intermediate value of the spec's forward (0: unknown, no spec)."""
    return 0.0 if sym is None else sym.term_scale


def with_spec(case: Case) -> Case:
    """The case with its spec in place: a case without output: traced from its impl (which
    runs here, in this process, as explain and graph need it)."""
    if not case.traced:
        return case
    try:
        return _traced(case)[0]
    except (SpecError, ImplError) as exc:
        message = exc.message if isinstance(exc, SpecError) else str(exc)
        raise CaseError(case.file, case.line_of("impl"), "impl", message) from None


def _labelled(result: Result, traced: Traced) -> Result:
    """A traced spec says so where the symbolic oracle is named, and which casts it saw."""
    oracles = dict(result.oracles)
    if "symbolic" in oracles:
        oracles["symbolic"] = f"{oracles['symbolic']}; {traced.label}"
    notes = list(result.notes)
    notes.append(f"{traced.label}, traced at each point; a traced spec is as right as the "
                 "forward (write output: to check the forward too)")
    if traced.casts:
        notes.append(f"the traced forward casts to {', '.join(traced.casts)} (the identity for "
                     "the derivative)")
    return dataclasses.replace(result, oracles=oracles, notes=notes)


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


class CaseCheck:
    """The checks of one case at one dtype, device after device."""

    def __init__(self, case: Case, dtype: str, settings: Settings,
                 missing: str | None = None) -> None:
        self.case = case
        self.missing = missing  # why there is no spec: the symbolic oracle does not run
        self.dtype = dtype
        self.settings = settings
        self.rule = rule_for(dtype, case.tolerance.get(dtype), nondet=case.nondet_tol)
        self._prepared: list[PreparedPoint] | BaseException | None = None
        # The first device's autograd gradients, which every other device must agree with.
        self.reference_device: tuple[str, Gradients] | None = None
        self.kink_notes: list[str] = []  # points moved off a kink (avoid_kinks)
        self.oracles = load_oracles()

    def result(self, device: str, status: str, message: str, **extra: object) -> Result:
        return Result(case=self.case.name, file=self.case.file, line=self.case.line,
                      dtype=self.dtype, device=device, status=status, message=message,
                      seed=self.case.seed, **extra)

    # -- once per dtype ----------------------------------------------------------------------
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

    def exact_in_place_of_screen(self, results: OracleResults) -> OracleResults:
        """``results`` with the exact oracle in place of the screening sweep; where the exact
        oracle cannot run (sympy's recursion, its own failure), the sweep as such, with its
        float64 bound and a note saying why."""
        from gradcheck_lab.oracles import symbolic

        screen = results.symbolic
        try:
            exact = symbolic.gradients(results.spec, results.point, results.probes, "exact")
        except Exception as exc:
            note = (f"symbolic: the rule sweep, not exact elementwise sympy, which failed here "
                    f"({type(exc).__name__}: {str(exc)[:200]})")
            return dataclasses.replace(results, symbolic=dataclasses.replace(
                screen, screened=False, method=symbolic.METHOD_SWEEP,
                notes=(*screen.notes, note)))
        exact = with_surrogates(exact, self.case.surrogates, results.point, results.probes)
        return dataclasses.replace(results, symbolic=exact)

    def program_at(self, index: int, point: Point) -> Program:
        """The spec at a point: the written one; a traced spec is traced again at every point
        after the first (run_case traced the first), since control flow may differ there."""
        if not self.case.traced or index == 0:
            return self.case.program
        from gradcheck_lab.trace import trace

        program = trace(self.case, point.values, _forward(self.case),
                        **_trace_bounds(self.settings)).program
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

    # -- per device -------------------------------------------------------------------------
    def run(self, device: str, since: CostStart | None = None) -> Result:
        """The result at ``device``; its cost counted from ``since`` where given (what the
        door and ``run_case`` did before: tracing, the first call), else from here."""
        started = time.perf_counter()
        clock = cost_clock(device)  # the check's cost, on its unit's clock
        cost_started = clock() if since is None else since.on(device)
        if not device_available(device):
            return self.result(device, "skip", f"{device} is not available on this machine")
        if self.case.program.output_node.size == 0:
            return self.result(device, "skip", "the output has no elements: there is no "
                                               "gradient to check")
        try:
            # torch's (and numpy's BLAS) threads for the check (``Settings.threads``).
            with held_threads(self.settings.threads):
                points = self.prepared()
                first_sym = points[0].symbolic
                if first_sym is not None and first_sym.kinks:
                    return self.result(device, "skip", "; ".join(first_sym.kinks),
                                       oracles={"symbolic": first_sym.method})
                result, unit_seconds = self.check(device, points)
            checked = clock() - cost_started
            if unit_seconds:
                # The check's cost in forward+backward passes of the case itself, a figure
                # that holds on any machine (timings are separate: --timings).
                result.counts["cost_units"] = round(checked / unit_seconds)
            if self.settings.timings is not None:
                result.timings = self.timings(device)
        except Exception as exc:
            result = self.failed(device, exc)
        result.duration_s = time.perf_counter() - started
        return result

    def check(self, device: str, points: list[PreparedPoint]) -> tuple[Result, float | None]:
        """The result at ``device``, and the seconds of one forward+backward pass (the unit
        of the check's cost)."""
        functions = Subject.on(self.case, self.dtype, device)
        verdicts, skipped = [], []
        sensitivity = None
        for index, prepared in enumerate(points):
            if prepared.symbolic is not None and prepared.symbolic.kinks:
                # only a re-drawn point gets here: point 0 skips
                skipped.append(f"point {index} skipped: {'; '.join(prepared.symbolic.kinks)}")
                continue
            given = self.given_on(functions, prepared)
            results = self.oracle_results(given)
            rule = given.rule
            results, verdict = self.compared(results, given, self.rule_at(
                results.precision.dtype, prepared.program.casts))
            if verdict.status == "skip":  # outside the domain everywhere: nothing to compare
                if index == 0:
                    return self.result(device, "skip", verdict.message, notes=verdict.notes,
                                       oracles=results.methods), results.autograd.unit_seconds
                skipped.append(f"point {index} skipped: {verdict.message}")
                continue
            if index == 0 and self.settings.sensitivity:  # planted errors: comparisons only
                from gradcheck_lab.diagnose.sensitivity import measure

                sensitivity = measure(results, rule, verdict)
            self.beside_the_comparison(results, functions, verdict, rule)
            if index == 0:
                first = results
                verdict.add(self.against_reference_device(results, rule))
            verdicts.append((index, verdict))
        verdict = merge_points(verdicts, self.case.points)
        verdict.notes.extend([*self.kink_notes, *skipped])
        verdict.diagnoses.extend(located(verdict.mismatches, first.autograd.backwards))
        if self.case.training is not None:  # the user's training step, from the first point
            from gradcheck_lab.pipeline.training import check_training

            verdict.add(check_training(self.case, self.dtype, device, first.point,
                                       self.rule, self.settings.symbolic))
        return self.result(
            device, verdict.status, verdict.message, mismatches=verdict.mismatches,
            counts=verdict.counts, tolerance=verdict.tolerance, notes=verdict.notes,
            diagnoses=verdict.diagnoses,
            oracles=first.methods, sensitivity=sensitivity,
        ), first.autograd.unit_seconds

    def given_on(self, subject: Subject, prepared: PreparedPoint) -> Given:
        """What the oracles on a device are handed at one point: the point stage's, and the
        subject there, how precisely it computes, and the rule its gradients are held to."""
        from gradcheck_lab.pipeline.progress import progress_bar

        precision = self.precision(subject, prepared)
        return Given(self.case, prepared.program, prepared.point, prepared.probes,
                     self.settings, found=prepared.found, subject=subject, precision=precision,
                     rule=self.rule_at(precision.gradients, prepared.program.casts),
                     progress=progress_bar)

    def oracle_results(self, given: Given) -> OracleResults:
        """Every device oracle at one point, in order (``ORACLES``), each handed what those
        before it found, beside the point stage's."""
        found = ran(self.oracles, ON_DEVICE, given)
        fd = found.get("finite_difference")
        if fd is not None:  # differences see the true derivative, not a declared surrogate
            found["finite_difference"] = without_surrogates(fd, self.case.surrogates)
        return OracleResults.of(self.case, given.point, given.probes, found, given.precision,
                                given.program, self.missing)

    def per_input_differences(self, results: OracleResults, given: Given) -> FiniteDifferences:
        """Finite differences again, per input (the joint directions cannot say which input
        is wrong)."""
        from gradcheck_lab.oracles.finite_difference.oracle import ORACLE

        found = {**given.found, "symbolic": results.symbolic, "autograd": results.autograd}
        fd = ORACLE.estimates(dataclasses.replace(given, found=found),
                                                joint=False)
        return without_surrogates(fd, self.case.surrogates)

    def compared(self, results: OracleResults, given: Given,
                 value_rule: ToleranceRule) -> tuple[OracleResults, Verdict]:
        """The comparison. Where a screening sweep does not pass, the exact oracle takes its
        place first (``exact_in_place_of_screen``). Where it fails, finite differences take
        every random direction for the inputs that disagree
        (``finite_difference.more_directions``: votes beyond the screening ones); where they
        could not tell symbolic from autograd, their estimates at those elements are
        sharpened (``finite_difference.refine``); the comparison is made again after each,
        before the verdict gives up."""
        from gradcheck_lab.compare.verdict import judged
        from gradcheck_lab.oracles import finite_difference

        rule, functions = given.rule, given.subject
        verdict, undecided = judged(results, rule, value_rule)
        if verdict.status != "pass" and results.symbolic is not None and (
                results.symbolic.screened):
            results = self.exact_in_place_of_screen(results)
            verdict, undecided = judged(results, rule, value_rule)
        fd = results.finite_differences
        if fd is not None and fd.joint is not None and (verdict.joint_unsettled or any(
                m.check == "gradient" for m in verdict.mismatches)):
            # Joint directions cannot say which input is wrong: per-input ones can.
            results = dataclasses.replace(
                results, finite_differences=self.per_input_differences(results, given))
            verdict, undecided = judged(results, rule, value_rule)
        if verdict.status != "fail" or results.finite_differences is None:
            return results, verdict
        contested = {m.input for m in verdict.mismatches
                     if m.check == "gradient" and m.input is not None}
        wider = finite_difference.more_directions(
            functions.reference, results.point, results.probes, results.finite_differences,
            contested, _term_scale(results.symbolic), results.precision)
        if wider is not results.finite_differences:
            results = dataclasses.replace(results, finite_differences=wider)
            verdict, undecided = judged(results, rule, value_rule)
        if verdict.status != "fail" or not undecided:
            return results, verdict
        sharper = finite_difference.refine(functions.reference, results.point, results.probes,
                                           results.finite_differences, undecided,
                                           results.precision, results.symbolic.term_scale)
        results = dataclasses.replace(results, finite_differences=sharper)
        return results, compare(results, rule, value_rule)

    def precision(self, functions: Subject, prepared: PreparedPoint) -> Precision:
        """How precisely the function computes, with the case's ``fd_step`` if it sets one."""
        measured = self.measured_precision(functions, prepared)
        if self.case.fd_step is None:
            return measured
        return dataclasses.replace(measured, step=self.case.fd_step)

    def measured_precision(self, functions: Subject, prepared: PreparedPoint) -> Precision:
        """How precisely an impl computes, measured at the point (the spec lowered by us
        computes in float64); at least as coarse as the dtype it is called in. Without a
        spec, its noise alone says."""
        from gradcheck_lab.oracles import autograd
        from gradcheck_lab.oracles.finite_difference import evaluate_at
        from gradcheck_lab.subject import precision

        if self.case.impl is None:
            return precision.FLOAT64
        function, point, sym = functions.reference, prepared.point, prepared.symbolic
        names = [spec.name for spec in self.case.differentiable_inputs]
        measured = precision.measure(lambda values: evaluate_at(function, values), point,
                                     names, None if sym is None else sym.value,
                                     _term_scale(sym), self.case.seed)
        measured = precision.at_least(measured, function.called_in)
        if measured.coarser_than(self.dtype):
            measured = precision.measure_gradients(
                lambda values: autograd.vjp_at(functions.checked, values, prepared.probes[0]),
                point, names, measured, self.case.seed)
        return measured

    def rule_at(self, dtype: str, casts: tuple[str, ...] = ()) -> ToleranceRule:
        """The case's rule, or that of ``dtype`` when the function under test computes that
        coarsely (measured), or of the coarsest float dtype its traced forward casts a
        traced value to; unless the case sets its own tolerance."""
        cast = max((c for c in casts if c in EPSILON), key=EPSILON.__getitem__, default=None)
        why = "the precision the impl computes at"
        if cast is not None and EPSILON[cast] > EPSILON[dtype]:
            dtype, why = cast, f"the traced forward casts to {cast}"
        if not Precision(0.0, dtype).coarser_than(self.dtype) or self.case.tolerance.get(
                self.dtype):
            return self.rule
        return rule_for(dtype, source=f"derived: sqrt(eps) of {dtype}, {why}",
                        nondet=self.case.nondet_tol)

    def beside_the_comparison(self, results: OracleResults, functions: Subject,
                              verdict: Verdict, rule: ToleranceRule) -> None:
        """At one point, after the comparison: a spec-only gradient failure localized, and
        forward mode and second order when the case asks for them."""
        if verdict.status == "fail" and self.case.impl is None and any(
                m.check == "gradient" for m in verdict.mismatches):
            from gradcheck_lab.diagnose.localize import localize  # which step's backward

            verdict.notes.append(localize(self.case, results.point, results.probes, verdict,
                                          rule, functions.checked.device))
        verdict.add(self.modes(results, functions, verdict, rule))

    def modes(self, results: OracleResults, functions: Subject, verdict: Verdict,
              rule: ToleranceRule) -> Findings:
        """Forward mode (modes: [reverse, forward]) and second order (order: 2)."""
        from gradcheck_lab.subject.probes import make_tangents

        found = Findings()
        forward = "forward" in self.case.modes
        if not forward and self.case.order == 1:
            return found

        tangents = make_tangents({spec.name: spec.shape
                                  for spec in self.case.differentiable_inputs}, self.case.seed)
        if forward:
            found.extend(self.forward_mode(results, functions, tangents, rule))
        if self.case.order == 2:
            gradient = [m for m in verdict.mismatches if m.check == "gradient"]
            first_order_wrong = any(m.odd_oracle != "symbolic" for m in gradient)
            found.extend(self.second_order(results, functions, tangents, first_order_wrong,
                                           rule, first_order_agrees=not gradient))
        return found

    def forward_mode(self, results: OracleResults, functions: Subject,
                     tangents: dict[str, np.ndarray], rule: ToleranceRule) -> Findings:
        from gradcheck_lab.compare.modes import compare_jvp
        from gradcheck_lab.compare.two_way import compare_jvp_two_way
        from gradcheck_lab.oracles import autograd, finite_difference

        ag_jvp = autograd.jacobian_vector_product(functions.checked, results.point, tangents)
        fd_jvp, fd_error = finite_difference.jacobian_vector_product(
            functions.reference, results.point, tangents, _term_scale(results.symbolic),
            results.precision)
        if results.symbolic is None:
            return compare_jvp_two_way(results.probes, ag_jvp, fd_jvp, fd_error, rule)
        return compare_jvp(results.probes, results.symbolic, tangents, ag_jvp, fd_jvp,
                           fd_error, rule, exact=results.exact)

    def second_order(self, results: OracleResults, functions: Subject,
                     tangents: dict[str, np.ndarray], first_order_wrong: bool,
                     rule: ToleranceRule, first_order_agrees: bool = False) -> Findings:
        from gradcheck_lab.compare.modes import compare_hvp
        from gradcheck_lab.compare.two_way import compare_hvp_two_way
        from gradcheck_lab.oracles import autograd, finite_difference, symbolic

        point = results.point
        # A multiple of another cotangent would repeat its Hessian-vector product, scaled.
        probes = results.probes[:len(independent(results.probes))]
        ag_hvp, not_differentiable = autograd.hessian_vector_products(
            functions.checked, point, probes, tangents)
        fd_hvp = finite_difference.hessian_vector_products(functions.reference, point, probes,
                                                           tangents, results.precision)
        if results.symbolic is None:
            if first_order_wrong:  # finite differences of a wrong gradient vouch for nothing
                return Findings(notes=["second order was not compared: without the symbolic "
                                       "oracle it is held to finite differences of autograd's "
                                       "own gradient, which is wrong here"])
            return compare_hvp_two_way(probes, ag_hvp, fd_hvp, rule, not_differentiable)
        sym_hvp, method = symbolic.hessian_vector_products(
            results.spec, point, probes, tangents, self.settings.symbolic)
        input_scale = max((float(np.max(np.abs(point.values[name]))) for name in tangents
                           if point.values[name].size), default=1.0)
        return compare_hvp(probes, sym_hvp, ag_hvp, fd_hvp, rule, not_differentiable,
                           results.symbolic, tangents, input_scale, first_order_wrong,
                           exact=method == symbolic.METHOD_EXACT,
                           first_order_agrees=first_order_agrees)

    def against_reference_device(self, results: OracleResults,
                                 rule: ToleranceRule) -> Findings:
        """The first device checked is the reference; every later one must agree with it."""
        from gradcheck_lab.compare.devices import compare_devices

        device = results.autograd.device
        if self.reference_device is None:
            self.reference_device = (device, results.autograd)
            return Findings()
        reference, reference_autograd = self.reference_device
        return compare_devices(reference_autograd, results, rule, (reference, device))

    def timings(self, device: str) -> dict[str, dict[str, object]]:
        from gradcheck_lab.diagnose.timing import time_case

        stats = time_case(self.case, self.dtype, device, self.settings.timings)
        return {which: value.to_json() for which, value in stats.items()}

    def failed(self, device: str, exc: BaseException) -> Result:
        details = "".join(traceback.format_exception(exc))
        if isinstance(exc, SpecError):
            key = exc.key or "output"
            message = CaseError(self.case.file, self.case.line_of(key), key,
                                exc.message).render()
        elif isinstance(exc, ImplError):
            message = CaseError(self.case.file, self.case.line_of("impl"), "impl",
                                str(exc)).render()
        else:
            message = (f"{self.case.file}:{self.case.line}: internal error while checking "
                       f"{self.case.name}: {type(exc).__name__}: {exc} (run with --debug and "
                       "report it)")
        return self.result(device, "error", message, details=details)
