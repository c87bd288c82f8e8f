"""The autograd oracle: torch's backward pass, the thing under test.

Fresh leaf tensors every run and ``torch.autograd.grad`` only (never ``.grad``, so nothing
accumulates). An input that gets no gradient counts as zeros, and the result says so.
"""

from __future__ import annotations

import functools
import re
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from gradcheck_lab.casefile import Case
from gradcheck_lab.errors import ImplError, raised_by_user_code
from gradcheck_lab.oracles.contract import ON_DEVICE, Given, Gradients
from gradcheck_lab.subject.function import FunctionUnderTest, describe_exception, owned
from gradcheck_lab.subject.points import Point
from gradcheck_lab.subject.probes import Probe

# Forward+backward passes the cost unit is the smallest of: the oracle's own (its first
# forward with the first probe's backward, a scalar output's scaled probe on a graph of its
# own, the rerun on fresh leaves), and at least one taken for the unit alone, right after
# the rerun, up to this many in all. The first pass after other work runs on cold caches:
# with two samples, cost_units measured 0.73-1.17 of the outside figure on the MNIST MLP and
# the custom Linear (7 rounds each, twice); with three, 0.93-1.00; with the oracle's own three
# and none of the unit's, 0.76-0.85 on the MNIST MLP at first and second order
# (benchmarks/network_cost.py): a pass right after a pass is what a warm pass costs.
UNIT_SAMPLES = 3
SAME_GRAPH = "again, same graph"
FRESH_GRAPH = "again, fresh graph"


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


def gradients(function: FunctionUnderTest, point: Point,
              probes: tuple[Probe, ...]) -> Gradients:
    """VJPs for every probe, then the first probe again on a fresh graph (nondeterminism),
    with the inputs compared before and after (in-place modification)."""
    import torch

    case, dtype, device = function.case, function.dtype, function.device
    names = [spec.name for spec in case.differentiable_inputs]
    method = f"{function.label}, torch.autograd.grad"
    leaves = make_leaves(case, point, dtype, device)
    before = {name: leaf.detach().clone() for name, leaf in leaves.items()}
    clock = cost_clock(device)
    started = clock()
    with torch.enable_grad():
        out = function(leaves)
    _synchronized(device)
    forward_seconds = clock() - started
    value = owned(out)
    notes: list[str] = []
    zeros = {name: np.zeros(point.values[name].shape) for name in names}
    if not out.requires_grad:
        notes.append("autograd: the output does not require grad (detached or computed "
                     "without autograd); every gradient counts as zeros")
        return Gradients("autograd", method, value, tuple(dict(zeros) for _ in probes),
                         tuple(notes), device=device,
                         modified_inputs=_modified(before, leaves))
    problems: list[str] = []
    missing: set[str] = set()
    backwards = custom_backwards(out)
    per_probe, graph, passes = _vjps(function, point, probes, (out, leaves, forward_seconds),
                                     zeros, missing, problems)
    modified = _modified(before, leaves)

    # The same VJP again, through the same graph (state kept on ctx) and from a fresh forward
    # on fresh leaves (state kept anywhere else): a correct backward is a function of its
    # inputs, so anything but the same numbers is state or a race. The probe run again is a
    # scaled one where there is one: state that multiplies by grad_output (``ctx.g *= grad``)
    # is invisible when grad_output is 1.
    rerun = rerun_probe(probes)
    reruns = {}
    try:
        grads = _backward(function, *graph, names, probes[rerun], " a second time")
        reruns[SAME_GRAPH] = _as_arrays(grads, names, graph[1], zeros, set(), [])
    except ImplError as exc:
        # A backward that frees its ctx state is fine for training (one backward per
        # graph); it only cannot be rerun through the same graph.
        notes.append(f"autograd: a second backward through the same graph is not possible "
                     f"({exc}); statefulness is checked on a fresh graph only")
    fresh = make_leaves(case, point, dtype, device)
    started = clock()
    with torch.enable_grad():
        fresh_out = function(fresh)
    unit = None
    if fresh_out.requires_grad:
        grads = _backward(function, fresh_out, fresh, names, probes[rerun], " on a fresh graph")
        _synchronized(device)
        fresh_seconds = clock() - started
        reruns[FRESH_GRAPH] = _as_arrays(grads, names, fresh, zeros, set(), [])
        # The oracle's own forward+backward passes are samples of the unit (UNIT_SAMPLES).
        samples = [*passes, fresh_seconds]
        repeats = max(UNIT_SAMPLES - len(samples), 1)
        samples.append(_forward_backward_seconds(function, point, names, probes[0], repeats))
        unit = min(samples)
    for name in sorted(missing):
        notes.append(f"autograd: no gradient for {name} (backward returned None); "
                     "counted as zeros")
    return Gradients("autograd", method, value, tuple(per_probe), tuple(notes), reruns=reruns,
                     rerun_probe=rerun, backwards=backwards,
                     modified_inputs=modified, contract_problems=tuple(dict.fromkeys(problems)),
                     device=device, unit_seconds=unit)


def _vjps(function: FunctionUnderTest, point: Point, probes: tuple[Probe, ...],
          graph: tuple[Any, dict[str, Any], float], zeros: dict[str, np.ndarray],
          missing: set[str], problems: list[str]
          ) -> tuple[list[dict[str, np.ndarray]], tuple[Any, dict[str, Any]], list[float]]:
    """Every probe's VJP through ``graph`` (the output, the leaves and the forward's
    seconds), in order, a scaled probe's on a graph of its own; the graph of the probe that
    is run again after (``rerun_probe``); and the seconds of each forward+backward pass made
    (``cost_clock``: samples of the cost unit): the first forward with the first probe's
    backward, and each scaled probe's. Where the first probe's backward ran torch's own
    formulas alone, no Python of anyone's (cpu, a graph of torch's nodes), the others in one
    batched call (``_batched_backward``); the probe run again is always asked alone, so that
    its three answers are computed the same way."""
    import torch

    out, leaves, forward_seconds = graph
    rerun_graph = (out, leaves)
    names = [spec.name for spec in function.case.differentiable_inputs]
    found: dict[int, dict[str, np.ndarray]] = {}
    clock = cost_clock(function.device)
    started = clock()
    if (len(probes) > _BATCHED_FROM and rerun_probe(probes) == 0
            and function.device == "cpu" and _builtin_graph(out)):
        grads, ran_python = _backward_watched(function, out, leaves, names, probes[0])
    else:
        grads, ran_python = _backward(function, out, leaves, names, probes[0], ""), True
    _synchronized(function.device)
    passes = [forward_seconds + clock() - started]
    found[0] = _as_arrays(grads, names, leaves, zeros, missing, problems)
    if not ran_python:
        batched = _batched_backward(out, leaves, names, list(probes[1:]), zeros, missing,
                                    problems)
        found.update(enumerate(batched or [], start=1))
    for k, probe in enumerate(probes):
        if k in found:
            continue
        if probe.multiple_of is None:
            grads = _backward(function, out, leaves, names, probe, "")
            found[k] = _as_arrays(grads, names, leaves, zeros, missing, problems)
            continue
        # grad_output scaled (a scalar output's second cotangent): on a graph of its own, so
        # that a backward which may run only once per graph is still asked.
        scaled = make_leaves(function.case, point, function.dtype, function.device)
        started = clock()
        with torch.enable_grad():
            scaled_out = function(scaled)
        rerun_graph = (scaled_out, scaled)
        grads = _backward(function, scaled_out, scaled, names, probe,
                          f" with grad_output {probe.label.removeprefix('cotangent ')}")
        _synchronized(function.device)
        passes.append(clock() - started)
        found[k] = _as_arrays(grads, names, scaled, zeros, missing, problems)
    return [found[k] for k in range(len(probes))], rerun_graph, passes


def _backward_watched(function: FunctionUnderTest, out: Any, leaves: dict[str, Any],
                      names: list[str], probe: Probe) -> tuple[tuple[Any, ...], bool]:
    """``probe``'s VJP, and whether the backward ran any Python: a tensor or node hook, a
    custom Function's backward (one hidden in a CopySlices too), a checkpoint's recomputation,
    a saved-tensor hook. That is someone's code, to be asked as a training step asks it, not
    under vmap. Where another profiler is set (not to be replaced), it says that it did."""
    if sys.getprofile() is not None:
        return _backward(function, out, leaves, names, probe, ""), True
    inside = [0]  # within the engine's run_backward (a C call): any Python call is a callback
    ran = [False]

    def watch(frame: Any, event: str, arg: Any) -> None:
        if event == "c_call" and getattr(arg, "__name__", "") == "run_backward":
            inside[0] += 1
        elif event in ("c_return", "c_exception") and getattr(arg, "__name__",
                                                              "") == "run_backward":
            inside[0] -= 1
        elif event == "call" and inside[0]:
            ran[0] = True

    sys.setprofile(watch)
    try:
        grads = _backward(function, out, leaves, names, probe, "")
    finally:
        sys.setprofile(None)
    return grads, ran[0]


# A graph is walked for custom Functions up to this many nodes (an MNIST CNN has about 30).
_MAX_GRAPH_NODES = 10_000


def custom_backwards(out: Any) -> tuple[str, ...]:
    """The backward methods of the custom Functions in ``out``'s graph, where their source
    can be found: "Linear.backward (cases/custom_linear.py:19)"; what a failure points at."""
    import contextlib
    import os

    found: dict[str, None] = {}
    seen: set[int] = set()
    pending = [out.grad_fn]
    while pending and len(seen) < _MAX_GRAPH_NODES:
        node = pending.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        function = getattr(type(node), "_forward_cls", None)
        backward = getattr(function, "backward", None)
        if backward is not None:
            where = _source_line(backward)
            if where is not None:
                path, line = where
                with contextlib.suppress(ValueError):  # on another drive (Windows)
                    path = os.path.relpath(path)
                found[f"{getattr(function, '__qualname__', '?')}.backward ({path}:{line})"] = None
        pending.extend(next_node for next_node, _ in getattr(node, "next_functions", ()))
    return tuple(found)


@functools.lru_cache(maxsize=256)
def _source_line(backward: Callable[..., Any]) -> tuple[str, int] | None:
    """The file and def line (past decorators) of a backward, or None where its source cannot
    be found; read once per function (reading the source costs a tenth of a small check)."""
    import inspect

    try:
        path = inspect.getsourcefile(backward)
        lines, first = inspect.getsourcelines(backward)
    except (OSError, TypeError):
        return None
    if path is None:
        return None
    return path, first + next((i for i, text in enumerate(lines)
                               if text.lstrip().startswith(("def ", "async def "))), 0)


def vjp_at(function: FunctionUnderTest, values: Mapping[str, np.ndarray],
           probe: Probe) -> np.ndarray:
    """The VJP through ``probe`` at input ``values`` (by name), over every differentiable
    input, flat, in float64: one forward and backward on fresh leaves."""
    import torch

    names = [spec.name for spec in function.case.differentiable_inputs]
    leaves = make_leaves(function.case, Point(function.dtype, dict(values), {}),
                         function.dtype, function.device)
    with torch.enable_grad():
        out = function(leaves)
    if not out.requires_grad:
        return np.zeros(sum(leaves[n].numel() for n in names))
    grads = _backward(function, out, leaves, names, probe, "")
    return np.concatenate([np.zeros(leaves[n].numel()) if g is None else owned(g).reshape(-1)
                           for n, g in zip(names, grads, strict=True)])


def rerun_probe(probes: tuple[Probe, ...]) -> int:
    """The probe whose VJP is computed again (nondeterminism): the first scaled one, else 0."""
    return next((k for k, probe in enumerate(probes) if probe.multiple_of is not None), 0)


def cost_clock(device: str) -> Callable[[], float]:
    """The clock of a check's cost and of its unit: CPU time on cpu (a share of the machine
    taken by another process stretches wall time, not the work done), wall time on cuda
    (whose work is not this process's CPU time)."""
    return time.perf_counter if device.startswith("cuda") else time.process_time


def _forward_backward_seconds(function: FunctionUnderTest, point: Point, names: list[str],
                              probe: Probe, repeats: int) -> float:
    """The median time of a few forward+backward passes on fresh graphs by ``cost_clock``:
    the unit of a check's cost (``pipeline.case_check``)."""
    import statistics

    import torch

    device = function.device
    clock = cost_clock(device)
    times = []
    for _ in range(repeats):
        # The function's own forward and backward: the leaves, the cotangent and the
        # checks of what it returned (the check's work, not the function's) off the clock.
        leaves = make_leaves(function.case, point, function.dtype, device)
        cotangent = torch.tensor(probe.cotangent, dtype=getattr(torch, function.dtype),
                                 device=device)
        started = clock()
        with torch.enable_grad():
            out = function.plain(leaves)
        _backward(function, out, leaves, names, probe, "", cotangent=cotangent)
        _synchronized(device)
        times.append(clock() - started)
    return statistics.median(times)


def _synchronized(device: str) -> None:
    """The device's queued work done (a cuda kernel runs after its launch returns)."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)


def _backward(function: FunctionUnderTest, out: Any, leaves: dict[str, Any], names: list[str],
              probe: Probe, when: str, create_graph: bool = False,
              cotangent: Any = None) -> tuple[Any, ...]:
    import torch

    if cotangent is None or cotangent.dtype != out.dtype:
        cotangent = torch.tensor(probe.cotangent, dtype=out.dtype, device=out.device)
    try:
        return torch.autograd.grad(out, [leaves[n] for n in names], grad_outputs=cotangent,
                                   retain_graph=True, allow_unused=True,
                                   create_graph=create_graph)
    except BaseException as exc:
        if not raised_by_user_code(exc):
            raise
        raise ImplError(f"backward of {function.label} raised{when} "
                        f"{describe_exception(exc)}") from None


# The nodes of torch's own derivative formulas ("MulBackward0"), and the three of its own
# without a number; anything else in a graph (a custom Function's "LinearBackward", a C++
# extension's "CppNode<...>") runs a backward someone else wrote.
_BUILTIN_NODE = re.compile(r"[A-Za-z0-9_]+Backward[0-9]+|AccumulateGrad|CopySlices|CopyBackwards")


def _builtin_graph(out: Any) -> bool:
    """Whether every node of ``out``'s graph is one of torch's own (``_BUILTIN_NODE``), with no
    custom Function's; False past ``_MAX_GRAPH_NODES``."""
    seen: set[int] = set()
    pending = [out.grad_fn]
    while pending:
        node = pending.pop()
        if node is None or id(node) in seen:
            continue
        custom = getattr(type(node), "_forward_cls", None) is not None
        if custom or len(seen) >= _MAX_GRAPH_NODES or not _BUILTIN_NODE.fullmatch(
                type(node).__name__):
            return False
        seen.add(id(node))
        pending.extend(next_node for next_node, _ in node.next_functions)
    return True


def _batched_backward(out: Any, leaves: dict[str, Any], names: list[str],
                      probes: list[Probe], zeros: dict[str, np.ndarray], missing: set[str],
                      problems: list[str]) -> list[dict[str, np.ndarray]] | None:
    """The probes' VJPs in one backward call, the cotangents stacked (torch's
    ``is_grads_batched``: vmap over the backward), as ``_as_arrays`` gives each; None where
    that is not the same question: a scaled probe (asked on a graph of its own), or a
    backward that vmap cannot run (the probes are then asked one by one, which says what
    raised). Only for graphs of torch's own formulas (``_builtin_graph``): a custom Function's
    backward is user code, asked as a training step asks it, once per cotangent."""
    import warnings

    import torch

    if any(p.multiple_of is not None for p in probes):
        return None
    cotangents = torch.tensor(np.stack([np.asarray(p.cotangent, dtype=np.float64)
                                        for p in probes]), dtype=out.dtype, device=out.device)
    try:
        with warnings.catch_warnings():  # vmap's "no batching rule, a loop instead"
            warnings.simplefilter("ignore")
            stacked = torch.autograd.grad(out, [leaves[n] for n in names],
                                          grad_outputs=cotangents, retain_graph=True,
                                          allow_unused=True, is_grads_batched=True)
    except Exception:  # any refusal of vmap: the probes one by one instead
        return None
    found: list[dict[str, np.ndarray]] = [{} for _ in probes]
    for name, grad in zip(names, stacked, strict=True):
        # One conversion for every probe: each probe's gradient is a row of it.
        (rows,) = _as_arrays((grad,), [name], {name: _Batched(leaves[name], len(probes))},
                             {name: np.zeros((len(probes), *zeros[name].shape))}, missing,
                             problems).values()
        for k, row in enumerate(rows):
            found[k][name] = row
    return found


class _Batched:
    """A leaf as its batched gradient should look: the batch dimension in front (what
    ``_as_arrays`` checks a gradient's shape, dtype and device against)."""

    def __init__(self, leaf: Any, count: int) -> None:
        self.shape, self.dtype, self.device = (count, *leaf.shape), leaf.dtype, leaf.device


# Probes besides the first from which they are batched: with fewer, one call per probe costs
# no more.
_BATCHED_FROM = 3


def _as_arrays(grads: tuple[Any, ...], names: list[str], leaves: dict[str, Any],
               zeros: dict[str, np.ndarray], missing: set[str],
               problems: list[str]) -> dict[str, np.ndarray]:
    """float64 numpy gradients; None counts as zeros (and is noted), a wrong shape is an
    error, a dtype or device other than the input's is a problem of the backward."""

    found = {}
    for name, grad in zip(names, grads, strict=True):
        if grad is None:
            missing.add(name)
            found[name] = zeros[name]
            continue
        leaf = leaves[name]
        if tuple(grad.shape) != tuple(leaf.shape):
            raise ImplError(f"backward gave {name} a gradient of shape {list(grad.shape)}, "
                            f"expected {list(leaf.shape)}")
        if grad.dtype != leaf.dtype:
            problems.append(f"{name}: the gradient's dtype is {_torch_name(grad.dtype)}, the "
                            f"input's {_torch_name(leaf.dtype)}")
        if grad.device != leaf.device:
            problems.append(f"{name}: the gradient is on {grad.device}, the input on "
                            f"{leaf.device}")
        found[name] = owned(grad)
    return found


def _modified(before: dict[str, Any], leaves: dict[str, Any]) -> dict[str, tuple[np.ndarray,
                                                                                  np.ndarray]]:
    """Inputs whose values the call changed in place: (before, after), as float64 arrays."""
    import torch

    changed = {}
    for name, original in before.items():
        now = leaves[name].detach()
        # torch.equal first (one pass, no temporaries): it differs from the NaN-aware
        # comparison only where a NaN is kept.
        same = torch.equal(original, now) or (original.is_floating_point() and torch.allclose(
            original, now, rtol=0.0, atol=0.0, equal_nan=True))
        if not same:
            changed[name] = (owned(original), owned(now))
    return changed


def _torch_name(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.")


def jacobian_vector_product(function: FunctionUnderTest, point: Point,
                            tangents: dict[str, np.ndarray]) -> np.ndarray:
    """Forward-mode AD: J·v for the tangents v of all differentiable inputs at once."""
    import torch
    import torch.autograd.forward_ad as forward_ad

    case = function.case
    leaves = make_leaves(case, point, function.dtype, function.device)
    with forward_ad.dual_level():
        duals = dict(leaves)
        for name, tangent in tangents.items():
            leaf = leaves[name].detach()
            duals[name] = forward_ad.make_dual(
                leaf, torch.tensor(tangent, dtype=leaf.dtype, device=leaf.device))
        try:
            out = function(duals)
        except ImplError as exc:
            # torch's words when a custom Function has no jvp staticmethod.
            if "implement the jvp" in str(exc):
                raise ImplError(f"forward mode: {exc}; a custom torch.autograd.Function needs a "
                                "jvp staticmethod for forward-mode AD (or leave forward out "
                                "of modes)") from None
            raise
        jvp = forward_ad.unpack_dual(out).tangent
    if jvp is None:
        return np.zeros(case.program.output_node.shape)
    return owned(jvp)


def hessian_vector_products(function: FunctionUnderTest, point: Point,
                            probes: tuple[Probe, ...], tangents: dict[str, np.ndarray]
                            ) -> tuple[tuple[dict[str, np.ndarray], ...], list[str]]:
    """Double backward: per probe u, the gradient of <u·J, v> (``create_graph=True``); and the
    inputs whose first-order gradient is not differentiable (computed under no_grad or from
    detached tensors), which count as zeros."""
    import torch

    names = list(tangents)
    leaves = make_leaves(function.case, point, function.dtype, function.device)
    with torch.enable_grad():
        out = function(leaves)
    zeros = {name: np.zeros(point.values[name].shape) for name in names}
    if not out.requires_grad:
        return tuple(dict(zeros) for _ in probes), []
    not_differentiable: list[str] = []
    results = []
    for probe in probes:
        grads = _backward(function, out, leaves, names, probe, " (create_graph=True)",
                          create_graph=True)
        directional = None
        for name, grad in zip(names, grads, strict=True):
            if grad is None:
                continue
            if not grad.requires_grad:
                not_differentiable.append(name)
                continue
            v = torch.tensor(tangents[name], dtype=grad.dtype, device=grad.device)
            term = (grad * v).sum()
            directional = term if directional is None else directional + term
        if directional is None:
            results.append(dict(zeros))
            continue
        try:
            second = torch.autograd.grad(directional, [leaves[n] for n in names],
                                         retain_graph=True, allow_unused=True)
        except BaseException as exc:
            if not raised_by_user_code(exc):
                raise
            raise ImplError(f"double backward of {function.label} raised "
                            f"{describe_exception(exc)}") from None
        results.append({name: zeros[name] if g is None
                        else owned(g)
                        for name, g in zip(names, second, strict=True)})
    return tuple(results), sorted(set(not_differentiable))


class AutogradOracle:
    """torch's backward pass through the subject in the case's dtype: the thing under test."""

    name = "autograd"
    stage = ON_DEVICE

    def gradients(self, given: Given) -> Gradients:
        assert given.subject is not None  # an ON_DEVICE oracle gets the device's subject
        return gradients(given.subject.checked, given.point, given.probes)


ORACLE = AutogradOracle()

