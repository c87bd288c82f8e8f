"""The spec traced from a forward: the second way to make a case's program, beside a written
``output:``.

The forward runs once, in float64 on the CPU, at the case's point, under a recorder
(``trace.recorder``) that reduces whatever it runs to functional core ATen steps over
values; the steps the output needs are then written into a program of the case language
(``trace.writer``, through the translation table ``trace.aten``), which the symbolic oracle
differentiates as it would a written spec: torch's derivative formulas play no part.

A traced spec is only as right as the forward (a written ``output:`` also checks the forward),
and it holds at the traced point: control flow that depends on the values may take another
path elsewhere, so a case is traced again at each of its points.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradcheck_lab.casefile import Case
from gradcheck_lab.errors import SpecError
from gradcheck_lab.program import Program
from gradcheck_lab.program.graph import DEFAULT_MAX_PROGRAM_NODES, EvaluatedAt, ProgramBuilder
from gradcheck_lab.trace.writer import UntraceableError, output_node, write_program

Forward = Callable[[dict[str, Any]], Any]


@dataclass(frozen=True)
class Traced:
    """A traced spec: the program, and how many aten ops the output depends on."""

    program: Program
    ops: int  # the aten ops the output depends on
    outputs: tuple[tuple[str, tuple[int, ...]], ...] = ()  # a tuple output's parts, named

    @property
    def casts(self) -> tuple[str, ...]:
        """The float dtypes the forward cast traced values to."""
        return self.program.casts

    @property
    def label(self) -> str:
        return f"spec: traced from the impl's forward ({self.ops} ops)"


def trace(case: Case, values: Mapping[str, np.ndarray], forward: Forward, *,
          max_steps: int = DEFAULT_MAX_PROGRAM_NODES, seconds: float | None = None) -> Traced:
    """Run ``forward`` at ``values`` (float64, CPU) and write what it ran as a program.
    ``max_steps`` bounds the traced ops recorded and ``seconds`` the time the forward may
    run under the recorder: past either, the trace stops at once with the reason. The
    forward runs in grad mode, its differentiated inputs requiring grad, as the autograd
    oracle runs it (a forward that branches on grad mode takes the path checked)."""
    import torch

    from gradcheck_lab.trace.aten import KEEPS_RESULTS, METADATA_ONLY, TABLE
    from gradcheck_lab.trace.recorder import Recorder, recording_mode
    from gradcheck_lab.trace.tape import Stop

    deadline = None if seconds is None else time.monotonic() + seconds
    recorder = Recorder(TABLE.__contains__, METADATA_ONLY.__contains__,
                        KEEPS_RESULTS.__contains__, max_steps, deadline)
    tensors = _input_tensors(case, values)
    for spec in case.differentiable_inputs:  # any other input is a constant, as torch
        recorder.add_input(spec.name, tensors[spec.name])  # computes what it alone makes
    try:
        with torch.enable_grad(), recording_mode(recorder):
            out = forward(tensors)
        if recorder.stopped is not None:  # the forward caught our Stop and went on
            raise Stop(recorder.stopped)
    except Stop as stop:
        raise UntraceableError("", "", stop.reason) from None
    parts = list(out) if isinstance(out, (tuple, list)) else [out]
    if not parts or not all(isinstance(part, torch.Tensor) for part in parts):
        raise SpecError("the impl's output is not a tensor (or a tuple of them), got "
                        f"{type(out).__name__}: nothing to trace", key="impl")
    outputs = [recorder.value_of(part) for part in parts]
    recording = recorder.recording()
    inputs = {spec.name: (spec.shape, spec.is_integer, spec.requires_grad)
              for spec in case.inputs}
    is_tuple = isinstance(out, (tuple, list))
    try:
        writer, ops = write_program(recording, inputs, outputs, ProgramBuilder())
        output, named = output_node(writer, outputs, is_tuple)
        program = dataclasses.replace(writer.builder.build(output),
                                      stops=tuple(dict.fromkeys(recording.stops)),
                                      casts=recording.casts)
        program = dataclasses.replace(program, evaluated_at=_holds(program, values, parts))
    except UntraceableError as exc:
        exc.outputs, exc.is_tuple = tuple(v.shape for v in outputs), is_tuple
        exc.casts = recording.casts
        raise
    return Traced(program, ops, named)


def _input_tensors(case: Case, values: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The inputs as the forward gets them: reals in float64, the differentiated ones
    requiring grad; integer and bool inputs in their own dtype (int32 pivots, masks)."""
    import torch

    tensors = {}
    for spec in case.inputs:
        array = np.asarray(values[spec.name])
        if spec.is_integer and array.dtype.kind in "biu":
            tensors[spec.name] = torch.from_numpy(array.copy())
            continue
        tensor = torch.tensor(array, dtype=torch.int64 if spec.is_integer else torch.float64)
        tensors[spec.name] = tensor.requires_grad_(spec.requires_grad and not spec.is_integer)
    return tensors


# How far the traced program's value may be from the forward's before the trace is called
# wrong: far above the rounding of a long float64 program or of a cast to float32 (which the
# program computes as the identity), far below any mistranslated op.
VALUE_RTOL = 1e-5


def _holds(program: Program, values: Mapping[str, np.ndarray],
           parts: list[Any]) -> EvaluatedAt:
    """The program computes what the forward returned, and depends on a differentiated
    input wherever autograd says the output does; else the trace is not the forward's
    (something ran outside torch, or a translation does not hold here) and the check goes
    on without it. Its nodes' values there, as it computed them."""
    from gradcheck_lab.program.interpret import NUMPY, input_values, interpret
    from gradcheck_lab.trace.tape import as_numpy

    moved = program.depending_on(name for name, index in program.inputs.items()
                                 if program.nodes[index].needs_grad)
    if program.output not in moved and any(part.requires_grad for part in parts):
        raise UntraceableError("", "", "autograd connects its output to the "
                               "differentiated inputs, but no torch op the trace saw does "
                               "(computed outside torch, from numpy?)")
    given = input_values(program, values)
    nodes = interpret(program, given, [program.output], NUMPY)
    value = nodes[program.output].reshape(-1)
    expected = np.concatenate([as_numpy(part).reshape(-1) for part in parts])
    finite = bool(np.isfinite(expected).all() and np.isfinite(value).all())
    magnitudes = np.abs(expected)
    scale = float(np.max(magnitudes if finite else magnitudes[np.isfinite(expected)],
                         initial=1.0))
    with np.errstate(all="ignore"):
        if finite:  # np.isclose's own test, without its handling of infinities and NaN
            wrong = np.abs(value - expected) > VALUE_RTOL * scale + VALUE_RTOL * magnitudes
        else:
            wrong = ~np.isclose(value, expected, rtol=VALUE_RTOL, atol=VALUE_RTOL * scale,
                                equal_nan=True)
    if np.any(wrong):
        at = int(np.flatnonzero(wrong)[0])
        raise UntraceableError("", "", f"the traced program gives {value[at]:.10g} "
                               f"where the forward gave {expected[at]:.10g} (output element "
                               f"{at}): the translation does not hold at this point (a sign a "
                               "decomposition leaves free at a degenerate point, or a "
                               "gradcheck-lab bug: please report it)")
    return EvaluatedAt({name: np.array(values[name]) for name in program.inputs
                        if name in values}, nodes)


def traced_case(case: Case, values: Mapping[str, np.ndarray], forward: Forward,
                **bounds: Any) -> tuple[Case, Traced]:
    """The case with its traced spec in place of the placeholder."""
    traced = trace(case, values, forward, **bounds)
    return dataclasses.replace(case, program=traced.program, outputs=traced.outputs), traced


__all__ = ["Forward", "Traced", "UntraceableError", "trace", "traced_case"]
