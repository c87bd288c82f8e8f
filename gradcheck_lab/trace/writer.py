"""From a recording to a program of the case language: the steps the output needs, each
written through its translation (``trace.aten``), values bound to program nodes.

A step that no translation covers stops the spec with its reason, but only when the output
needs it (a logging line, a shape check or dead code never does). An integer or bool result
whose translation cannot be written (``sum`` of a mask, a reshape of labels) is read as the
constant it is at this point: no gradient flows through it.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np

from gradcheck_lab.errors import SpecError
from gradcheck_lab.program.graph import CallWriter, ProgramBuilder
from gradcheck_lab.trace.aten import refusal, translation
from gradcheck_lab.trace.aten.table import RANDOM
from gradcheck_lab.trace.tape import Recording, Step, Value, values_in


class UntraceableError(SpecError):
    """The forward ran something the case language cannot write: ``op`` (an aten overload;
    empty where the forward as a whole is meant) at ``where`` in the user's code, for
    ``reason``."""

    def __init__(self, op: str, where: str, reason: str) -> None:
        super().__init__(f"the traced forward ran {op}{where}, which the symbolic oracle "
                         f"cannot follow: {reason}" if op else
                         f"the symbolic oracle cannot follow the traced forward: {reason}",
                         key="impl")
        self.op, self.where, self.reason = op, where, reason
        # The forward's output, as far as the recording saw it: its parts' shapes, and
        # whether it was a tuple (what a check without the symbolic oracle needs).
        self.outputs: tuple[tuple[int, ...], ...] = ()
        self.is_tuple = False
        self.casts: tuple[str, ...] = ()  # the float dtypes it cast traced values to


class SpecWriter(CallWriter):
    """``trace.aten.Writer``: calls written into the program, and the node of each value."""

    def __init__(self, builder: ProgramBuilder) -> None:
        super().__init__(builder, "impl", None)
        self.nodes: dict[int, int] = {}  # id(Value) -> node
        self._keep: list[Value] = []  # the Values whose ids key ``nodes``

    def bind(self, value: Value, node: int) -> None:
        self.nodes[id(value)] = node
        self._keep.append(value)

    def node(self, value: Any) -> int:
        """A value's node: a traced value's, a constant tensor's or a number's."""
        if isinstance(value, Value):
            if value.random:
                op, _, where = value.random.partition(" (")
                raise UntraceableError(op, f" ({where}" if where else "", RANDOM)
            known = self.nodes.get(id(value))
            if known is not None:
                return known
            if value.constant is None:
                raise SpecError("internal: a traced value used before the step that makes it",
                                key="impl")
            # A tensor keeps its kind: an integer one stays an integer tensor (an index),
            # where a Python number is a number of the expression.
            node = (self.constant(value.constant) if value.kind == "real"
                    else self.builder.add_tensor_constant(value.constant, self.key,
                                                          self.offset))
            self.bind(value, node)
            return node
        if isinstance(value, (bool, int, float, np.bool_, np.integer, np.floating,
                              np.ndarray)):
            return self.constant(np.asarray(value))
        raise SpecError(f"the traced forward passed {type(value).__name__} where a tensor or "
                        "a number was expected", key="impl")

    def constant(self, array: np.ndarray) -> int:
        """A number as an exact constant where it is one (finite, 0-d, not bool), else a
        tensor constant."""
        if array.shape == () and array.dtype.kind in "iuf" and math.isfinite(float(array)):
            number = array.item()
            return self.const(Fraction(number) if isinstance(number, float) else int(number))
        return self.builder.add_tensor_constant(array, self.key, self.offset)


def _needed(recording: Recording, outputs: list[Value]) -> list[int]:
    """The steps the outputs depend on, in order (values are single-assignment: a step's
    outputs are new values, so following arguments back finds every step needed)."""
    wanted = {id(v) for v in outputs}
    kept = []
    for index in range(len(recording.steps) - 1, -1, -1):
        step = recording.steps[index]
        if any(out is not None and id(out) in wanted for out in step.outs):
            kept.append(index)
            wanted |= {id(v) for v in values_in((step.args, step.kwargs))}
    return kept[::-1]


def write_step(writer: SpecWriter, step: Step, untranslatable: str | None) -> None:
    """One step written into the program, its outputs bound to their nodes."""
    reason = untranslatable and refusal(untranslatable)
    translate = None if reason else translation(step.op)
    if translate is None:
        if _read_as_constants(writer, step):
            return
        raise UntraceableError(step.op if untranslatable in (None, step.op) else untranslatable,
                          step.where, reason or refusal(step.op))
    try:
        result = translate(writer, step.args, step.kwargs, step.outs)
    except UntraceableError:
        raise
    except SpecError as exc:
        if _read_as_constants(writer, step):
            return
        raise UntraceableError(step.op, step.where, exc.message) from None
    except Exception as exc:  # a translation's own bug: the check goes on without the spec
        raise UntraceableError(step.op, step.where, f"its translation failed "
                               f"({type(exc).__name__}: {exc}; a gradcheck-lab bug: please "
                               "report it)") from None
    results = result if isinstance(result, tuple) else (result,)
    for value, node in zip(step.outs, results, strict=False):
        if value is None or node is None:
            continue
        if value.constant is not None and _kind(writer.builder.nodes[node]) != value.kind:
            # torch kept it integer (int % 3) or bool (a mask expanded) where the language
            # promotes: no gradient flows through it either way, and an index must stay an
            # integer, a condition a bool.
            node = writer.builder.add_tensor_constant(value.constant, writer.key)
        writer.bind(value, node)


def _kind(node: Any) -> str:
    return "bool" if node.is_bool else "int" if node.is_integer else "real"


def _read_as_constants(writer: SpecWriter, step: Step) -> bool:
    """Bind an integer or bool step's results to the constants they are at this point."""
    outs = [v for v in step.outs if v is not None]
    if not outs or any(v.constant is None for v in outs):
        return False
    for value in outs:
        assert value.constant is not None  # every one checked above
        writer.bind(value, writer.constant(value.constant))
    return True


def write_program(recording: Recording, inputs: dict[str, tuple[tuple[int, ...], bool, bool]],
                  outputs: list[Value], builder: ProgramBuilder
                  ) -> tuple[SpecWriter, int]:
    """The program of the needed steps; (the writer, the number of steps written).
    ``inputs``: name -> (shape, is_integer, requires_grad)."""
    writer = SpecWriter(builder)
    for name, (shape, is_integer, requires_grad) in inputs.items():
        node = builder.add_input(name, shape, is_integer, requires_grad)
        if name in recording.inputs:
            writer.bind(recording.inputs[name], node)
    needed = _needed(recording, outputs)
    for index in needed:
        write_step(writer, recording.steps[index], recording.untranslatable.get(index))
    return writer, len(needed)


def output_node(writer: SpecWriter, outputs: list[Value], is_tuple: bool
                ) -> tuple[int, tuple[tuple[str, tuple[int, ...]], ...]]:
    """The output node; for a tuple of tensors, each part named (output0, output1, ...) and
    the parts joined, as a case's named outputs are."""
    for value in outputs:
        if value.kind != "real":
            raise SpecError(f"the impl's output is a {value.kind} tensor: nothing to "
                            "differentiate", key="impl")
    if not is_tuple:
        return writer.node(outputs[0]), ()
    builder = writer.builder
    named = []
    for index, value in enumerate(outputs):
        name = f"output{index}"
        builder.lets[name] = writer.node(value)
        named.append((name, value.shape))
    joined = builder.add_call("pack", [builder.lets[name] for name, _ in named], (), "impl",
                              None)
    return joined, tuple(named)

