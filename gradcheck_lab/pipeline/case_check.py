"""The check of one case, as a pipeline: points -> the oracles, in order -> the comparison
and the checks beside it -> one Result per dtype × device.

``run_case`` yields the results one at a time, so front doors can stream them. A CaseCheck
holds what one dtype shares across devices (the point stage: ``points.PointStage``);
``run(device)`` builds the subject under test there, runs the device's oracles at each point
into one OracleResults (``oracles.contract.ran``), compares them (``comparison``), looks
beside the comparison (``modes``: localization, forward mode, second order), holds every device
after the first to the first's gradients, merges the points, and ends with the training step.
A case that cannot be checked becomes an ``error`` result; nothing here stops the other cases.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from collections.abc import Iterator
from typing import Any

from gradcheck_lab.casefile import Case
from gradcheck_lab.compare import OracleResults
from gradcheck_lab.compare.findings import Findings, merge_points
from gradcheck_lab.compare.patterns import located
from gradcheck_lab.compare.tolerances import EPSILON, ToleranceRule, rule_for
from gradcheck_lab.errors import CaseError, ImplError, SpecError
from gradcheck_lab.oracles.autograd import cost_clock
from gradcheck_lab.oracles.contract import (
    ON_DEVICE,
    Given,
    Gradients,
    load_oracles,
    ran,
)
from gradcheck_lab.pipeline.comparison import compared
from gradcheck_lab.pipeline.cost import CostStart, started_or_now
from gradcheck_lab.pipeline.modes import beside_the_comparison
from gradcheck_lab.pipeline.points import PointStage, PreparedPoint
from gradcheck_lab.pipeline.tracing import labelled, with_traced_spec, without_spec
from gradcheck_lab.results import Result
from gradcheck_lab.settings import Settings
from gradcheck_lab.subject.function import (
    Subject,
    device_available,
    held_threads,
)
from gradcheck_lab.subject.precision import Precision
from gradcheck_lab.trace import UntraceableError


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
                case, traced = with_traced_spec(case, settings)
        except UntraceableError as exc:  # two oracles: autograd against finite differences
            case, missing = without_spec(case, exc), exc.message
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
            yield result if traced is None else labelled(result, traced)


class CaseCheck:
    """The checks of one case at one dtype, device after device."""

    def __init__(self, case: Case, dtype: str, settings: Settings,
                 missing: str | None = None) -> None:
        self.case = case
        self.dtype = dtype
        self.settings = settings
        self.rule = rule_for(dtype, case.tolerance.get(dtype), nondet=case.nondet_tol)
        # The first device's autograd gradients, which every other device must agree with.
        self.reference_device: tuple[str, Gradients] | None = None
        self.oracles = load_oracles()
        self.points = PointStage(case, dtype, settings, self.oracles, missing)

    def result(self, device: str, status: str, message: str, **extra: Any) -> Result:
        return Result(case=self.case.name, file=self.case.file, line=self.case.line,
                      dtype=self.dtype, device=device, status=status, message=message,
                      seed=self.case.seed, **extra)

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
                points = self.points.prepared()
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
            precision = precision_of(self.case, self.dtype, functions, prepared)
            rule = self.rule_at(precision.gradients, prepared.program.casts)
            given = self.given_on(functions, prepared, precision, rule)
            results = self.oracle_results(given)
            results, verdict = compared(self.case, results, given, rule, self.rule_at(
                precision.dtype, prepared.program.casts))
            if verdict.status == "skip":  # outside the domain everywhere: nothing to compare
                if index == 0:
                    return self.result(device, "skip", verdict.message, notes=verdict.notes,
                                       oracles=results.methods), results.autograd.unit_seconds
                skipped.append(f"point {index} skipped: {verdict.message}")
                continue
            if index == 0 and self.settings.sensitivity:  # planted errors: comparisons only
                from gradcheck_lab.diagnose.sensitivity import measure

                sensitivity = measure(results, rule, verdict)
            beside_the_comparison(self.case, self.settings, results, functions, verdict, rule)
            if index == 0:
                first = results
                verdict.add(self.against_reference_device(results, rule))
            verdicts.append((index, verdict))
        verdict = merge_points(verdicts, self.case.points)
        verdict.notes.extend([*self.points.kink_notes, *skipped])
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

    def given_on(self, subject: Subject, prepared: PreparedPoint, precision: Precision,
                 rule: ToleranceRule) -> Given:
        """What the oracles on a device are handed at one point: the point stage's, and the
        subject there, how precisely it computes, and the rule its gradients are held to."""
        from gradcheck_lab.pipeline.progress import progress_bar

        return Given(self.case, prepared.program, prepared.point, prepared.probes,
                     self.settings, found=prepared.found, subject=subject, precision=precision,
                     rule=rule, progress=progress_bar)

    def oracle_results(self, given: Given) -> OracleResults:
        """Every device oracle at one point, in order (``ORACLES``), each handed what those
        before it found, beside the point stage's."""
        found = ran(self.oracles, ON_DEVICE, given)
        return OracleResults.of(self.case, given.point, given.probes, found, given.precision,
                                given.program, self.points.missing)

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

        assert self.settings.timings is not None  # asked for: run() calls this only then
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


def precision_of(case: Case, dtype: str, subject: Subject, prepared: PreparedPoint) -> Precision:
    """How precisely the function under test computes at a point, measured (the spec lowered
    by us computes in float64), at least as coarse as the dtype it is called in; without a
    spec its noise alone says. The case's ``fd_step``, where it sets one, as the step."""
    from gradcheck_lab.oracles import autograd
    from gradcheck_lab.oracles.finite_difference import CENTER, evaluate_at
    from gradcheck_lab.subject import precision

    if case.impl is None:
        measured = precision.FLOAT64
    else:
        function, point, sym = subject.reference, prepared.point, prepared.symbolic
        names = [spec.name for spec in case.differentiable_inputs]
        # The point made the centre here: finite differences move from this evaluation,
        # while the function is called in the dtype it was called in for it.
        center = evaluate_at(function, point.values, CENTER)
        center_called_in = function.called_in
        measured = precision.measure(lambda values: evaluate_at(function, values), point,
                                     names, None if sym is None else sym.value,
                                     0.0 if sym is None else sym.term_scale, case.seed, center)
        measured = precision.at_least(measured, function.called_in)
        if measured.dtype == "float64":
            # No round-off seen, yet it returns a coarser dtype (the drop-in casts the outputs
            # of mixed-dtype inputs to the narrowest one's): a float16 output does not move
            # at all under the measurement's float64 steps, which is no sign of precision.
            measured = precision.at_least(measured, function.returned_dtype)
        measured = dataclasses.replace(measured, center_called_in=center_called_in)
        if measured.coarser_than(dtype):
            measured = precision.measure_gradients(
                lambda values: autograd.vjp_at(subject.checked, values, prepared.probes[0]),
                point, names, measured, case.seed)
    if case.fd_step is None:
        return measured
    return dataclasses.replace(measured, step=case.fd_step)

