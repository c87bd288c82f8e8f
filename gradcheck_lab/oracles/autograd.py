"""The autograd oracle: torch's backward pass, the thing under test.

Fresh leaf tensors every run and ``torch.autograd.grad`` only (never ``.grad``, so nothing
accumulates). An input that gets no gradient counts as zeros, and the result says so.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gradcheck_lab.casefile import Case
from gradcheck_lab.errors import ImplError
from gradcheck_lab.oracles.base import Gradients, Probe
from gradcheck_lab.oracles.torch_function import TorchFunction, describe_exception
from gradcheck_lab.points import Point


def make_leaves(case: Case, point: Point, dtype: str, device: str) -> dict[str, Any]:
    """Fresh tensors for every input: leaves that require grad where the case says so."""
    import torch

    leaves = {}
    for spec in case.inputs:
        values = point.values[spec.name]
        if spec.is_integer:
            leaves[spec.name] = torch.tensor(values, dtype=torch.int64, device=device)
        else:
            tensor = torch.tensor(values, dtype=getattr(torch, dtype), device=device)
            leaves[spec.name] = tensor.requires_grad_(spec.requires_grad)
    return leaves


def gradients(case: Case, point: Point, probes: tuple[Probe, ...], dtype: str,
              device: str) -> Gradients:
    import torch

    function = TorchFunction(case, dtype, device)
    leaves = make_leaves(case, point, dtype, device)
    names = [spec.name for spec in case.differentiable_inputs]
    with torch.enable_grad():
        out = function(leaves)
    value = out.detach().to(torch.float64).cpu().numpy()
    notes: list[str] = []
    zeros = {name: np.zeros(point.values[name].shape) for name in names}
    if not out.requires_grad:
        notes.append("autograd: the output does not require grad (detached or computed "
                     "without autograd); every gradient counts as zeros")
        return Gradients("autograd", f"{function.label}, torch.autograd.grad", value,
                         tuple(dict(zeros) for _ in probes), tuple(notes))
    per_probe = []
    missing: set[str] = set()
    for probe in probes:
        cotangent = torch.tensor(probe.cotangent, dtype=out.dtype, device=out.device)
        try:
            grads = torch.autograd.grad(out, [leaves[n] for n in names], grad_outputs=cotangent,
                                        retain_graph=True, allow_unused=True)
        except (Exception, SystemExit) as exc:
            raise ImplError(f"backward of {function.label} raised "
                            f"{describe_exception(exc)}") from None
        found = {}
        for name, grad in zip(names, grads, strict=True):
            if grad is None:
                missing.add(name)
                found[name] = zeros[name]
                continue
            if tuple(grad.shape) != point.values[name].shape:
                raise ImplError(f"backward of {function.label} gave {name} a gradient of shape "
                                f"{list(grad.shape)}, expected {list(point.values[name].shape)}")
            found[name] = grad.detach().to(torch.float64).cpu().numpy()
        per_probe.append(found)
    for name in sorted(missing):
        notes.append(f"autograd: no gradient for {name} (backward returned None); "
                     "counted as zeros")
    return Gradients("autograd", f"{function.label}, torch.autograd.grad", value,
                     tuple(per_probe), tuple(notes))
