"""How a drop-in call's outputs connect to its inputs, before the oracles run: torch's rule
for outputs that require no grad (they must not change with the inputs), and a function that
reads the tensors it was given by identity (a module's parameters) instead of through its
arguments, which a check of fresh copies could not see."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gradcheck_lab.doors.dropin.arguments import as_given, reached, selected


def unconnected(kind: str, func: Callable[..., Any], values: tuple[Any, ...],
                 positions: tuple[int, ...] | None, name: str, directions: int = 3) -> str:
    """torch's rule for a function none of whose outputs requires grad: its central
    differences must be exactly zero (else the forward cut the graph), here along seeded
    random directions; a step function at a point both sides of which agree passes, as in
    torch. "" when they hold."""
    import torch

    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _ in range(directions):
            steps = [_step(v, generator) for v in values]
            ahead = selected(func(*_moved(values, steps, 1.0)), positions)
            behind = selected(func(*_moved(values, steps, -1.0)), positions)
            pairs = [(a, b) for a, b in zip(ahead if isinstance(ahead, tuple) else (ahead,),
                                            behind if isinstance(behind, tuple) else (behind,),
                                            strict=True)
                     if a.numel() and (a.is_floating_point() or a.is_complex())]
            # integer outputs play no part, as in torch
            change = max((float((a.double() - b.double()).abs().max()) for a, b in pairs),
                         default=0.0)
            if change != 0:
                return (f"{kind}({name}): no output requires grad, yet the outputs change with "
                        f"the inputs (by {change:.3g} across a random step of 1e-6 each way): "
                        "the forward cuts the graph (.detach(), .data, .item() or numpy on "
                        "the way), so autograd gives no gradient where there is one")
    return ""


def has_real_output(output: Any, positions: tuple[int, ...] | None) -> bool:
    """Whether any output a gradient could flow through is real or complex (not integer)."""
    import torch

    parts = [output] if positions is None else [output[i] for i in positions]
    return any(isinstance(p, torch.Tensor) and (p.is_floating_point() or p.is_complex())
               for p in parts)


def _step(value: Any, generator: Any) -> Any:
    """A random step of 1e-6 max(1, |x|) per element for an input that requires grad (along
    the real part of a complex one); None for the others."""
    import torch

    if not (isinstance(value, torch.Tensor) and value.requires_grad and value.numel()):
        return None
    direction = torch.randn(value.shape, generator=generator, dtype=torch.float64)
    return (1e-6 * value.detach().abs().clamp(min=1) * direction).to(value.dtype)


def _moved(values: tuple[Any, ...], steps: list[Any], sign: float) -> list[Any]:
    return [value if step is None else as_given(value, [value.detach() + sign * step])
            for value, step in zip(values, steps, strict=True)]


def refuse_reads_by_identity(func: Callable[..., Any], values: tuple[Any, ...],
                             output: Any, positions: tuple[int, ...] | None,
                             name: str) -> None:
    """The outputs reach the caller's tensors, as torch's gradcheck needs. The oracles call
    ``func`` with copies: if its outputs then reach none of them, func reads the caller's
    tensors by identity (a module's parameters, a closure), which a check of copies cannot
    follow. Refused, saying how to pass them."""
    import torch

    originals = reached(output, positions, values)
    if not originals:
        return  # nothing the caller passed is reached: the oracles see the same
    copies = tuple(as_given(v, [v.detach().clone()]).requires_grad_()
                   if isinstance(v, torch.Tensor) and v.requires_grad and v.is_leaf else v
                   for v in values)
    missed = sorted(originals - reached(selected(func(*copies), positions), positions, copies))
    if not missed:
        return
    raise NotImplementedError(
        f"{name} reads input {missed[0]} by identity (a module's parameters, a "
        "closure), not through its arguments: gradcheck-lab checks a function of its "
        "arguments, at copies of them. Make func use what it is given, e.g. "
        "torch.func.functional_call(model, dict(zip(names, params)), (x,))")

