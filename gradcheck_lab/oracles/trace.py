"""The spec of a case without ``output:``, traced from the impl's own forward.

The impl runs once, in float64 on the CPU under ``torch.no_grad()``, at the case's first point,
inside a ``TorchDispatchMode`` that records every aten op it reaches, with its arguments and
results. A dispatch mode, rather than ``torch.fx`` or ``make_fx``, because it sees what runs
whatever the code is: a custom ``autograd.Function``'s forward (which fx cannot enter), Python
control flow resolved at this point, in-place ops and views, and ops on tensors the forward
makes itself; and it runs below autograd, so the impl's backward plays no part. Each recorded
op is then written into a program of the case language through ``oracles.aten``'s table, and
the symbolic oracle differentiates that program as it would a written spec.

A traced spec is only as right as the forward (a written ``output:`` also checks the forward);
it holds at the traced point (control flow that depends on the values may take another path
elsewhere).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradcheck_lab.casefile import Case
from gradcheck_lab.errors import SpecError
from gradcheck_lab.oracles.aten import refuse, translation
from gradcheck_lab.program import Program
from gradcheck_lab.program.graph import CallWriter, ProgramBuilder

MAX_TRACED_OPS = 100_000  # a forward that runs more aten ops than this is not traced
_OWN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass(frozen=True)
class Traced:
    """A traced spec: the program, how many aten ops the forward ran, and the casts in it."""

    program: Program
    ops: int  # the aten ops the output depends on
    casts: tuple[str, ...]
    outputs: tuple[tuple[str, tuple[int, ...]], ...] = ()  # a tuple output's parts, named

    @property
    def label(self) -> str:
        return f"spec: traced from the impl's forward ({self.ops} ops)"


@dataclass
class _Call:
    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    out: Any
    where: str  # " (at file.py:12)" in the user's code, or ""


def _user_frame() -> str:
    """Where the user's code made the call: the innermost frame outside torch and outside
    gradcheck-lab."""
    frame = sys._getframe(2)
    while frame is not None:
        path = os.path.abspath(frame.f_code.co_filename)
        if not (path.startswith(_OWN_DIR) or f"{os.sep}torch{os.sep}" in path
                or path.startswith("<")):
            return f" (at {os.path.basename(path)}:{frame.f_lineno})"
        frame = frame.f_back
    return ""


def _recorder() -> Any:
    from torch.utils._python_dispatch import TorchDispatchMode

    class Recorder(TorchDispatchMode):
        """Every aten op run under it, in order (up to MAX_TRACED_OPS)."""

        def __init__(self) -> None:
            super().__init__()
            self.calls: list[_Call] = []
            self.overflowed = False

        def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                               kwargs: dict[str, Any] | None = None) -> Any:
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            if len(self.calls) < MAX_TRACED_OPS:
                self.calls.append(_Call(str(func), args, kwargs, out, _user_frame()))
            else:
                self.overflowed = True
            return out

    return Recorder()


class _TraceWriter(CallWriter):
    """Calls written into the program, and which node stands for which traced tensor."""

    def __init__(self, builder: ProgramBuilder) -> None:
        super().__init__(builder, "impl", None)
        self.nodes: dict[int, tuple[Any, int]] = {}  # id(tensor) -> (tensor kept alive, node)

    def bind(self, tensor: Any, node: int) -> None:
        self.nodes[id(tensor)] = (tensor, node)

    def is_traced(self, value: Any) -> bool:
        return id(value) in self.nodes

    def node(self, value: Any) -> int:
        import torch

        if isinstance(value, torch.Tensor):
            if id(value) in self.nodes:
                return self.nodes[id(value)][1]
            return self._constant_tensor(value)
        if isinstance(value, (bool, int, float)):
            return self.const(float(value) if isinstance(value, float) else int(value))
        raise SpecError(f"the traced forward passed {type(value).__name__} where a tensor or "
                        "a number was expected", key="impl")

    def _constant_tensor(self, value: Any) -> int:
        """A tensor the forward made without the inputs: a number, or one number broadcast
        (torch.ones, torch.full, a wrapped scalar); anything else is no constant the
        language can write."""
        flat = value.detach().reshape(-1)
        if flat.numel() == 0 or not bool((flat == flat[0]).all()):
            raise SpecError(f"the traced forward uses a constant tensor of shape "
                            f"{list(value.shape)} made without the inputs; the "
                            "case language has no tensor constants: pass it as an input, or "
                            "write output:", key="impl")
        item = flat[0].item()
        number = self.const(float(item) if isinstance(item, float) else int(item))
        if value.dim() == 0:
            return number
        return self.call("expand", number, size=tuple(value.shape))


def _tensors_in(values: Any) -> list[Any]:
    import torch

    if isinstance(values, torch.Tensor):
        return [values]
    if isinstance(values, (list, tuple)):
        return [t for v in values for t in _tensors_in(v)]
    if isinstance(values, dict):
        return [t for v in values.values() for t in _tensors_in(v)]
    return []


def _write(writer: _TraceWriter, call: _Call) -> None:
    """One recorded aten op written into the program, its results bound to their nodes."""
    if not any(writer.is_traced(t) for t in _tensors_in((call.args, call.kwargs))):
        return  # made from constants alone: a constant, read by value where it is used
    translate = translation(call.name)
    if translate is None:
        raise refuse(call.name, call.where)
    if _in_place(call) and call.args and getattr(call.args[0], "_base", None) is not None:
        raise SpecError(f"the traced forward changes a view in place ({call.name}"
                        f"{call.where}): its base would not see the change; write output:",
                        key="impl")
    try:
        result = translate(writer, call.args, call.kwargs)
    except SpecError as exc:
        raise SpecError(f"{call.name}{call.where}: {exc.message}", key="impl") from None
    outs = call.out if isinstance(call.out, (tuple, list)) else (call.out,)
    results = result if isinstance(result, tuple) else (result,)
    for tensor, node in zip(outs, results, strict=False):
        if node is not None:
            writer.bind(tensor, node)


def _needed(calls: list[_Call], out: Any) -> list[_Call]:
    """The calls the output depends on, in order: reads for control flow (``x.sum() > 0``
    ends in _local_scalar_dense), logging and dead code are left out, so that they neither
    need a translation nor report a kink of their own. Tensors are followed by identity, which
    in-place ops keep: the call that changed a tensor and the one that made it both count."""
    wanted = {id(t) for t in _tensors_in(out)}
    memory = {_storage(t) for t in _tensors_in(out)}
    kept = []
    for call in reversed(calls):
        made = _tensors_in(call.out)
        # An in-place op on a view of a wanted tensor changes it too (then refused in _write).
        changes_wanted = _in_place(call) and bool(memory & {_storage(t) for t in made})
        if changes_wanted or wanted & {id(t) for t in made}:
            kept.append(call)
            used = _tensors_in((call.args, call.kwargs))
            wanted |= {id(t) for t in used}
            memory |= {_storage(t) for t in used}
    return kept[::-1]


def _storage(tensor: Any) -> int:
    return tensor.untyped_storage().data_ptr()


def _in_place(call: _Call) -> bool:
    return call.name.split(".")[1].endswith("_")


def trace(case: Case, values: Mapping[str, np.ndarray]) -> Traced:
    """Run the impl at ``values`` (float64, CPU) and translate what it ran."""
    import torch

    from gradcheck_lab.oracles.function import FunctionUnderTest

    builder = ProgramBuilder()
    writer = _TraceWriter(builder)
    tensors = {}
    for spec in case.inputs:
        tensor = torch.tensor(values[spec.name], dtype=torch.int64 if spec.is_integer
                              else torch.float64)
        writer.bind(tensor, builder.add_input(spec.name, spec.shape, spec.is_integer,
                                              spec.requires_grad))
        tensors[spec.name] = tensor
    function = FunctionUnderTest(case, "float64", "cpu")
    recorder = _recorder()
    with torch.no_grad(), recorder:
        out = function.called(tensors)
    if recorder.overflowed:
        raise SpecError(f"the traced forward ran more than {MAX_TRACED_OPS} aten ops; write "
                        "output:", key="impl")
    needed = _needed(recorder.calls, out)
    for call in needed:
        _write(writer, call)
    output, outputs = _output(writer, out)
    casts = tuple(sorted({str(c.kwargs["dtype"]).removeprefix("torch.")
                          for c in recorder.calls if c.name == "aten._to_copy.default"
                          and c.kwargs.get("dtype") is not None}))
    return Traced(builder.build(output), len(needed), casts, outputs)


def _output(writer: _TraceWriter, out: Any) -> tuple[int, tuple[tuple[str, Any], ...]]:
    """The output node; for a tuple of tensors, each part named (output0, output1, ...) and
    the parts joined, as a case's named outputs are."""
    import torch

    parts = list(out) if isinstance(out, (tuple, list)) else [out]
    for part in parts:
        if not isinstance(part, torch.Tensor) or not writer.is_traced(part):
            raise SpecError("the impl's output does not depend on its inputs (or is not a "
                            f"tensor, or a tuple of them), got {type(part).__name__}: nothing "
                            "to trace", key="impl")
        if not part.is_floating_point():
            raise SpecError("the impl's output is an integer tensor: nothing to "
                            "differentiate", key="impl")
    if len(parts) == 1 and not isinstance(out, (tuple, list)):
        return writer.node(out), ()
    builder = writer.builder
    named = []
    for index, part in enumerate(parts):
        name = f"output{index}"
        builder.lets[name] = writer.node(part)
        named.append((name, tuple(part.shape)))
    joined = builder.add_call("pack", [builder.lets[name] for name, _ in named], (), "impl",
                              None)
    return joined, tuple(named)


def traced_case(case: Case, values: Mapping[str, np.ndarray]) -> tuple[Case, Traced]:
    """The case with its traced spec in place of the placeholder."""
    traced = trace(case, values)
    return dataclasses.replace(case, program=traced.program, outputs=traced.outputs), traced
