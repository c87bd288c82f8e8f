"""What a forward computes, recorded op by op as functional core ATen steps over values.

The forward runs once, for real, under ``torch.no_grad()`` inside a ``TorchDispatchMode`` that
sees every aten op below autograd: a custom ``autograd.Function``'s forward (which
``torch.fx`` cannot enter), Python control flow resolved at this point (``make_fx`` refuses a
``bool(tensor)``, which real code does to check its inputs), and ops on tensors the forward
makes itself. A dispatch mode also costs what the forward costs plus a few microseconds per
op, where ``make_fx`` with functionalization took 30-80 ms for a 40-op colour conversion.

What ``make_fx(functionalize(...), core_aten_decompositions())`` would give is done here as
the ops run:

* **Decomposition to core ATen.** An op the translation table (``trace.aten``) does not
  name is run through torch's forward decomposition (core ATen's table, then torch's own
  composite kernel) inside the mode, so that its parts are recorded instead; an op with
  neither is recorded as untranslatable, which matters only if the output needs it.
* **Functionalization.** Every tensor has a current value (``Value``). A view remembers its
  root and the view steps from it; an in-place op becomes its functional twin, and a write
  into a view becomes a scatter into the root (``trace.views``), after which the root's other
  views are read from it again. ``copy_``, ``fill_``, ``x[0] = y`` are values like any other.
* **Constants.** A tensor made without reading an input (a factory, a closure's tensor, a
  buffer, a library's module-level table) is a constant of the program, its value taken
  where a traced op reads it. Integer and bool results that no translation covers (argmax,
  sort's indices, nonzero) are constants too: no gradient flows through them.

The recording is bounded: more traced steps than ``max_steps`` or a forward running past
``deadline`` stops it at once with the reason.
"""

from __future__ import annotations

import functools
import os
import sys
import time
import types
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gradcheck_lab.errors import PassThrough
from gradcheck_lab.trace import views

_OWN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TORCH_DIR = f"{os.sep}torch{os.sep}"


@dataclass(eq=False)
class Value:
    """One tensor value of the forward: an input, a step's result, or a constant."""

    shape: tuple[int, ...]
    kind: str  # "real", "int", "bool" or "complex"
    input: str | None = None  # the input's name
    step: int | None = None  # the index of the step that made it
    # A constant: its value when a traced step first read it (numpy float64, int64 or
    # bool; a copy, since the forward may write into the tensor later), and the tensor's
    # version counter then (a later read after such a write is a new constant). A step's
    # integer or bool result keeps its value here too.
    constant: np.ndarray | None = field(default=None, repr=False)
    version: int = 0
    # A step's real result as the run computed it, kept for the ops whose translation must
    # match a convention of the kernel (the signs of LAPACK's eigenvectors).
    recorded: np.ndarray | None = field(default=None, repr=False)
    # The random draw it depends on ("aten.rand_like.default (at f.py:3)"), constants made
    # from it included: a spec that needs it is refused, as the draw differs each call.
    random: str | None = None

    @property
    def is_constant(self) -> bool:
        return self.input is None and self.step is None


@dataclass(frozen=True)
class Step:
    """One functional aten op over values: ``args``/``kwargs`` hold Values where the op
    read tensors (lists of them for cat), numbers and None as given."""

    op: str  # the aten overload, e.g. "aten.add.Tensor"
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    outs: tuple[Value | None, ...]
    where: str  # " (at file.py:12)" in the user's code, or ""


@dataclass
class Recording:
    steps: list[Step]
    inputs: dict[str, Value]
    # Where the forward stops a gradient by its own doing: "x.detach() (at f.py:3)", "a value
    # computed from integer data (at f.py:9)".
    stops: tuple[str, ...]
    # Ops that ran on traced values with no translation and no decomposition, by step.
    untranslatable: dict[int, str]
    casts: tuple[str, ...]  # dtypes the forward cast traced values to


class Stop(PassThrough):
    """Raised inside the forward to stop a recording that ran past its bounds or met what it
    cannot record (a BaseException, so that a forward's own ``except Exception`` does not
    swallow it)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def as_numpy(tensor: Any) -> np.ndarray:
    """A copy of a real, integer or bool tensor as float64, int64 or bool numpy."""
    import torch

    tensor = tensor.detach()
    if tensor.layout != torch.strided:  # the program's values are dense arrays
        raise Stop(f"a {str(tensor.layout).removeprefix('torch.')} tensor reaches the forward; "
                   "the symbolic oracle follows dense tensors only")
    if tensor.dtype == torch.bool:
        return tensor.cpu().numpy().copy()
    if tensor.is_floating_point():
        return tensor.to(torch.float64).cpu().numpy().copy()
    return tensor.to(torch.int64).cpu().numpy().copy()


def kind_of(tensor: Any) -> str:
    import torch

    if tensor.dtype == torch.bool:
        return "bool"
    if tensor.is_complex():
        return "complex"
    return "real" if tensor.is_floating_point() else "int"


def user_frame() -> str:
    """Where the user's code made the current call: the innermost frame outside torch and
    outside gradcheck-lab."""
    frame = sys._getframe(2)
    while frame is not None:
        path = frame.f_code.co_filename
        if not (path.startswith(_OWN_DIR) or _TORCH_DIR in path or path.startswith("<")):
            return f" (at {os.path.basename(path)}:{frame.f_lineno})"
        frame = frame.f_back
    return ""


def _leaves(values: Any) -> Iterator[Any]:
    if isinstance(values, (list, tuple)):
        for value in values:
            yield from _leaves(value)
    elif isinstance(values, dict):
        for value in values.values():
            yield from _leaves(value)
    else:
        yield values


def values_in(values: Any) -> list[Value]:
    """The Values among a step's arguments (lists of them included)."""
    return [v for v in _leaves(values) if isinstance(v, Value)]


def _mapped(values: Any, convert: Callable[[Any], Any]) -> Any:
    if isinstance(values, (list, tuple)):
        return type(values)(_mapped(v, convert) for v in values)
    if isinstance(values, dict):
        return {k: _mapped(v, convert) for k, v in values.items()}
    return convert(values)


@functools.cache
def _decompositions() -> Mapping[Any, Callable[..., Any]]:
    """torch's core aten decompositions, built once per process: building the table walks
    every registered op (about 45 ms, more than a small check's whole cost)."""
    from torch._decomp import core_aten_decompositions

    return types.MappingProxyType(dict(core_aten_decompositions()))


class Recorder:
    """Records the forward's steps (see the module's docstring); ``translatable(name)`` says
    which aten ops are kept as they are rather than decomposed."""

    def __init__(self, translatable: Callable[[str], bool], metadata_only: Callable[[str], bool],
                 keeps_results: Callable[[str], bool], max_steps: int,
                 deadline: float | None) -> None:
        self.translatable = translatable
        self.metadata_only = metadata_only
        self.keeps_results = keeps_results
        self.max_steps = max_steps
        self.deadline = deadline
        self.steps: list[Step] = []
        self.untranslatable: dict[int, str] = {}
        self.casts: set[str] = set()
        self.stops: list[str] = []  # where the forward's own code stops a gradient
        self.inputs: dict[str, Value] = {}
        # id(tensor) -> (the tensor, kept alive so that its id is not reused; its value)
        self.values: dict[int, tuple[Any, Value]] = {}
        self.aliases = views.Aliases()
        self.stopped: str | None = None
        self._decompositions = _decompositions()

    # -- values ------------------------------------------------------------------------------
    def add_input(self, name: str, tensor: Any) -> None:
        """A differentiated input: a traced value (every other input is a constant)."""
        value = Value(tuple(tensor.shape), kind_of(tensor), input=name)
        self.inputs[name] = value
        self.values[id(tensor)] = (tensor, value)

    def value_of(self, tensor: Any) -> Value:
        """The tensor's current value: its own, read from its root again if the root was
        written since, or a constant."""
        stale = self.aliases.stale(tensor)
        if stale is not None:
            root, chain = stale
            self.aliases.refreshed(tensor)
            root_value = self.value_of(root)
            if (root_value.is_constant or root_value.kind in ("int", "bool")
                    or any(step.op == views.DETACH for step in chain)):
                # No gradient flows through it: the view's own content is its value.
                self.values.pop(id(tensor), None)
                return self.value_of(tensor)
            value = self._replayed(root_value, chain)
            self._bind(tensor, value)
            return value
        known = self.values.get(id(tensor))
        if known is not None and known[0] is tensor and not (
                known[1].is_constant and known[1].version != tensor._version):
            return known[1]
        value = Value(tuple(tensor.shape), kind_of(tensor), constant=as_numpy(tensor),
                      version=tensor._version)
        self.values[id(tensor)] = (tensor, value)
        return value

    def is_traced(self, tensor: Any) -> bool:
        if self.aliases.stale(tensor) is not None:
            return not self.value_of(tensor).is_constant
        known = self.values.get(id(tensor))
        return known is not None and known[0] is tensor and not known[1].is_constant

    def _bind(self, tensor: Any, value: Value) -> None:
        self.values[id(tensor)] = (tensor, value)

    def add_step(self, op: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                 outs: tuple[Any, ...], where: str | None = None) -> tuple[Value | None, ...]:
        """A step reading ``args`` (tensors given as Values already) and making ``outs`` (the
        real tensors, or (shape, kind) pairs for steps with no tensor of their own)."""
        if len(self.steps) >= self.max_steps:
            self.stop(f"the forward ran more than {self.max_steps} traced ops (the program-"
                      "node limit, --max-program-nodes)")
        index = len(self.steps)
        random = next((v.random for v in values_in((args, kwargs)) if v.random), None)
        values = []
        for out in outs:
            if out is None:
                values.append(None)
            elif isinstance(out, tuple):
                values.append(Value(out[0], out[1], step=index))
            else:
                value = Value(tuple(out.shape), kind_of(out), step=index)
                if value.kind in ("int", "bool"):
                    # Kept: where its translation fails, an integer or bool result is read
                    # as the constant it is at this point (no gradient flows through it).
                    value.constant = as_numpy(out)
                self._bind(out, value)
                values.append(value)
        for value in values:
            if value is not None:
                value.random = random
        self.steps.append(Step(op, args, kwargs, tuple(values),
                               user_frame() if where is None else where))
        return tuple(values)

    def stop(self, reason: str) -> None:
        self.stopped = reason
        raise Stop(reason)

    def check_deadline(self) -> None:
        if self.stopped is not None:
            raise Stop(self.stopped)
        if self.deadline is not None and time.monotonic() > self.deadline:
            self.stop("the forward ran past the case's time budget while it was traced "
                      "(--case-timeout)")

    # -- views -------------------------------------------------------------------------------
    def _replayed(self, root: Value, chain: tuple[views.ViewStep, ...]) -> Value:
        """The view's value read from its root's current value, step by step."""
        value = root
        for step in chain:
            (value,) = self.add_step(step.op, (value, *step.args), dict(step.kwargs),
                                     ((step.shape, root.kind),), where="")
        return value

    def write(self, target: Any, value: Value) -> None:
        """``target`` now holds ``value``: its root gets it scattered in through the view
        steps between them, and the root's other views are read from it again."""
        root, chain = self.aliases.root_and_chain(target)
        if value.kind in ("int", "bool"):
            # Integer and bool tensors carry no gradient: after the write (done for real
            # already), the root and its views are constants, read from their content.
            for tensor in (root, target):
                self.values.pop(id(tensor), None)
            self.aliases.written(root)
            return
        if not chain:
            self._bind(target, value)
            self.aliases.written(target)
            return
        where = user_frame()  # the write's own line, for the steps it becomes
        current = self.value_of(root)
        bases = [current]
        for step in chain[:-1]:
            (stepped,) = self.add_step(step.op, (bases[-1], *step.args), dict(step.kwargs),
                                       ((step.shape, current.kind),), where=where)
            bases.append(stepped)
        written = value
        for step, base in zip(reversed(chain), reversed(bases), strict=True):
            scatter = views.scatter(step, base, written)
            if scatter is None:
                self.untranslatable[len(self.steps)] = (
                    f"a write into a view made by {step.op} (no functional form of it)")
            op, args, kwargs = scatter or ("aten.copy.default", (base, written), {})
            (written,) = self.add_step(op, args, kwargs, ((base.shape, base.kind),),
                                       where=where)
        self._bind(root, written)
        self.aliases.written(root)
        self._bind(target, value)
        self.aliases.refreshed(target)

    # -- the ops -----------------------------------------------------------------------------
    def dispatch(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                 mode: Any) -> Any:
        """One aten op as the forward ran it: run for real, recorded when it reads a traced
        value (see the module's docstring)."""
        import torch

        self.check_deadline()
        name = str(func)
        # Only a real value carries a gradient: what is made from integer and bool values
        # alone (a sort's indices gathered, a mask counted) is a constant, which torch
        # computes here with its own dtypes (int plus 1.0 is float32 in torch). Integer and
        # bool results of traced masks stay steps, so that a condition's kinks and branches
        # stay in the program (``_data_step``).
        tensors = [t for t in _leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        if self.metadata_only(name) or not any(
                (t.is_floating_point() or t.is_complex()) and self.is_traced(t)
                for t in tensors):
            out = func(*args, **kwargs)
            self._constant_effects(func, args, kwargs, out)
            if torch.Tag.nondeterministic_seeded in func.tags:
                self._random(func, name, args, kwargs, out)
            elif not self.metadata_only(name) and any(self.is_traced(t) for t in tensors):
                self._data_step(func, name, args, kwargs, out, tensors)
            return out
        mutated = _mutated_arguments(func)
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
        self.stops.append(f"a detach(){user_frame()}")
        random = self.value_of(args[0]).random
        # Tied to its base for writes through it (x.data.clamp_()); read, it is a constant.
        self.aliases.viewed(out, args[0], views.detached(out))
        self.values.pop(id(out), None)
        self.value_of(out).random = random  # a detached draw is still a draw
        return out

    def _recorded(self, func: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                  untranslatable: bool = False) -> Any:
        import torch

        out = func(*args, **kwargs)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        tensors = tuple(t if isinstance(t, torch.Tensor) else None for t in outs)
        if not untranslatable and name == "aten._to_copy.default" and kwargs.get("dtype"):
            self.casts.add(str(kwargs["dtype"]).removeprefix("torch."))
        if untranslatable and not any(t is not None and (t.is_floating_point() or t.is_complex())
                                      for t in tensors):
            return out  # integer and bool results (argmax, nonzero): constants, read as such
        if untranslatable:
            self.untranslatable[len(self.steps)] = name
        values = self.add_step(name, self._as_values(args), self._as_values(kwargs), tensors)
        if self.keeps_results(name):
            for value, tensor in zip(values, tensors, strict=True):
                if value is not None and tensor is not None:
                    value.recorded = as_numpy(tensor)
        return out

    def _as_values(self, values: Any) -> Any:
        import torch

        return _mapped(values, lambda v: self.value_of(v) if isinstance(v, torch.Tensor)
                       else v)

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
        base = self.value_of(args[0])
        for part, step in zip(outs, steps, strict=True):
            if not self.translatable(step.op):
                self.untranslatable[len(self.steps)] = step.op
            self.add_step(step.op, (base, *step.args), dict(step.kwargs), (part,))
            self.aliases.viewed(part, args[0], step)
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
        value = self.value_of(result)
        if result.dtype != target.dtype:  # in place keeps the target's dtype
            (value,) = self.add_step("aten._to_copy.default", (value,), {"dtype": target.dtype},
                                     ((tuple(target.shape), kind_of(target)),))
        func(*args, **kwargs)  # the real write, unrecorded (the mode is off in here)
        self.write(target, value)
        return target

    def _writes_beside(self, func: Any, name: str, mutated: list[int], args: tuple[Any, ...],
                       kwargs: dict[str, Any]) -> Any:
        """An op that writes into arguments beside what it returns (batch norm's running
        statistics, rrelu's noise, an out= variant): its results are its step's, as any
        op's; each argument it writes into gets a value no translation gives, which stops
        a spec only where the output needs it."""
        import torch

        inputs = (self._as_values(args), self._as_values(kwargs))
        out = func(*args, **kwargs)
        targets = _written(func, mutated, args, kwargs)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        results = tuple(t if isinstance(t, torch.Tensor) and not any(t is x for x in targets)
                        else None for t in outs)
        if any(t is not None for t in results):
            if not self.translatable(name):
                self.untranslatable[len(self.steps)] = name
            self.add_step(name, *inputs, results)
        for target in targets:
            self.untranslatable[len(self.steps)] = (
                f"{name} (what it writes into an argument: no translation gives that)")
            (value,) = self.add_step(name, *inputs, ((tuple(target.shape), kind_of(target)),))
            self.write(target, value)
        return out

    def _constant_effects(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                          out: Any) -> None:
        """An op run without recording it: a view still ties its result to its root (a
        later traced write into either must reach the other); a write makes its target
        the constant it now holds, and where the target is a view of a traced root (a
        mask written in place, ``x.data.clamp_()``) the root gets it scattered in; its
        results keep any random draw their arguments were made from."""
        import torch

        outs = out if isinstance(out, (tuple, list)) else (out,)
        if func.is_view and args:
            for part, step in zip(outs, views.steps_of(str(func), args, kwargs, outs),
                                  strict=True):
                self.aliases.viewed(part, args[0], step)
        for target in _written(func, _mutated_arguments(func), args, kwargs):
            self.values.pop(id(target), None)
            root, _ = self.aliases.root_and_chain(target)
            if root is not target and self.is_traced(root):
                self.write(target, self.value_of(target))
            else:
                self.aliases.written(root)
        random = next((v.random for v in self._known_values((args, kwargs)) if v.random), None)
        if random:
            for part in outs:
                if isinstance(part, torch.Tensor):
                    self.value_of(part).random = random

    def _known_values(self, values: Any) -> list[Value]:
        """The Values already bound to the tensors among ``values``."""
        import torch

        known = (self.values.get(id(t)) for t in _leaves(values)
                 if isinstance(t, torch.Tensor))
        return [entry[1] for entry in known if entry is not None]

    def _data_step(self, func: Any, name: str, args: tuple[Any, ...],
                   kwargs: dict[str, Any], out: Any, tensors: list[Any]) -> None:
        """An op on traced masks or indices (already run): where all it gives is integer
        or bool data and the language writes it (``unsqueeze`` of a comparison, ``&`` of
        two), a step, the mask's chain kept whole; else its results are constants (that
        remember a random draw they were made from)."""
        import torch

        outs = out if isinstance(out, (tuple, list)) else (out,)
        if _mutated_arguments(func) or not all(
                isinstance(t, torch.Tensor) and not (t.is_floating_point() or t.is_complex())
                for t in outs):
            if any(isinstance(t, torch.Tensor) and t.is_floating_point() for t in outs):
                # A real value from the input's integer data (a histogram's threshold): its
                # gradient stops here, as autograd's does, where the function may jump.
                self.stops.append(f"a value computed from integer data{user_frame()}")
            random = next((self.value_of(t).random for t in tensors
                           if self.value_of(t).random), None)
            for part in outs:
                if random and isinstance(part, torch.Tensor):
                    self.value_of(part).random = random
            return
        if func.is_view:
            steps = views.steps_of(name, args, kwargs, outs)
            if len(steps) == 1 and self.translatable(steps[0].op):
                step = steps[0]
                self.add_step(step.op, (self.value_of(args[0]), *step.args),
                              dict(step.kwargs), (outs[0],))
            return
        if self.translatable(name):
            self.add_step(name, self._as_values(args), self._as_values(kwargs),
                          tuple(outs))

    def _random(self, func: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                out: Any) -> None:
        """A random draw is no constant: each call of the forward draws again. Its real
        results become values of an untranslatable step, so that a spec whose output needs
        them is refused (and one that only logs them is not)."""
        import torch

        mutated = [args[i] for i in _mutated_arguments(func) if i < len(args)]
        outs = out if isinstance(out, (tuple, list)) else (out,)
        for tensor in mutated or outs:
            if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
                continue
            self.untranslatable[len(self.steps)] = name
            (value,) = self.add_step(name, self._as_values(args), self._as_values(kwargs),
                                     ((tuple(tensor.shape), kind_of(tensor)),))
            value.random = f"{name}{self.steps[-1].where}"
            self.write(tensor, value)


_FUNCTION_FILE = f"{os.sep}torch{os.sep}autograd{os.sep}function.py"


def _inside_custom_forward() -> bool:
    """Whether a custom ``autograd.Function``'s forward is running (its ``apply`` frame is
    on the stack): there autograd is off, and a detach says nothing of the gradient."""
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_name == "apply" and frame.f_code.co_filename.endswith(
                _FUNCTION_FILE):
            return True
        frame = frame.f_back
    return False


def _written(func: Any, mutated: list[int], args: tuple[Any, ...],
             kwargs: dict[str, Any]) -> list[Any]:
    """The tensors an op writes into: positional or keyword (out=), lists flattened
    (``_foreach_mul_``)."""
    import torch

    arguments = func._schema.arguments
    given = [args[i] if i < len(args) else kwargs.get(arguments[i].name) for i in mutated]
    return [t for t in _leaves(given) if isinstance(t, torch.Tensor)]


def _mutated_arguments(func: Any) -> list[int]:
    """The positions of the arguments an op writes into (``self`` for ``add_``; an out=
    keyword is past the positional ones)."""
    return [i for i, argument in enumerate(func._schema.arguments)
            if argument.alias_info is not None and argument.alias_info.is_write]


def _functional_twin(func: Any) -> Any:
    """``aten.add.Tensor`` for ``aten.add_.Tensor``; None where there is none."""
    import torch

    packet = func._schema.name.split("::")[1]
    if not packet.endswith("_"):
        return None
    overload = func._overloadname
    twin_packet = getattr(torch.ops.aten, packet[:-1], None)
    return getattr(twin_packet, overload, None) if twin_packet is not None else None


_MODE_CLASS: list[type] = []


def recording_mode(recorder: Recorder) -> Any:
    """The dispatch mode that hands every op to ``recorder``."""
    if not _MODE_CLASS:
        _MODE_CLASS.append(_mode_class())
    return _MODE_CLASS[0](recorder)


def _mode_class() -> type:
    from torch.utils._python_dispatch import TorchDispatchMode

    class RecordingMode(TorchDispatchMode):
        def __init__(self, recorder: Recorder) -> None:
            super().__init__()
            self.recorder = recorder

        def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                               kwargs: dict[str, Any] | None = None) -> Any:
            return self.recorder.dispatch(func, args, kwargs or {}, self)

    # torch wraps a mode's __torch_dispatch__ to keep torch.compile out of it, importing
    # torch._dynamo (a second, with sympy) on its first call; the recorder never runs under
    # torch.compile, so the wrapper's cached target is the function itself.
    raw = getattr(RecordingMode.__dict__["__torch_dispatch__"], "__wrapped__", None)
    if raw is not None:
        raw.__dynamo_disable = raw
    return RecordingMode
