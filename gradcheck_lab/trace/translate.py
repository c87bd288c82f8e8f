"""An aten call that reads a traced real value, made into steps of the recording: kept whole
where the translation table names it, else decomposed to core ATen as it runs; in-place ops
and views functionalized (see ``trace.recorder``'s docstring)."""

from __future__ import annotations

import functools
import os
import sys
import types
from collections.abc import Callable, Mapping
from typing import Any

from gradcheck_lab.trace import views
from gradcheck_lab.trace.identity import TracedValues
from gradcheck_lab.trace.tape import Tape, as_numpy, kind_of, leaves, user_frame


@functools.cache
def _decompositions() -> Mapping[Any, Callable[..., Any]]:
    """torch's core aten decompositions, built once per process: building the table walks
    every registered op (about 45 ms, more than a small check's whole cost)."""
    from torch._decomp import core_aten_decompositions

    return types.MappingProxyType(dict(core_aten_decompositions()))


class Translator:
    """Translating a traced aten call into steps: a translatable op as one step, any other
    through its decomposition (its parts recorded instead), an in-place op as its functional
    twin and a write, a view as its functional step tied to its root, a detach as a stop."""

    def __init__(self, values: TracedValues, tape: Tape, translatable: Callable[[str], bool],
                 keeps_results: Callable[[str], bool]) -> None:
        self.values = values
        self.tape = tape
        self.translatable = translatable
        self.keeps_results = keeps_results
        self._decompositions = _decompositions()

    def traced(self, func: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
               mode: Any) -> Any:
        """The op, which reads a traced real value: run for real and recorded."""
        mutated = mutated_arguments(func)
        if mutated:
            return self._in_place(func, name, mutated, args, kwargs, mode)
        if name == "aten.detach.default" and not _inside_custom_forward():
            return self._detached(func, args, kwargs)
        if func.is_view:
            return self._view(func, name, args, kwargs, mode)
        if self.translatable(name):
            return self._recorded(func, name, args, kwargs)
        out = self._composite(func, args, kwargs, mode)
        if out is not NotImplemented:
            return out
        return self._recorded(func, name, args, kwargs, untranslatable=True)

    def _detached(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """``x.detach()`` in autograd code: no gradient flows through it, so its value is a
        constant of the spec at this point (inside a custom Function's forward, where
        autograd does not run, it is only an alias)."""
        out = func(*args, **kwargs)
        self.tape.stops.append(f"a detach(){user_frame()}")
        random = self.values.value_of(args[0]).random
        # Tied to its base for writes through it (x.data.clamp_()); read, it is a constant.
        self.values.aliases.viewed(out, args[0], views.detached(out))
        self.values.forget(out)
        self.values.value_of(out).random = random  # a detached draw is still a draw
        return out

    def _recorded(self, func: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                  untranslatable: bool = False) -> Any:
        import torch

        out = func(*args, **kwargs)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        tensors = tuple(t if isinstance(t, torch.Tensor) else None for t in outs)
        if not untranslatable and name == "aten._to_copy.default" and kwargs.get("dtype"):
            self.tape.casts.add(str(kwargs["dtype"]).removeprefix("torch."))
        if untranslatable and not any(t is not None and (t.is_floating_point() or t.is_complex())
                                      for t in tensors):
            return out  # integer and bool results (argmax, nonzero): constants, read as such
        if untranslatable:
            self.tape.untranslatable_next(name)
        values = self.values.add_step(name, self.values.as_values(args),
                                      self.values.as_values(kwargs), tensors)
        if self.keeps_results(name):
            for value, tensor in zip(values, tensors, strict=True):
                if value is not None and tensor is not None:
                    value.recorded = as_numpy(tensor)
        return out

    def _view(self, func: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
              mode: Any) -> Any:
        """A view of a traced tensor: its value is the view's functional step; it stays
        tied to its root, so that a write through it (or into the root) is seen by both."""
        out = func(*args, **kwargs)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        steps = views.steps_of(name, args, kwargs, outs)
        if not all(self.translatable(step.op) for step in steps):
            # A view op with neither a view step nor a translation (movedim, unflatten):
            # torch's own composite of view ops, run again under the mode; its result is
            # a new view of the same input.
            composite = self._composite(func, args, kwargs, mode)
            if composite is not NotImplemented:
                return composite
        base = self.values.value_of(args[0])
        for part, step in zip(outs, steps, strict=True):
            if not self.translatable(step.op):
                self.tape.untranslatable_next(step.op)
            self.values.add_step(step.op, (base, *step.args), dict(step.kwargs), (part,))
            self.values.aliases.viewed(part, args[0], step)
        return out

    def _composite(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                   mode: Any) -> Any:
        """The op's forward decomposition (core ATen's table, then torch's own composite
        kernel), run under the mode: its parts are recorded instead of it. NotImplemented
        where it has none."""
        decomposition = self._decompositions.get(func)
        with mode:
            if decomposition is not None:
                return decomposition(*args, **kwargs)
            return func.decompose(*args, **kwargs)

    def _in_place(self, func: Any, name: str, mutated: list[int], args: tuple[Any, ...],
                  kwargs: dict[str, Any], mode: Any) -> Any:
        """An in-place op (``add_``, ``copy_``, ``x[0] = y``): its functional twin, recorded
        (or decomposed) under the mode, then the write of its result into the target."""
        import torch

        functional = _functional_twin(func)
        if (functional is None or mutated != [0] or functional.is_view
                or not isinstance(args[0], torch.Tensor)):
            # No twin, several targets, or a change of the target's shape or strides in
            # place (t_, unsqueeze_: what earlier views read would change): untranslatable.
            return self._writes_beside(func, name, mutated, args, kwargs)
        target = args[0]
        with mode:
            result = functional(*args, **kwargs)
        value = self.values.value_of(result)
        if result.dtype != target.dtype:  # in place keeps the target's dtype
            value = self.values.add_shaped_step("aten._to_copy.default", (value,),
                                                {"dtype": target.dtype},
                                                (tuple(target.shape), kind_of(target)))
        func(*args, **kwargs)  # the real write, unrecorded (the mode is off in here)
        self.values.write(target, value)
        return target

    def _writes_beside(self, func: Any, name: str, mutated: list[int], args: tuple[Any, ...],
                       kwargs: dict[str, Any]) -> Any:
        """An op that writes into arguments beside what it returns (batch norm's running
        statistics, rrelu's noise, an out= variant): its results are its step's, as any
        op's; each argument it writes into gets a value no translation gives, which stops
        a spec only where the output needs it."""
        import torch

        inputs = (self.values.as_values(args), self.values.as_values(kwargs))
        out = func(*args, **kwargs)
        targets = written(func, mutated, args, kwargs)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        results = tuple(t if isinstance(t, torch.Tensor) and not any(t is x for x in targets)
                        else None for t in outs)
        if any(t is not None for t in results):
            if not self.translatable(name):
                self.tape.untranslatable_next(name)
            self.values.add_step(name, *inputs, results)
        for target in targets:
            self.tape.untranslatable_next(
                f"{name} (what it writes into an argument: no translation gives that)")
            value = self.values.add_shaped_step(name, *inputs,
                                                (tuple(target.shape), kind_of(target)))
            self.values.write(target, value)
        return out


_FUNCTION_FILE = f"{os.sep}torch{os.sep}autograd{os.sep}function.py"


def _inside_custom_forward() -> bool:
    """Whether a custom ``autograd.Function``'s forward is running (its ``apply`` frame is
    on the stack): there autograd is off, and a detach says nothing of the gradient."""
    frame: types.FrameType | None = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_name == "apply" and frame.f_code.co_filename.endswith(
                _FUNCTION_FILE):
            return True
        frame = frame.f_back
    return False


def written(func: Any, mutated: list[int], args: tuple[Any, ...],
            kwargs: dict[str, Any]) -> list[Any]:
    """The tensors an op writes into: positional or keyword (out=), lists flattened
    (``_foreach_mul_``)."""
    import torch

    arguments = func._schema.arguments
    given = [args[i] if i < len(args) else kwargs.get(arguments[i].name) for i in mutated]
    return [t for t in leaves(given) if isinstance(t, torch.Tensor)]


def mutated_arguments(func: Any) -> list[int]:
    """The positions of the arguments an op writes into (``self`` for ``add_``; an out=
    keyword is past the positional ones)."""
    return list(_written_positions(func))


@functools.cache
def _written_positions(func: Any) -> tuple[int, ...]:
    """``mutated_arguments`` read from the schema once per op (the recorder asks at every op
    the forward runs)."""
    return tuple(i for i, argument in enumerate(func._schema.arguments)
                 if argument.alias_info is not None and argument.alias_info.is_write)


def _functional_twin(func: Any) -> Any:
    """``aten.add.Tensor`` for ``aten.add_.Tensor``; None where there is none."""
    import torch

    packet = func._schema.name.split("::")[1]
    if not packet.endswith("_"):
        return None
    overload = func._overloadname
    twin_packet = getattr(torch.ops.aten, packet[:-1], None)
    return getattr(twin_packet, overload, None) if twin_packet is not None else None
