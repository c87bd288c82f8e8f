"""Expand cases × dtypes × devices, run the three oracles, compare, and yield results.

Results are yielded one at a time, so front doors can stream them (progress, JSONL). A case
that cannot be checked becomes an ``error`` result; nothing here stops the other cases.
"""

from __future__ import annotations

import contextlib
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gradcheck_lab.casefile import Case, ImplRef, LoadLimits, is_case_file, load_file
from gradcheck_lab.errors import CaseError, ImplError, SpecError
from gradcheck_lab.results import Result
from gradcheck_lab.timing import TimingSettings

FD_FOCUS_ELEMENTS = 16


@dataclass(frozen=True)
class RunOptions:
    symbolic_mode: str = "auto"  # auto | exact | sweep
    fd_mode: str = "auto"  # auto | all | projections | exhaustive
    limits: LoadLimits = field(default_factory=LoadLimits)
    timings: TimingSettings | None = None  # time forward and backward of checked cases
    # Seconds a case with an impl may take; such cases then run in a worker process that is
    # stopped when the budget runs out. None: in this process, without a budget.
    case_timeout: float | None = None
    # Measure the smallest planted gradient errors each check catches (gradcheck_lab.sensitivity).
    sensitivity: bool = False


def discover(paths: Iterable[Path]) -> tuple[list[Path], list[Result]]:
    """Case files under ``paths`` (directories searched recursively, sorted); and an error
    result for every path that does not exist or holds no case file."""
    found: list[Path] = []
    problems: list[Result] = []
    for path in paths:
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and is_case_file(p))
            if not files:
                problems.append(_path_error(path, "no *.yaml or *.yml case files here"))
            found.extend(files)
        elif path.is_file():
            found.append(path)
        else:
            problems.append(_path_error(path, "no such file or directory"))
    return found, problems


def run_paths(paths: Iterable[Path], options: RunOptions = RunOptions()) -> Iterator[Result]:
    files, problems = discover(paths)
    yield from problems
    with _Isolation(options) as isolation:
        for path in files:
            yield from run_file_cases(load_file(path, options.limits), options, isolation)


def run_file_cases(loaded: list[Case | CaseError], options: RunOptions,
                   isolation: _Isolation | None = None) -> Iterator[Result]:
    for item in loaded:
        if isinstance(item, CaseError):
            yield error_result(item)
        elif isolation is not None and isolation.applies_to(item):
            yield from isolation.run(item)
        else:
            yield from run_case(item, options)


class _Isolation:
    """Cases with an impl file run in one reused worker process, under the time budget."""

    def __init__(self, options: RunOptions) -> None:
        self.options = options
        self.worker = None

    def __enter__(self) -> _Isolation:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.worker is not None:
            self.worker.stop()

    def applies_to(self, case: Case) -> bool:
        return self.options.case_timeout is not None and isinstance(case.impl, ImplRef)

    def run(self, case: Case) -> list[Result]:
        from gradcheck_lab.isolation import CaseWorker

        if self.worker is None:
            self.worker = CaseWorker()
        return self.worker.run(case, self.options, self.options.case_timeout)


def error_result(error: CaseError) -> Result:
    """A case (or file) that could not be parsed: dtype and device are null."""
    return Result(case=error.case or Path(error.file).stem, file=error.file, line=error.line,
                  dtype=None, device=None, status="error", message=error.render())


def run_case(case: Case, options: RunOptions = RunOptions(),
             only: tuple[str, str] | None = None) -> Iterator[Result]:
    """One result per dtype × device (or only the one named by ``only``)."""
    for dtype in case.dtypes:
        devices = [d for d in case.devices if only is None or only == (dtype, d)]
        if not devices:
            continue
        state = _DtypeState(case, dtype, options)
        for device in devices:
            yield state.run(device)


class _DtypeState:
    """What one dtype shares across devices: the point and the symbolic gradients."""

    def __init__(self, case: Case, dtype: str, options: RunOptions) -> None:
        self.case = case
        self.dtype = dtype
        self.options = options
        self.prepared: tuple | BaseException | None = None
        # The first device's autograd gradients, which every other device must agree with.
        self.reference_device: tuple[str, object] | None = None
        self.kink_notes: list[str] = []  # points moved off a kink (avoid_kinks)

    def result(self, device: str, status: str, message: str, **extra: object) -> Result:
        return Result(case=self.case.name, file=self.case.file, line=self.case.line,
                      dtype=self.dtype, device=device, status=status, message=message,
                      seed=self.case.seed, **extra)

    def prepare(self) -> list[tuple]:
        """Point, probes and symbolic gradients for each of the case's points, computed once
        (a failure is kept too)."""
        from gradcheck_lab.oracles import symbolic
        from gradcheck_lab.oracles.base import make_probes
        from gradcheck_lab.points import make_point

        if self.prepared is None:
            try:
                probes = make_probes(self.case.program.output_node.shape, self.case.seed)
                prepared = []
                for index in range(self.case.points):
                    point = make_point(self.case, self.dtype, index)
                    sym = symbolic.gradients(self.case.program, point, probes,
                                             self.options.symbolic_mode)
                    if sym.kinks and self.case.avoid_kinks:
                        point, sym = self.off_kinks(index, point, probes, sym)
                    prepared.append((point, probes, sym))
                self.prepared = prepared
            except Exception as exc:
                self.prepared = exc
        if isinstance(self.prepared, BaseException):
            raise self.prepared
        return self.prepared

    def off_kinks(self, index: int, point: object, probes: tuple,
                  sym: object) -> tuple[object, object]:
        """avoid_kinks: shift the inputs off the kink (seeded), and say so in the result."""
        from gradcheck_lab.oracles import symbolic
        from gradcheck_lab.points import KINK_ATTEMPTS, KINK_SHIFT, moved_off_kinks

        hit = "; ".join(sym.kinks)
        for attempt in range(1, KINK_ATTEMPTS + 1):
            moved = moved_off_kinks(self.case, point, attempt)
            moved_sym = symbolic.gradients(self.case.program, moved, probes,
                                           self.options.symbolic_mode)
            if not moved_sym.kinks:
                self.kink_notes.append(
                    f"point {index} was {hit}; avoid_kinks moved it off: every real input "
                    f"shifted by about {KINK_SHIFT:g}·max(1,|x|) (seeded draw {attempt})")
                return moved, moved_sym
        return point, sym  # still on a kink: the result is a skip, as without avoid_kinks

    def run(self, device: str) -> Result:
        started = time.perf_counter()
        if device.startswith("cuda") and not _cuda_available(device):
            return self.result(device, "skip", f"{device} is not available on this machine")
        try:
            points = self.prepare()
            first_sym = points[0][2]
            if first_sym.kinks:
                return self.result(device, "skip", "; ".join(first_sym.kinks),
                                   oracles={"symbolic": first_sym.method})
            self.unit_seconds = None
            result = self.check(device, points)
            checked = time.perf_counter() - started
            if self.unit_seconds:
                # The check's cost in forward+backward passes of the case itself, a figure
                # that holds on any machine (timings are separate: --timings).
                result.counts["cost_units"] = round(checked / self.unit_seconds)
            if self.options.timings is not None:
                result.timings = self.timings(device)
        except Exception as exc:
            result = self.failed(device, exc)
        result.duration_s = time.perf_counter() - started
        return result

    def check(self, device: str, points: list[tuple]) -> Result:
        from gradcheck_lab.compare import compare, merge_points
        from gradcheck_lab.oracles import autograd, finite_difference
        from gradcheck_lab.tolerances import rule_for

        rule = rule_for(self.dtype, self.case.tolerance.get(self.dtype))
        verdicts = []
        skipped = []
        sensitivity = None
        for index, (point, probes, sym) in enumerate(points):
            if sym.kinks:  # only a re-drawn point gets here: the first one skips the result
                skipped.append(f"point {index} skipped: {'; '.join(sym.kinks)}")
                continue
            ag = autograd.gradients(self.case, point, probes, self.dtype, device)
            if index == 0:
                self.unit_seconds = ag.unit_seconds
            if self.options.fd_mode == "exhaustive":
                fd = self.exhaustive_differences(device, point, probes, sym)
            else:
                focus = focus_elements(self.case, sym, ag, FD_FOCUS_ELEMENTS)
                fd = finite_difference.estimate(self.case, point, probes, device, focus=focus,
                                                mode=self.options.fd_mode,
                                                term_scale=sym.term_scale)
            verdict = compare(self.case, point, probes, sym, ag, fd, rule)
            if index == 0 and self.options.sensitivity:  # planted errors: compare() calls only
                from gradcheck_lab.sensitivity import measure
                sensitivity = measure(self.case, point, probes, sym, ag, fd, rule, verdict)
            if verdict.status == "fail" and self.case.impl is None and any(
                    m.check == "gradient" for m in verdict.mismatches):
                from gradcheck_lab.localize import localize  # torch's op vs our rule: which step
                verdict.notes.append(localize(self.case, point, probes, verdict, rule, device))
            self.check_modes(device, point, probes, sym, rule, verdict)
            if index == 0:
                self.compare_with_reference_device(device, ag, rule, verdict,
                                                   sym.term_magnitudes)
                oracles = {"symbolic": sym.method, "autograd": ag.method,
                           "finite_difference": fd.method}
            verdicts.append((index, verdict))
        verdict = merge_points(verdicts, self.case.points)
        verdict.notes.extend([*self.kink_notes, *skipped])
        if self.case.training is not None:  # the user's training step, from the first point
            from gradcheck_lab.training import check_training
            check_training(self.case, self.dtype, device, points[0][0], rule, verdict,
                           self.options.symbolic_mode)
        return self.result(
            device, verdict.status, verdict.message, mismatches=verdict.mismatches,
            counts=verdict.counts, tolerance=verdict.tolerance, notes=verdict.notes,
            oracles=oracles, sensitivity=sensitivity,
        )

    def exhaustive_differences(self, device: str, point: object, probes: tuple,
                               sym: object) -> object:
        """Every partial by finite differences, with a progress bar on a terminal."""
        from gradcheck_lab.oracles import exhaustive

        with _progress_bar(f"{self.case.name}[{self.dtype}-{device}] finite differences"
                           ) as progress:
            return exhaustive.estimate(self.case, point, probes, device,
                                       reference=sym.per_probe, term_scale=sym.term_scale,
                                       progress=progress)

    def check_modes(self, device: str, point: object, probes: tuple, sym: object,
                    rule: object, verdict: object) -> None:
        """Forward mode (modes: [reverse, forward]) and second order (order: 2), folded into
        the verdict of the reverse-mode check."""
        from gradcheck_lab.compare import extend
        from gradcheck_lab.compare_modes import compare_hvp, compare_jvp
        from gradcheck_lab.oracles import autograd, finite_difference, symbolic
        from gradcheck_lab.oracles.base import make_tangents

        forward = "forward" in self.case.modes
        if not forward and self.case.order == 1:
            return
        tangents = make_tangents({spec.name: spec.shape
                                  for spec in self.case.differentiable_inputs}, self.case.seed)
        if forward:
            ag_jvp = autograd.jacobian_vector_product(self.case, point, tangents, self.dtype,
                                                      device)
            fd_jvp, fd_error = finite_difference.jacobian_vector_product(
                self.case, point, tangents, device, sym.term_scale)
            extend(verdict, compare_jvp(probes, sym, tangents, ag_jvp, fd_jvp, fd_error, rule,
                                        exact=sym.method == symbolic.METHOD_EXACT))
        if self.case.order == 2:
            sym_hvp = symbolic.hessian_vector_products(self.case.program, point, probes,
                                                       tangents)
            ag_hvp, not_differentiable = autograd.hessian_vector_products(
                self.case, point, probes, tangents, self.dtype, device)
            fd_hvp = finite_difference.hessian_vector_products(self.case, point, probes,
                                                               tangents, device)
            first_order_wrong = any(m.check == "gradient" and m.odd_oracle != "symbolic"
                                    for m in verdict.mismatches)
            input_scale = max((float(np.max(np.abs(point.values[name]))) for name in tangents
                               if point.values[name].size), default=1.0)
            extend(verdict, compare_hvp(probes, sym_hvp, ag_hvp, fd_hvp, rule,
                                        not_differentiable, sym, tangents, input_scale,
                                        first_order_wrong))

    def compare_with_reference_device(self, device: str, ag: object, rule: object,
                                      verdict: object, terms: tuple = ()) -> None:
        from gradcheck_lab.compare import Findings, compare_devices, extend

        if self.reference_device is None:
            self.reference_device = (device, ag)
            return
        reference, reference_ag = self.reference_device
        shapes = {spec.name: spec.shape for spec in self.case.differentiable_inputs}
        found = compare_devices(reference_ag, ag, rule, (reference, device), shapes, terms)
        if found:
            extend(verdict, Findings(mismatches=found, summary=[
                f"{device} vs {reference}: autograd gradients differ "
                f"({found[0].elements} element(s) of {found[0].input})"]))

    def timings(self, device: str) -> dict[str, dict[str, object]]:
        from gradcheck_lab.timing import time_case

        stats = time_case(self.case, self.dtype, device, self.options.timings)
        return {which: value.to_json() for which, value in stats.items()}

    def failed(self, device: str, exc: BaseException) -> Result:
        details = "".join(traceback.format_exception(exc))
        if isinstance(exc, SpecError):
            key = exc.key or "output"
            error = CaseError(self.case.file, self.case.line_of(key), key, exc.message)
            message = error.render()
        elif isinstance(exc, ImplError):
            error = CaseError(self.case.file, self.case.line_of("impl"), "impl", str(exc))
            message = error.render()
        else:
            message = (f"{self.case.file}:{self.case.line}: internal error while checking "
                       f"{self.case.name}: {type(exc).__name__}: {exc} (run with --debug and "
                       "report it)")
        return self.result(device, "error", message, details=details)


def focus_elements(case: Case, sym: object, ag: object, count: int) -> dict[str, np.ndarray]:
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


@contextlib.contextmanager
def _progress_bar(label: str) -> Iterator[Callable[[int, int], None] | None]:
    """A transient rich progress bar on stderr when it is a terminal; nothing otherwise (CI
    logs and pipes get the result lines only)."""
    import sys

    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress("{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=Console(stderr=True),
                  transient=True) as progress:
        from rich.markup import escape

        task = progress.add_task(escape(label), total=None)  # [dtype-device] is not markup
        yield lambda done, total: progress.update(task, completed=done, total=total)


def _cuda_available(device: str) -> bool:
    import torch

    if not torch.cuda.is_available():
        return False
    index = int(device.split(":")[1]) if ":" in device else 0
    return index < torch.cuda.device_count()


def _path_error(path: Path, message: str) -> Result:
    return Result(case=path.stem or str(path), file=str(path), line=None, dtype=None,
                  device=None, status="error", message=f"{path}: path: {message}")
