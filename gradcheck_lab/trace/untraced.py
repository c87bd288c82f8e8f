"""The ops that read no traced real value, and the metadata-only ones: run for real, their
results constants of the program, save what must still reach the recording (see
``UntracedOps``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gradcheck_lab.trace import views
from gradcheck_lab.trace.identity import TracedValues
from gradcheck_lab.trace.tape import Tape, kind_of, user_frame
from gradcheck_lab.trace.translate import mutated_arguments, written


class UntracedOps:
    """Constants and metadata-only ops: an op no gradient flows through runs unrecorded,
    but its views stay tied to their roots, its writes reach a traced root, a random draw
    is marked as one, and an op on traced masks that the language writes stays a step."""

    def __init__(self, values: TracedValues, tape: Tape, translatable: Callable[[str], bool],
                 metadata_only: Callable[[str], bool]) -> None:
        self.values = values
        self.tape = tape
        self.translatable = translatable
        self.metadata_only = metadata_only

    def run(self, func: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
            tensors: list[Any]) -> Any:
        """The op, which reads no traced real value (``tensors``: the tensors it reads)."""
        import torch

        out = func(*args, **kwargs)
        self._constant_effects(func, args, kwargs, out)
        if torch.Tag.nondeterministic_seeded in func.tags:
            self._random(func, name, args, kwargs, out)
        elif not self.metadata_only(name) and any(self.values.is_traced(t) for t in tensors):
            self._data_step(func, name, args, kwargs, out, tensors)
        return out

    def _constant_effects(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                          out: Any) -> None:
        """An op run without recording it: a view still ties its result to its root (a
        later traced write into either must reach the other); a write makes its target
        the constant it now holds, and where the target is a view of a traced root (a
        mask written in place, ``x.data.clamp_()``) the root gets it scattered in; its
        results keep any random draw their arguments were made from."""
        import torch

        values = self.values
        outs = out if isinstance(out, (tuple, list)) else (out,)
        if func.is_view and args:
            for part, step in zip(outs, views.steps_of(str(func), args, kwargs, outs),
                                  strict=True):
                values.aliases.viewed(part, args[0], step)
        for target in written(func, mutated_arguments(func), args, kwargs):
            values.forget(target)
            root, _ = values.aliases.root_and_chain(target)
            if root is not target and values.is_traced(root):
                values.write(target, values.value_of(target))
            else:
                values.aliases.written(root)
        random = next((v.random for v in values.known_values((args, kwargs)) if v.random),
                      None)
        if random:
            for part in outs:
                if isinstance(part, torch.Tensor):
                    values.value_of(part).random = random

    def _data_step(self, func: Any, name: str, args: tuple[Any, ...],
                   kwargs: dict[str, Any], out: Any, tensors: list[Any]) -> None:
        """An op on traced masks or indices (already run): where all it gives is integer
        or bool data and the language writes it (``unsqueeze`` of a comparison, ``&`` of
        two), a step, the mask's chain kept whole; else its results are constants (that
        remember a random draw they were made from)."""
        import torch

        values = self.values
        outs = out if isinstance(out, (tuple, list)) else (out,)
        if mutated_arguments(func) or not all(
                isinstance(t, torch.Tensor) and not (t.is_floating_point() or t.is_complex())
                for t in outs):
            if any(isinstance(t, torch.Tensor) and t.is_floating_point() for t in outs):
                # A real value from the input's integer data (a histogram's threshold): its
                # gradient stops here, as autograd's does, where the function may jump.
                self.tape.stops.append(f"a value computed from integer data{user_frame()}")
            random = next((values.value_of(t).random for t in tensors
                           if values.value_of(t).random), None)
            for part in outs:
                if random and isinstance(part, torch.Tensor):
                    values.value_of(part).random = random
            return
        if func.is_view:
            steps = views.steps_of(name, args, kwargs, outs)
            if len(steps) == 1 and self.translatable(steps[0].op):
                step = steps[0]
                values.add_step(step.op, (values.value_of(args[0]), *step.args),
                                dict(step.kwargs), (outs[0],))
            return
        if self.translatable(name):
            values.add_step(name, values.as_values(args), values.as_values(kwargs),
                            tuple(outs))

    def _random(self, func: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                out: Any) -> None:
        """A random draw is no constant: each call of the forward draws again. Its real
        results become values of an untranslatable step, so that a spec whose output needs
        them is refused (and one that only logs them is not)."""
        import torch

        values = self.values
        mutated = [args[i] for i in mutated_arguments(func) if i < len(args)]
        outs = out if isinstance(out, (tuple, list)) else (out,)
        for tensor in mutated or outs:
            if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
                continue
            self.tape.untranslatable_next(name)
            value = values.add_shaped_step(name, values.as_values(args),
                                           values.as_values(kwargs),
                                           (tuple(tensor.shape), kind_of(tensor)))
            value.random = f"{name}{self.tape.steps[-1].where}"
            values.write(tensor, value)
