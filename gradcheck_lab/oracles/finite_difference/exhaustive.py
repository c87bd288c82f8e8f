"""Exhaustive finite differences (`--fd exhaustive`): every partial derivative of every input,
by one central difference each (2N forwards for N elements).

Perturbed inputs are evaluated a batch at a time through ``torch.func.vmap``: one batched
forward instead of a call per perturbation. The batch size comes from memory, not from timing
(a busy machine misleads a timing pilot): each perturbed copy holds the input and every node
that depends on it, and a batch holds BATCH_BYTES of them. The copies live in one buffer per
input, made once; each batch moves its elements in place and puts them back. The nodes that do
not depend on the input are the centre's own (``FunctionUnderTest``), evaluated once. In a
lowered spec, the ops that read the input are evaluated only where a moved element reaches (the
op table's ``moves`` rules; ``FunctionUnderTest.moved_elements``): a moved weight of a linear
layer is one matrix-vector product, not the layer, and the input is not copied at all. A
function vmap cannot trace (a custom Function without a vmap rule, Python control flow on a
value), or whose batched values differ from a plain call by more than round-off, gets plain
calls: one element moved in place, the function called, the element put back.

Each estimate gets the round-off part of its error bar directly. The truncation part, which
needs steps 2h and the fourth difference (four more forwards), is measured on a seeded sample
of elements and on every element that disagrees with the reference, by plain calls (f at x ± h
read from the partials' own where those were plain calls too); the sample's largest
truncation error stands for the rest of the input.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from gradcheck_lab.oracles.contract import Estimates, FiniteDifferences
from gradcheck_lab.oracles.finite_difference import (
    CENTER,
    ROUNDOFF_FACTOR,
    called_in_note,
    difference_and_bar,
    method,
)
from gradcheck_lab.program import Program
from gradcheck_lab.subject.function import FunctionUnderTest
from gradcheck_lab.subject.points import Point
from gradcheck_lab.subject.precision import FLOAT64, Precision
from gradcheck_lab.subject.probes import Probe

# What one batched forward may hold: its perturbed copies of the input and of every node that
# depends on it, in float64 (the MNIST MLP's W1: about 1 MB a copy, 128 copies).
BATCH_BYTES = 128 * 2**20
MAX_BATCH = 512  # beyond this a batch saves no more calls worth having
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
    if device == "cpu":
        _keep_batches_mapped()
    base = function.input_tensors(point.values, center=True)
    with torch.no_grad():
        # A copy: an impl may return the same buffer every call, and rewrite it.
        center = function(base, CENTER).detach().to(torch.float64).reshape(-1).clone()
    magnitude = max(float(center.abs().max()) if center.numel() else 0.0, term_scale)
    cotangents = torch.tensor(np.stack([np.asarray(p.cotangent, dtype=np.float64).reshape(-1)
                                        for p in probes]), dtype=torch.float64, device=device)
    evaluations = [1]
    # Batched and plain values may differ by the round-off each evaluation is allowed.
    batched = _Batched(function, base, evaluations,
                       ROUNDOFF_FACTOR * precision.roundoff * max(magnitude, 1e-300))
    total = sum(spec.size for spec in case.differentiable_inputs)
    done = 0
    per_input: dict[str, Estimates] = {}
    for number, spec in enumerate(case.differentiable_inputs):
        x = base[spec.name].reshape(-1)
        steps = precision.relative_step * torch.clamp(x.abs(), min=1.0)
        partials = torch.empty((len(probes), x.numel()), dtype=torch.float64, device=device)
        size = batch_size(case.program, spec.name)
        sample = _sample(case.seed, number, x.numel())
        at_h: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # the sample's f(x ± h)
        for start in range(0, x.numel(), size):
            indices = torch.arange(start, min(start + size, x.numel()), device=device)
            plus = batched(spec.name, indices, steps[indices])
            minus = batched(spec.name, indices, -steps[indices])
            columns = (plus - minus) / (2 * steps[indices, None])  # (batch, outputs)
            partials[:, indices] = cotangents @ columns.T
            if not batched.vmapped.get(spec.name, False):
                # Plain calls: the sample's f(x ± h) are the values its bars would take again
                # (copies: a view would keep the whole batch alive).
                for flat in sample[(sample >= start) & (sample < start + len(indices))]:
                    at_h[int(flat)] = (plus[flat - start].cpu().numpy().copy(),
                                       minus[flat - start].cpu().numpy().copy())
            done += len(indices)
            if progress is not None:
                progress(done, total)
        partials_np = partials.cpu().numpy()
        # Round-off: a few ulps of the function's values (or a larger intermediate), over h.
        roundoff = (ROUNDOFF_FACTOR * precision.roundoff * magnitude
                    / steps.cpu().numpy())[None, :] * (
            np.abs(cotangents.cpu().numpy()).sum(axis=1)[:, None])
        bars = _FullBars(batched, spec.name, steps, center.cpu().numpy(),
                         np.abs(cotangents.cpu().numpy()), term_scale, precision, size, at_h)
        errors = _error_bars(bars, sample, partials_np, roundoff,
                             None if reference is None else [r[spec.name].reshape(-1)
                                                             for r in reference])
        batched.release(spec.name)
        per_input[spec.name] = Estimates(
            indices=np.arange(x.numel()), partials=partials_np, partial_errors=errors,
            directions=np.zeros((0, *spec.shape)), directional=np.zeros((len(probes), 0)),
            directional_errors=np.zeros((len(probes), 0)))
    return FiniteDifferences(
        f"{method(precision).replace(', error from h vs 2h', '')}; exhaustive: every partial, "
        f"{batched.how()}; full error bars (h vs 2h) on {SAMPLE} sampled elements per input "
        f"and on disagreements; on {function.label}",
        center.cpu().numpy().reshape(case.program.output_node.shape), per_input,
        evaluations[0], notes=called_in_note(function))


def _keep_batches_mapped() -> None:
    """glibc gives a block over its mmap threshold (128 KiB at first) back to the system when
    it is freed, and trims the heap's free top beyond twice that: every batch would then fault
    its pages in afresh (measured: the MNIST MLP's first exhaustive run in a process took 1.5
    times its second). Freeing one block just under glibc's cap (32 MiB) raises both
    thresholds for the process, as any earlier large free would: an empty tensor, never
    touched, costs a map and an unmap."""
    import platform

    import torch

    if platform.libc_ver()[0] == "glibc":
        block = torch.empty(31 * 2**20, dtype=torch.uint8)
        del block


def batch_size(program: Program, name: str) -> int:
    """Perturbed copies of input ``name`` per batched forward: as many as BATCH_BYTES holds
    of the input and every node that depends on it (at most MAX_BATCH)."""
    changing = program.depending_on({name})
    elements = sum(program.nodes[index].size for index in changing)
    return max(1, min(MAX_BATCH, BATCH_BYTES // (8 * max(elements, 1))))


class _Batched:
    """f with one input's elements ``indices`` moved by ``steps``, one result row per index:
    a batched forward through ``torch.func.vmap`` where it traces the function and gives what
    a plain call gives, plain calls otherwise (decided on each input's first batch)."""

    def __init__(self, function: FunctionUnderTest, base: dict[str, Any],
                 evaluations: list[int], roundoff: float) -> None:
        self.function = function
        self.base = base
        self.evaluations = evaluations
        self.roundoff = roundoff
        self.vmapped: dict[str, bool] = {}
        self.refusal: str | None = None  # why vmap was not used, when it was not
        self._buffers: dict[str, Any] = {}
        # Inputs whose readers were evaluated only where a moved element reaches.
        self.reached: set[str] = set()

    def how(self) -> str:
        reached = ""
        if self.reached:
            reached = (f"; the ops reading {', '.join(sorted(self.reached))} evaluated only "
                       "where a moved element reaches")
        if self.refusal is None:
            return f"batched with vmap (batch size from memory){reached}"
        if any(self.vmapped.values()):
            return (f"batched with vmap where it could be, plain calls elsewhere "
                    f"({self.refusal}){reached}")
        return f"plain calls ({self.refusal})"

    def __call__(self, name: str, indices: Any, steps: Any) -> Any:
        import torch

        self.evaluations[0] += len(indices)
        with torch.no_grad():
            if name not in self.vmapped:
                return self._first(name, indices, steps)
            if self.vmapped[name]:
                return self._vmap(name, indices, steps)
            return self._plain(name, indices, steps)

    def plain(self, name: str, indices: Any, steps: Any) -> Any:
        """``self(...)`` by plain calls whatever the input's batches went through."""
        import torch

        self.evaluations[0] += len(indices)
        with torch.no_grad():
            return self._plain(name, indices, steps)

    def _first(self, name: str, indices: Any, steps: Any) -> Any:
        """The first batch: vmap, checked against plain calls on its first and last
        elements."""
        import torch

        refused_before = self.refusal is not None and not any(self.vmapped.values())
        self.vmapped[name] = False
        if refused_before:  # on an earlier input vmap could not trace f, or gave other values
            return self._plain(name, indices, steps)
        try:
            rows = self._vmap(name, indices, steps)
        except Exception as exc:  # vmap cannot trace this function
            self.refusal = f"vmap could not trace it: {type(exc).__name__}"
            self.release(name)
            return self._plain(name, indices, steps)
        # The batch's first and last rows: a fault in how a batch is laid out shows in one.
        ends = sorted({0, len(indices) - 1})
        self.evaluations[0] += len(ends)
        plain = self._plain(name, indices[ends], steps[ends])
        if not bool(torch.all(torch.abs(rows[ends] - plain) <= self.roundoff)):
            self.refusal = "vmap's values differ from a plain call's by more than round-off"
            self.reached.discard(name)
            self.release(name)
            return self._plain(name, indices, steps)
        self.vmapped[name] = True
        return rows

    def release(self, name: str) -> None:
        """Free the input's buffer of perturbed copies: its partials are done."""
        self._buffers.pop(name, None)

    def _vmap(self, name: str, indices: Any, steps: Any) -> Any:
        import torch

        flat = self.base[name].reshape(-1)
        try:
            reached = self.function.moved_elements(name, indices, flat[indices] + steps)
        except Exception:  # a rule unfit for these arguments: copies instead
            reached = None
        if reached is not None:
            self.reached.add(name)
            return reached.reshape(len(indices), -1).to(torch.float64)
        copies = self._buffers.get(name)
        if copies is None or len(copies) < len(indices):
            copies = flat.expand(len(indices), -1).clone()
            self._buffers[name] = copies
        rows = torch.arange(len(indices), device=flat.device)
        copies[rows, indices] += steps
        try:
            batch = copies[:len(indices)].reshape(len(indices), *self.base[name].shape)
            moved = frozenset({name})
            out = torch.func.vmap(
                lambda value: self.function({**self.base, name: value}, moved))(batch)
            # A copy: the rows must not alias the buffer, whose elements are put back next.
            return out.reshape(len(indices), -1).to(torch.float64, copy=True)
        finally:
            copies[rows, indices] = flat[indices]

    def _plain(self, name: str, indices: Any, steps: Any) -> Any:
        import torch

        flat = self.base[name].view(-1)
        # On cpu, a numpy view of the same memory: setting one element through it costs
        # nanoseconds, through the tensor microseconds (2N times over).
        cells = flat.numpy() if flat.device.type == "cpu" else flat
        moved = frozenset({name})
        rows = []
        for index, step in zip(indices.tolist(), steps.tolist(), strict=True):
            original = float(cells[index])
            cells[index] = original + step
            try:
                rows.append(self.function(self.base, moved).reshape(-1).clone())
            finally:
                cells[index] = original
        return torch.stack(rows).to(torch.float64)


def _sample(seed: int, number: int, size: int) -> np.ndarray:
    """The seeded elements of input ``number`` whose error bars are measured in full."""
    rng = np.random.default_rng([seed, _SAMPLE_STREAM, number])
    return rng.choice(size, size=min(SAMPLE, size), replace=False)


def _error_bars(bars: _FullBars, sample: np.ndarray, partials: np.ndarray,
                roundoff: np.ndarray, reference: list[np.ndarray] | None) -> np.ndarray:
    """Round-off for every element; the full bar (h vs 2h, fourth difference) on ``sample``
    and on the elements that disagree with the reference beyond the sample-based bar."""
    errors = roundoff.copy()
    measured = bars.of(sample)
    errors[:, sample] = np.maximum(errors[:, sample], measured)
    # The sample's largest truncation error stands for every element (NaN carries through).
    truncation = np.maximum(np.zeros(len(errors)), measured.max(axis=1, initial=-np.inf))
    errors = np.maximum(errors, truncation[:, None])
    if reference is not None:
        with np.errstate(all="ignore"):
            gap = np.max([np.abs(partials[k] - reference[k]) - 2 * errors[k]
                          for k in range(len(reference))], axis=0)
        disagreeing = np.flatnonzero(~(gap <= 0))
        if disagreeing.size:
            errors[:, disagreeing] = np.maximum(roundoff[:, disagreeing],
                                                bars.of(disagreeing))
    return errors


class _FullBars:
    """The full error bar of each partial asked for (|cotangent| · the bar of its column):
    f at ±h and ±2h of the element by plain calls, the bar as ``central_difference`` takes
    it. ``at_h``: f at ±h where the partials took it by plain calls too (the sample's), so
    that only ±2h is evaluated again (batched values may differ from a plain call's by
    round-off, which a bar is made of: those are not reused)."""

    def __init__(self, batched: _Batched, name: str, steps: Any, center: np.ndarray,
                 magnitudes: np.ndarray, term_scale: float, precision: Precision,
                 batch: int, at_h: dict[int, tuple[np.ndarray, np.ndarray]]) -> None:
        self.batched, self.name, self.steps = batched, name, steps
        self.center, self.magnitudes = center, magnitudes
        self.term_scale, self.precision, self.batch = term_scale, precision, batch
        self.at_h = at_h

    def of(self, flats: np.ndarray) -> np.ndarray:
        """(probes, len(flats)): each element's full bar, projected on each cotangent."""
        import torch

        bars = np.zeros((len(self.magnitudes), len(flats)))
        for start in range(0, len(flats), self.batch):
            chunk = flats[start:start + self.batch]
            indices = torch.as_tensor(chunk, dtype=torch.int64, device=self.steps.device)
            steps = self.steps[indices]
            outputs = {0: self.center}
            if all(int(flat) in self.at_h for flat in chunk):
                outputs[1] = np.stack([self.at_h[int(flat)][0] for flat in chunk])
                outputs[-1] = np.stack([self.at_h[int(flat)][1] for flat in chunk])
            for multiple in (1, -1, 2, -2):  # x + (m·h): the moves partial_difference makes
                if multiple not in outputs:
                    outputs[multiple] = self.batched.plain(self.name, indices,
                                                           multiple * steps).cpu().numpy()
            _, error = difference_and_bar(outputs, steps.cpu().numpy()[:, None],
                                          self.term_scale, self.precision.roundoff)
            for row, column in enumerate(error):  # each as one element's bar is summed
                bars[:, start + row] = self.magnitudes @ column
        return bars
