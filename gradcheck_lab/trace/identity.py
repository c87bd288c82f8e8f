"""Which value each tensor of the forward holds: the recording's map from tensors to Values,
kept right through views of one root and writes into them (functionalization)."""

from __future__ import annotations

from typing import Any

from gradcheck_lab.trace import views
from gradcheck_lab.trace.tape import (
    Budget,
    Step,
    Tape,
    Value,
    as_numpy,
    kind_of,
    leaves,
    mapped,
    user_frame,
    values_in,
)


class TracedValues:
    """Tensor identity: the Value each tensor holds now (an input, a step's result, or a
    constant taken where a traced op reads it), and the steps that make new ones; a view
    reads its root again after a write into the root, and a write into a view becomes a
    scatter into its root."""

    def __init__(self, tape: Tape, budget: Budget) -> None:
        self.tape = tape
        self.budget = budget
        self.inputs: dict[str, Value] = {}
        # id(tensor) -> (the tensor, kept alive so that its id is not reused; its value)
        self._by_id: dict[int, tuple[Any, Value]] = {}
        self.aliases = views.Aliases()

    def add_input(self, name: str, tensor: Any) -> None:
        """A differentiated input: a traced value (every other input is a constant)."""
        value = Value(tuple(tensor.shape), kind_of(tensor), input=name)
        self.inputs[name] = value
        self._by_id[id(tensor)] = (tensor, value)

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
                self.forget(tensor)
                return self.value_of(tensor)
            value = self._replayed(root_value, chain)
            self.bind(tensor, value)
            return value
        known = self._by_id.get(id(tensor))
        if known is not None and known[0] is tensor and not (
                known[1].is_constant and known[1].version != tensor._version):
            return known[1]
        value = Value(tuple(tensor.shape), kind_of(tensor), constant=as_numpy(tensor),
                      version=tensor._version)
        self._by_id[id(tensor)] = (tensor, value)
        return value

    def is_traced(self, tensor: Any) -> bool:
        if self.aliases.stale(tensor) is not None:
            return not self.value_of(tensor).is_constant
        known = self._by_id.get(id(tensor))
        return known is not None and known[0] is tensor and not known[1].is_constant

    def bind(self, tensor: Any, value: Value) -> None:
        self._by_id[id(tensor)] = (tensor, value)

    def forget(self, tensor: Any) -> None:
        """The tensor's value is read from its content again at its next read."""
        self._by_id.pop(id(tensor), None)

    def as_values(self, values: Any) -> Any:
        """``values`` with each tensor among them replaced by its Value."""
        import torch

        return mapped(values, lambda v: self.value_of(v) if isinstance(v, torch.Tensor)
                      else v)

    def known_values(self, values: Any) -> list[Value]:
        """The Values already bound to the tensors among ``values``."""
        import torch

        known = (self._by_id.get(id(t)) for t in leaves(values)
                 if isinstance(t, torch.Tensor))
        return [entry[1] for entry in known if entry is not None]

    def add_step(self, op: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                 outs: tuple[Any, ...], where: str | None = None) -> tuple[Value | None, ...]:
        """A step reading ``args`` (tensors given as Values already) and making ``outs`` (the
        real tensors, or (shape, kind) pairs for steps with no tensor of their own)."""
        self.budget.check_room(len(self.tape.steps))
        index = len(self.tape.steps)
        random = next((v.random for v in values_in((args, kwargs)) if v.random), None)
        values: list[Value | None] = []
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
                self.bind(out, value)
                values.append(value)
        for made in values:
            if made is not None:
                made.random = random
        self.tape.steps.append(Step(op, args, kwargs, tuple(values),
                                    user_frame() if where is None else where))
        return tuple(values)

    def add_shaped_step(self, op: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                        out: tuple[tuple[int, ...], str], where: str | None = None) -> Value:
        """``add_step`` of a step with one result given as (shape, kind): its Value."""
        (value,) = self.add_step(op, args, kwargs, (out,), where)
        assert value is not None  # a (shape, kind) result always gets a Value
        return value

    def _replayed(self, root: Value, chain: tuple[views.ViewStep, ...]) -> Value:
        """The view's value read from its root's current value, step by step."""
        value = root
        for step in chain:
            value = self.add_shaped_step(step.op, (value, *step.args), dict(step.kwargs),
                                         (step.shape, root.kind), where="")
        return value

    def write(self, target: Any, value: Value) -> None:
        """``target`` now holds ``value``: its root gets it scattered in through the view
        steps between them, and the root's other views are read from it again."""
        root, chain = self.aliases.root_and_chain(target)
        if value.kind in ("int", "bool"):
            # Integer and bool tensors carry no gradient: after the write (done for real
            # already), the root and its views are constants, read from their content.
            for tensor in (root, target):
                self.forget(tensor)
            self.aliases.written(root)
            return
        if not chain:
            self.bind(target, value)
            self.aliases.written(target)
            return
        where = user_frame()  # the write's own line, for the steps it becomes
        current = self.value_of(root)
        bases = [current]
        for step in chain[:-1]:
            stepped = self.add_shaped_step(step.op, (bases[-1], *step.args), dict(step.kwargs),
                                           (step.shape, current.kind), where=where)
            bases.append(stepped)
        written = value
        for step, base in zip(reversed(chain), reversed(bases), strict=True):
            scatter = views.scatter(step, base, written)
            if scatter is None:
                self.tape.untranslatable_next(
                    f"a write into a view made by {step.op} (no functional form of it)")
            op, args, kwargs = scatter or ("aten.copy.default", (base, written), {})
            written = self.add_shaped_step(op, args, kwargs, (base.shape, base.kind),
                                           where=where)
        self.bind(root, written)
        self.aliases.written(root)
        self.bind(target, value)
        self.aliases.refreshed(target)
