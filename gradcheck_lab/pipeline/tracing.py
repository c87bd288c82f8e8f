"""A spec traced from the impl's forward: the case with its traced program, the case without
a spec where the forward cannot be traced (the check is then autograd against finite
differences), and a traced result labelled as such."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from gradcheck_lab.casefile import Case
from gradcheck_lab.errors import CaseError, ImplError, SpecError
from gradcheck_lab.program import ProgramBuilder
from gradcheck_lab.results import Result
from gradcheck_lab.settings import Settings
from gradcheck_lab.subject.function import FunctionUnderTest
from gradcheck_lab.trace import Traced, UntraceableError


def with_traced_spec(case: Case, settings: Settings = Settings()) -> tuple[Case, Traced]:
    """The case with its spec traced from the impl's forward at the first point (float64)."""
    from gradcheck_lab.subject.points import make_point
    from gradcheck_lab.trace import traced_case

    return traced_case(case, make_point(case, "float64", 0).values, forward(case),
                       **trace_bounds(settings))


def forward(case: Case) -> Callable[[dict[str, Any]], Any]:
    """The impl as the tracer calls it: in float64 on the CPU, its own result unchecked."""
    return FunctionUnderTest(case, "float64", "cpu").called


def trace_bounds(settings: Settings) -> dict[str, Any]:
    """The trace runs under the case's budgets: the program-node limit, the time budget."""
    return {"max_steps": settings.limits.max_program_nodes, "seconds": settings.case_timeout}


def without_spec(case: Case, exc: UntraceableError) -> Case:
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
        out = forward(case)(tensors)
    parts = out if isinstance(out, (tuple, list)) else (out,)
    return tuple(tuple(part.shape) for part in parts), isinstance(out, (tuple, list))


def with_spec(case: Case) -> Case:
    """The case with its spec in place: a case without output: traced from its impl (which
    runs here, in this process, as explain and graph need it)."""
    if not case.traced:
        return case
    try:
        return with_traced_spec(case)[0]
    except (SpecError, ImplError) as exc:
        message = exc.message if isinstance(exc, SpecError) else str(exc)
        raise CaseError(case.file, case.line_of("impl"), "impl", message) from None


def labelled(result: Result, traced: Traced) -> Result:
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
