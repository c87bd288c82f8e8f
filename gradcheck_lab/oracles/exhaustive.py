"""Exhaustive finite differences (`--fd exhaustive`): every partial derivative of every input,
by one central difference each (2N forwards for N elements).

Perturbed inputs are evaluated CHUNK at a time, either through ``torch.func.vmap`` (one batched
forward instead of CHUNK calls) or by plain calls that move one element in place and put it
back. Both are timed on an input's first chunk and the faster is kept: vmap loses when copying
a large input costs more than the calls it saves, and a function vmap cannot trace (a custom
Function without a vmap rule) gets plain calls. Memory is bounded by CHUNK forwards.

Each estimate gets the round-off part of its error bar directly. The truncation part, which
needs steps 2h and the fourth difference (four more forwards), is measured on a seeded sample
of elements and on every element that disagrees with the reference; the sample's largest
truncation error stands for the rest of the input.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from gradcheck_lab.oracles.base import Estimates, FiniteDifferences, Point, Probe
from gradcheck_lab.oracles.finite_difference import (
    ROUNDOFF_FACTOR,
    called_in_note,
    evaluate_at,
    input_tensors,
    method,
    partial_difference,
)
from gradcheck_lab.oracles.function import FunctionUnderTest
from gradcheck_lab.oracles.precision import FLOAT64, Precision

CHUNK = 256  # perturbed copies per batched forward
# Copying more than this many elements per chunk (CHUNK copies of a 784x128 weight are 25
# million) costs more than the calls vmap saves: such inputs get plain calls untried.
VMAP_MAX_COPIED_ELEMENTS = 4_000_000
SAMPLE = 32  # elements per input whose error bar is measured in full, besides disagreements
_SAMPLE_STREAM = 4


def estimate(function: FunctionUnderTest, point: Point, probes: tuple[Probe, ...], *,
             reference: tuple[dict[str, np.ndarray], ...] | None = None,
             term_scale: float = 0.0,
             progress: Callable[[int, int], None] | None = None,
             precision: Precision = FLOAT64) -> FiniteDifferences:
    """Every partial of every differentiable input of ``function`` (called in float64),
    projected on each probe's cotangent. ``reference``: gradients per probe (the symbolic
    oracle's) whose disagreeing elements get a full error bar. ``progress(done, total)`` is
    called as elements are finished."""
    import torch

    case, device = function.case, function.device
    base = input_tensors(case, point.values, device)
    with torch.no_grad():
        # A copy: an impl may return the same buffer every call, and rewrite it.
        center = function(base).detach().to(torch.float64).reshape(-1).clone()
    cotangents = torch.tensor(np.stack([np.asarray(p.cotangent, dtype=np.float64).reshape(-1)
                                        for p in probes]), dtype=torch.float64, device=device)
    evaluations = [1]
    batched = _Batched(function, base, evaluations)
    total = sum(spec.size for spec in case.differentiable_inputs)
    done = 0
    per_input: dict[str, Estimates] = {}
    for number, spec in enumerate(case.differentiable_inputs):
        x = base[spec.name].reshape(-1)
        steps = precision.relative_step * torch.clamp(x.abs(), min=1.0)
        partials = torch.empty((len(probes), x.numel()), dtype=torch.float64, device=device)
        for start in range(0, x.numel(), CHUNK):
            indices = torch.arange(start, min(start + CHUNK, x.numel()), device=device)
            plus = batched(spec.name, indices, steps[indices])
            minus = batched(spec.name, indices, -steps[indices])
            columns = (plus - minus) / (2 * steps[indices, None])  # (chunk, outputs)
            partials[:, indices] = cotangents @ columns.T
            done += len(indices)
            if progress is not None:
                progress(done, total)
        partials_np = partials.cpu().numpy()
        # Round-off: a few ulps of the function's values (or a larger intermediate), over h.
        magnitude = max(float(center.abs().max()) if center.numel() else 0.0, term_scale)
        roundoff = (ROUNDOFF_FACTOR * precision.roundoff * magnitude
                    / steps.cpu().numpy())[None, :] * (
            np.abs(cotangents.cpu().numpy()).sum(axis=1)[:, None])
        errors = _error_bars(point, spec.name, number, partials_np, roundoff, function,
                             center.cpu().numpy(), cotangents.cpu().numpy(), term_scale,
                             None if reference is None else [r[spec.name].reshape(-1)
                                                             for r in reference],
                             evaluations, precision)
        per_input[spec.name] = Estimates(
            indices=np.arange(x.numel()), partials=partials_np, partial_errors=errors,
            directions=np.zeros((0, *spec.shape)), directional=np.zeros((len(probes), 0)),
            directional_errors=np.zeros((len(probes), 0)))
    how = ("batched with vmap where faster than plain calls" if batched.vmapped
           else "plain calls (faster than vmap here, or vmap could not trace it)")
    return FiniteDifferences(
        f"{method(precision).replace(', error from h vs 2h', '')}; exhaustive: every partial, "
        f"{how}; full error bars (h vs 2h) on {SAMPLE} sampled elements per input and on "
        f"disagreements; on {function.label}",
        center.cpu().numpy().reshape(case.program.output_node.shape), per_input,
        evaluations[0], notes=called_in_note(function))


class _Batched:
    """f with one input's elements ``indices`` moved by ``steps``, one result per index.

    Two ways, and the faster is kept after timing both on the first chunk: a batched forward
    through ``torch.func.vmap`` (fewer calls, but CHUNK copies of the input in memory: a loss
    for a large weight matrix) or plain calls, each moving one element in place and putting
    the original value back, so nothing is copied.
    """

    def __init__(self, function: FunctionUnderTest, base: dict[str, Any],
                 evaluations: list[int]) -> None:
        self.function = function
        self.base = base
        self.evaluations = evaluations
        self.choice: dict[str, bool] = {}  # per input: vmap (True) or plain calls (False)

    @property
    def vmapped(self) -> bool:
        return any(self.choice.values())

    def __call__(self, name: str, indices: Any, steps: Any) -> Any:
        import torch

        self.evaluations[0] += len(indices)
        with torch.no_grad():
            if name not in self.choice:
                return self._choose(name, indices, steps)
            if self.choice[name]:
                return self._vmap(name, indices, steps)
            return self._plain(name, indices, steps)

    def _choose(self, name: str, indices: Any, steps: Any) -> Any:
        started = time.perf_counter()
        plain = self._plain(name, indices, steps)
        plain_seconds = time.perf_counter() - started
        too_big = len(indices) * self.base[name].numel() > VMAP_MAX_COPIED_ELEMENTS
        if too_big or (False in self.choice.values() and not any(self.choice.values())):
            # Copies too large to win, or vmap failed or lost on an earlier input: do not
            # pay for trying.
            self.choice[name] = False
            return plain
        try:
            started = time.perf_counter()
            self._vmap(name, indices, steps)
            self.choice[name] = time.perf_counter() - started < plain_seconds
        except Exception:
            self.choice[name] = False  # vmap cannot trace this function: plain calls it is
        return plain

    def _vmap(self, name: str, indices: Any, steps: Any) -> Any:
        import torch

        flat = self.base[name].reshape(-1)
        copies = flat.expand(len(indices), -1).clone()
        copies[torch.arange(len(indices)), indices] += steps
        copies = copies.reshape(len(indices), *self.base[name].shape)
        out = torch.func.vmap(lambda moved: self.function({**self.base, name: moved}))(copies)
        return out.reshape(len(indices), -1).to(torch.float64)

    def _plain(self, name: str, indices: Any, steps: Any) -> Any:
        import torch

        flat = self.base[name].view(-1)
        # On cpu, a numpy view of the same memory: setting one element through it costs
        # nanoseconds, through the tensor microseconds (2N times over).
        cells = flat.numpy() if flat.device.type == "cpu" else flat
        rows = []
        for index, step in zip(indices.tolist(), steps.tolist(), strict=True):
            original = float(cells[index])
            cells[index] = original + step
            try:
                rows.append(self.function(self.base).reshape(-1).clone())
            finally:
                cells[index] = original
        return torch.stack(rows).to(torch.float64)


def _error_bars(point: Point, name: str, number: int, partials: np.ndarray,
                roundoff: np.ndarray, function: FunctionUnderTest, center: np.ndarray,
                cotangents: np.ndarray, term_scale: float,
                reference: list[np.ndarray] | None, evaluations: list[int],
                precision: Precision) -> np.ndarray:
    """Round-off for every element; the full bar (h vs 2h, fourth difference) on a sample and
    on the elements that disagree with the reference beyond the sample-based bar."""

    x = point.values[name]
    size = x.size
    rng = np.random.default_rng([function.case.seed, _SAMPLE_STREAM, number])
    sample = rng.choice(size, size=min(SAMPLE, size), replace=False)

    def at(moved: np.ndarray) -> np.ndarray:
        evaluations[0] += 1
        return evaluate_at(function, {**point.values, name: moved})

    def full_bar(flat: int) -> np.ndarray:
        _, error = partial_difference(at, x, flat, center, term_scale, precision)
        return np.abs(cotangents) @ error

    errors = roundoff.copy()
    truncation = np.zeros(len(cotangents))
    for flat in sample:
        measured = full_bar(int(flat))
        errors[:, flat] = np.maximum(errors[:, flat], measured)
        truncation = np.maximum(truncation, measured)
    errors = np.maximum(errors, truncation[:, None])
    if reference is not None:
        with np.errstate(all="ignore"):
            gap = np.max([np.abs(partials[k] - reference[k]) - 2 * errors[k]
                          for k in range(len(reference))], axis=0)
        for flat in np.flatnonzero(~(gap <= 0)):
            errors[:, flat] = np.maximum(roundoff[:, flat], full_bar(int(flat)))
    return errors
