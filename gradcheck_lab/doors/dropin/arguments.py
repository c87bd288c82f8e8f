"""A drop-in call's arguments as a case: torch's checks of the inputs, the tensors to
differentiate named by ``func``'s own parameters, and an impl that hands ``func`` its
arguments as the caller passed them (a Parameter stays a Parameter, a subclass itself, a
non-contiguous tensor keeps its strides, everything else the very object given).

Complex inputs are checked as torch checks them, through their real and imaginary parts:
each becomes two real inputs (``z_real``, ``z_imag``) that the impl joins with
``torch.complex``, and a complex output is read as ``view_as_real``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gradcheck_lab.dtypes import EPSILON
from gradcheck_lab.errors import BudgetError

# A check keeps about this many float64 copies of the outputs at once (the finite-difference
# forwards, the autograd oracle's, the spec's values and the comparison's): what the memory
# budget is measured against, before anything is built.
OUTPUT_COPIES = 8


@dataclass(frozen=True)
class Arguments:
    """What ``check`` needs from one call: the case inputs, the impl, dtype and device."""

    inputs: dict[str, dict[str, Any]]
    impl: Callable[..., Any]
    dtype: str
    device: str
    names: tuple[str, ...]  # the differentiated inputs, in order
    empty: bool  # nothing to check: every differentiated input or output has no element
    reach: Reach


class Reach:
    """Whether an evaluation of the impl in grad mode (the trace's, autograd's) has had a
    graph from its outputs back to every input it was given requiring grad."""

    def __init__(self) -> None:
        self.every_input = False

    def note(self, out: Any, args: Sequence[Any], slots: Sequence[Any]) -> None:
        import torch

        if self.every_input or not torch.is_grad_enabled():
            return
        wanted = {position for position, (arg, slot) in enumerate(zip(args, slots, strict=True))
                  if slot is not None and isinstance(arg, torch.Tensor) and arg.requires_grad}
        parts = out if isinstance(out, tuple) else (out,)
        self.every_input = bool(wanted) and wanted <= reached(parts, tuple(range(len(parts))),
                                                              tuple(args))


def as_tuple(inputs: Any) -> tuple[Any, ...]:
    """torch's reading of ``inputs``: a tuple as is, a list as a tuple, anything else alone."""
    if isinstance(inputs, tuple):
        return inputs
    if isinstance(inputs, list):
        return tuple(inputs)
    return (inputs,)


def check_inputs(values: Sequence[Any]) -> None:
    """torch's own refusals, with its exception types and words: an input that requires grad
    with a dimension of stride 0 (its elements alias), and no input that requires grad."""
    import torch

    wants = [v for v in values if isinstance(v, torch.Tensor) and v.requires_grad]
    for index, value in enumerate(values):
        if (any(value is w for w in wants) and value.layout == torch.strided
                and not all(st > 0 or sz <= 1 for st, sz in zip(value.stride(), value.size(),
                                                                   strict=True))):
            raise RuntimeError(
                f"The {index}th input has a dimension with stride 0. gradcheck only supports "
                "inputs that are non-overlapping to be able to compute the numerical gradients "
                "correctly. You should call .contiguous on the input before passing it to "
                "gradcheck.")
    if not wants:
        raise ValueError("gradcheck expects at least one input tensor to require gradient, "
                         "but none of them have requires_grad=True.")
    sparse = [i for i, v in enumerate(values) if isinstance(v, torch.Tensor) and v.requires_grad
              and v.layout != torch.strided]
    if sparse:
        raise NotImplementedError(
            f"gradcheck-lab checks dense inputs only; input {sparse[0]} is "
            f"{values[sparse[0]].layout} (torch.autograd.gradcheck with masked= checks sparse "
            "semantics)")


def differentiable_positions(output: Any) -> tuple[int, ...] | None:
    """Which outputs a gradient flows through, as torch keeps them: of a tuple or list, the
    tensors that require grad (None for a single tensor output)."""
    import torch

    if not isinstance(output, (tuple, list)):
        return None
    kept = tuple(i for i, o in enumerate(output) if isinstance(o, torch.Tensor) and o.requires_grad)
    if not kept:  # nothing requires grad: the floating ones (their gradient must be zero)
        kept = tuple(i for i, o in enumerate(output)
                     if isinstance(o, torch.Tensor) and (o.is_floating_point() or o.is_complex()))
    return kept


def selected(output: Any, positions: tuple[int, ...] | None) -> Any:
    """The outputs at ``positions``, complex ones as their real and imaginary parts."""
    import torch

    def real(tensor: Any) -> Any:
        if not isinstance(tensor, torch.Tensor):
            return tensor
        if tensor.is_complex():  # a conjugate view as its values (view_as_real refuses one)
            tensor = torch.view_as_real(tensor.resolve_conj())
        return tensor.resolve_neg()  # numpy cannot read a tensor with the negative bit

    if positions is None:
        return real(output)
    kept = [real(output[i]) for i in positions]
    return kept[0] if len(kept) == 1 else tuple(kept)


def requires_grad(output: Any, positions: tuple[int, ...] | None) -> bool:
    """Whether any output a gradient would flow through requires grad."""
    parts = [output] if positions is None else [output[i] for i in positions]
    return any(getattr(p, "requires_grad", False) for p in parts)


def check_outputs(output: Any) -> None:
    """torch needs tensor outputs: anything else is a TypeError, as torch raises one too."""
    import torch

    parts = output if isinstance(output, (tuple, list)) else (output,)
    odd = [p for p in parts if not isinstance(p, torch.Tensor)]
    if odd:
        raise TypeError(f"gradcheck needs func to return tensors (or a tuple of them), got "
                        f"{type(odd[0]).__name__}")


def output_elements(output: Any, positions: tuple[int, ...] | None) -> int:
    import torch

    parts = [output] if positions is None else [output[i] for i in positions]
    return sum(p.numel() * (2 if p.is_complex() else 1) for p in parts
               if isinstance(p, torch.Tensor))


def parameter_names(func: Callable[..., Any], count: int) -> list[str]:
    """The names ``func`` gives its first ``count`` positional parameters; for a
    ``Function.apply``, its forward's (after ``ctx``). ``input{i}`` where none is known."""
    import functools

    import torch

    target = func
    bound = 0  # positional parameters a partial already gave
    while isinstance(target, functools.partial):
        bound += len(target.args)
        target = target.func
    owner = _function_class(target)
    skip = 0
    if owner is not None:
        target = owner.forward
        skip = 0 if _has_setup_context(owner) else 1
    elif isinstance(target, torch.nn.Module):
        target = target.forward
    skip += bound
    try:
        parameters = list(inspect.signature(target).parameters.values())[skip:]
    except (TypeError, ValueError):
        parameters = []
    names: list[str] = []
    for i in range(count):
        if i < len(parameters) and parameters[i].kind in (inspect.Parameter.POSITIONAL_ONLY,
                                                          inspect.Parameter.POSITIONAL_OR_KEYWORD):
            names.append(parameters[i].name)
        elif parameters and parameters[min(i, len(parameters) - 1)].kind == \
                inspect.Parameter.VAR_POSITIONAL:
            names.append(f"{parameters[min(i, len(parameters) - 1)].name}{i}")
        else:
            names.append(f"input{i}")
    return names


def _function_class(func: Callable[..., Any]) -> type[Any] | None:
    """The autograd.Function subclass whose ``apply`` ``func`` is, or None."""
    owner = getattr(func, "__self__", None)
    return owner if isinstance(owner, type) and getattr(func, "__name__", "") == "apply" \
        else None


def _has_setup_context(function_class: type) -> bool:
    import torch

    own = getattr(function_class, "setup_context", None)
    return own is not None and own is not torch.autograd.Function.setup_context


def function_name(func: Callable[..., Any]) -> str:
    """``Huber.apply`` for a Function's apply, a callable's qualname, a module's class."""
    function_class = _function_class(func)
    if function_class is not None:
        return f"{function_class.__qualname__}.apply"
    inner = getattr(func, "func", None)  # functools.partial
    if inner is not None and callable(inner) and not hasattr(func, "__qualname__"):
        return f"partial({function_name(inner)})"
    if getattr(func, "__module__", None) in ("torch", "torch.nn.functional") or \
            type(getattr(func, "__self__", None)).__name__ == "_VariableFunctionsClass":
        return f"torch.{func.__name__}"  # a builtin: torch.pow, not _VariableFunctionsClass.pow
    return getattr(func, "__qualname__", None) or type(func).__qualname__


def arguments(func: Callable[..., Any], values: Sequence[Any], output: Any,
              positions: tuple[int, ...] | None, memory: int | None) -> Arguments:
    """The case for a call whose inputs passed ``check_inputs`` and whose first forward gave
    ``output``. Raises BudgetError past ``memory`` bytes.

    A func that calls autograd itself (an energy's force, a gradient penalty) fails when an
    evaluation gives it inputs without a graph (finite differences' are); at the first such
    failure, and from then on, every evaluation gives it inputs that require grad, in grad
    mode, as torch's gradcheck gives them (found then, not by a call of its own before)."""
    import torch

    from gradcheck_lab.casefile.schema import is_valid_name

    spelled = parameter_names(func, len(values))
    taken: set[str] = set()

    def name_for(base: str, position: int) -> str:
        for candidate in (base, f"{base}_", f"input{position}", f"input{position}_"):
            if is_valid_name(candidate) and candidate not in taken:
                taken.add(candidate)
                return candidate
        raise AssertionError(f"no free name for input {position}")  # input{i}_ is always free

    case_inputs: dict[str, dict[str, Any]] = {}
    slots: list[tuple[str, ...] | None] = []
    differentiated: list[torch.Tensor] = []
    for position, value in enumerate(values):
        wants = (isinstance(value, torch.Tensor) and value.requires_grad
                 and (value.is_floating_point() or value.is_complex()) and value.numel() > 0)
        if not wants:  # handed to func as the very object given
            slots.append(None)
            continue
        differentiated.append(value)
        parts = [value.detach()] if not value.is_complex() else [value.detach().real,
                                                                  value.detach().imag]
        suffixes = [""] if len(parts) == 1 else ["_real", "_imag"]
        names = tuple(name_for(spelled[position] + suffix, position) for suffix in suffixes)
        for name, part in zip(names, parts, strict=True):
            # numpy has no bfloat16: the value travels as float32, exactly
            value = part.resolve_conj().resolve_neg().contiguous()
            case_inputs[name] = {"value": value.float() if value.dtype == torch.bfloat16
                                 else value, "requires_grad": True}
        slots.append(names)

    empty = not differentiated or output_elements(output, positions) == 0
    # Inputs of several dtypes are checked at the narrowest one's precision (its step and
    # tolerance: a float32 input cannot resolve a float64 step), each reaching func in its
    # own dtype; several devices cannot be one case.
    dtype = max((str(t.real.dtype).removeprefix("torch.") for t in differentiated),
                key=EPSILON.__getitem__, default="float64")
    devices = {t.device.type for t in differentiated}
    if len(devices) > 1:
        raise NotImplementedError(f"gradcheck-lab checks inputs that require gradient on "
                                  f"one device, got {sorted(devices)}")
    if memory is not None:
        needed = OUTPUT_COPIES * 8 * output_elements(output, positions)
        if needed > memory:
            raise BudgetError(
                f"{function_name(func)}: its outputs hold {output_elements(output, positions):,}"
                f" elements; checking them needs about {needed / 2**30:.1f} GiB, past the "
                f"budget of {memory / 2**30:.1f} GiB (raise it with memory=, or "
                "--gradcheck-case-memory under pytest)")

    mixed = len({t.dtype for t in differentiated}) > 1
    reach = Reach()
    impl = _impl(func, values, slots, positions, dtype if mixed else None, reach)
    impl.__qualname__ = function_name(func)
    return Arguments(case_inputs, impl, dtype, devices.pop() if devices else "cpu",
                     tuple(n for slot in slots if slot for n in slot), empty, reach)


def _impl(func: Callable[..., Any], values: Sequence[Any],
          slots: list[tuple[str, ...] | None], positions: tuple[int, ...] | None,
          cast_to: str | None, reach: Reach) -> Callable[..., Any]:
    """``func`` as a case's impl: the case's inputs (by name) put in the slots of the values
    given, the outputs selected, and cast to ``cast_to`` where the inputs mix dtypes (the
    narrowest input's precision, which is checked); what its graph reaches noted in
    ``reach``."""
    import torch

    grad_inside = [False]  # set at the first evaluation that fails asking for a graph

    def impl(**tensors: Any) -> Any:
        args = [value if slot is None else as_given(value, [tensors[n] for n in slot])
                for value, slot in zip(values, slots, strict=True)]
        out = None
        if not grad_inside[0]:
            try:
                out = selected(func(*args), positions)
            except RuntimeError as exc:
                if not asks_for_a_graph(exc):
                    raise
                grad_inside[0] = True
        if grad_inside[0]:
            with torch.enable_grad():
                args = [a.detach().requires_grad_() if slot is not None and not a.requires_grad
                        else a for a, slot in zip(args, slots, strict=True)]
                out = selected(func(*args), positions)
        reach.note(out, args, slots)
        return out if cast_to is None else _cast(out, getattr(torch, cast_to))

    return impl


def reached(output: Any, positions: tuple[int, ...] | None,
            values: tuple[Any, ...]) -> set[int]:
    """The positions of the inputs requiring grad that the outputs' graph reaches (a leaf
    through its accumulator, a non-leaf through its own node, an output that is the input)."""
    import torch

    by_id = {}
    for position, value in enumerate(values):
        if isinstance(value, torch.Tensor) and value.requires_grad:
            by_id[id(value)] = position
            if value.grad_fn is not None:
                by_id[id(value.grad_fn)] = position
    parts = [output] if positions is None else [output[i] for i in positions]
    found = {by_id[id(p)] for p in parts if id(p) in by_id}
    frontier: list[torch.autograd.graph.Node | None] = [
        p.grad_fn for p in parts if isinstance(p, torch.Tensor) and p.grad_fn is not None]
    seen: set[int] = set()
    while frontier:
        node = frontier.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        for key in (id(node), id(getattr(node, "variable", None))):
            if key in by_id:
                found.add(by_id[key])
        frontier.extend(child for child, _ in node.next_functions)
    return found


def asks_for_a_graph(exc: RuntimeError) -> bool:
    """Whether autograd raised ``exc`` for want of a graph: a func that differentiates inside
    was given inputs that require no grad, or was run without grad mode."""
    return "does not require grad" in str(exc) or "grad_fn" in str(exc)


def _cast(out: Any, dtype: Any) -> Any:
    import torch

    if isinstance(out, tuple):
        return tuple(_cast(o, dtype) for o in out)
    return out.to(dtype) if isinstance(out, torch.Tensor) and out.is_floating_point() else out


def as_given(original: Any, parts: list[Any]) -> Any:
    """The oracle's tensor (or real and imaginary parts) dressed as the caller's: the same
    strides and the same class, still on the oracle's graph."""
    import torch

    tensor = parts[0] if len(parts) == 1 else torch.complex(parts[0], parts[1])
    if not original.is_contiguous() and tensor.shape == original.shape:
        strided = torch.empty_strided(original.size(), original.stride(),
                                      dtype=tensor.dtype, device=tensor.device)
        tensor = strided.copy_(tensor)
    if tensor.dtype not in (original.dtype, torch.float64):
        # Mixed dtypes, checked at the narrowest: each input in its own dtype, as given. In
        # float64 (finite differences, the trace) every input stays float64, as for a case.
        tensor = tensor.to(original.dtype)
    if type(original) is not torch.Tensor and isinstance(original, torch.Tensor):
        if type(tensor) is torch.Tensor:
            tensor = tensor.as_subclass(type(original))
        if not isinstance(original, torch.nn.Parameter):  # a subclass's own metadata
            tensor.__dict__.update(original.__dict__)
    return tensor
