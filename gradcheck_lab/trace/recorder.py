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

The parts: ``trace.tape`` (values, steps, the budget), ``trace.identity`` (which value each
tensor holds), ``trace.translate`` (a traced op into steps) and ``trace.untraced`` (the ops
no gradient flows through); here, the dispatch mode that hands each op to one of them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from gradcheck_lab.trace.identity import TracedValues
from gradcheck_lab.trace.tape import Budget, Recording, Tape, Value, leaves
from gradcheck_lab.trace.translate import Translator
from gradcheck_lab.trace.untraced import UntracedOps


class Recorder:
    """Dispatch interception: every aten op the forward runs comes here, and goes to the
    translator where it reads a traced real value, to the untraced ops where it does not;
    ``translatable(name)`` says which aten ops are kept as they are rather than decomposed."""

    def __init__(self, translatable: Callable[[str], bool], metadata_only: Callable[[str], bool],
                 keeps_results: Callable[[str], bool], max_steps: int,
                 deadline: float | None) -> None:
        self.metadata_only = metadata_only
        self.budget = Budget(max_steps, deadline)
        self.tape = Tape()
        self.values = TracedValues(self.tape, self.budget)
        self.translator = Translator(self.values, self.tape, translatable, keeps_results)
        self.untraced = UntracedOps(self.values, self.tape, translatable, metadata_only)

    @property
    def stopped(self) -> str | None:
        """Why the recording stopped, or None: a forward may catch the ``Stop`` and go on."""
        return self.budget.stopped

    def add_input(self, name: str, tensor: Any) -> None:
        """A differentiated input: a traced value (every other input is a constant)."""
        self.values.add_input(name, tensor)

    def value_of(self, tensor: Any) -> Value:
        """The tensor's current value (an output's, once the forward returned)."""
        return self.values.value_of(tensor)

    def recording(self) -> Recording:
        """What the forward ran, for the writer."""
        return self.tape.recording(self.values.inputs)

    def dispatch(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                 mode: Any) -> Any:
        """One aten op as the forward ran it: run for real, recorded when it reads a traced
        value (see the module's docstring)."""
        import torch

        self.budget.check_deadline()
        name = _name_of(func)
        # Only a real value carries a gradient: what is made from integer and bool values
        # alone (a sort's indices gathered, a mask counted) is a constant, which torch
        # computes here with its own dtypes (int plus 1.0 is float32 in torch). Integer and
        # bool results of traced masks stay steps, so that a condition's kinks and branches
        # stay in the program (``UntracedOps._data_step``).
        tensors = [t for t in leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        if self.metadata_only(name) or not any(
                (t.is_floating_point() or t.is_complex()) and self.values.is_traced(t)
                for t in tensors):
            return self.untraced.run(func, name, args, kwargs, tensors)
        return self.translator.traced(func, name, args, kwargs, mode)


_MODE_CLASS: list[type] = []


@functools.cache
def _name_of(func: Any) -> str:
    """An aten overload's name ("aten.mul.Tensor"), made once per op."""
    return str(func)


def recording_mode(recorder: Recorder) -> Any:
    """The dispatch mode that hands every op to ``recorder``."""
    if not _MODE_CLASS:
        _MODE_CLASS.append(_mode_class())
    return _MODE_CLASS[0](recorder)


def _mode_class() -> type:
    from torch.utils._python_dispatch import TorchDispatchMode

    class RecordingMode(TorchDispatchMode):
        """Hands each aten op the forward runs to the recorder."""

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
