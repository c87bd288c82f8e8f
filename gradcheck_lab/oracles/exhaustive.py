"""Exhaustive finite differences (`--fd exhaustive`): every partial derivative of every input,
by one central difference each (2N forwards for N elements), batched.

Perturbed copies of an input are evaluated CHUNK at a time through ``torch.func.vmap`` (one
batched forward instead of CHUNK calls); a function vmap cannot trace (a custom Function
without a vmap rule, data-dependent Python control flow) falls back to plain calls. Memory is
bounded by CHUNK forwards at once. Each estimate gets the round-off part of its error bar
directly; the truncation part, which needs steps 2h and the fourth difference (four more
forwards), is measured on a seeded sample of elements and on every element that disagrees with
the reference, and the sample's largest truncation error stands for the rest of the input.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from gradcheck_lab.casefile import Case
from gradcheck_lab.oracles.base import Estimates, FiniteDifferences, Probe
from gradcheck_lab.oracles.finite_difference import (
    EPS64,
    METHOD,
    RELATIVE_STEP,
    ROUNDOFF_FACTOR,
    central_difference,
)
from gradcheck_lab.oracles.torch_function import TorchFunction
from gradcheck_lab.points import Point

CHUNK = 256  # perturbed copies per batched forward
SAMPLE = 32  # elements per input whose error bar is measured in full, besides disagreements
_SAMPLE_STREAM = 4


def estimate(case: Case, point: Point, probes: tuple[Probe, ...], device: str, *,
             reference: tuple[dict[str, np.ndarray], ...] | None = None,
             term_scale: float = 0.0,
             progress: Callable[[int, int], None] | None = None) -> FiniteDifferences:
    """Every partial of every differentiable input, projected on each probe's cotangent.
    ``reference``: gradients per probe (the symbolic oracle's) whose disagreeing elements get a
    full error bar. ``progress(done, total)`` is called as elements are finished."""
    import torch

    function = TorchFunction(case, "float64", device)
    base = {spec.name: torch.tensor(point.values[spec.name],
                                    dtype=torch.int64 if spec.is_integer else torch.float64,
                                    device=device)
            for spec in case.inputs}
    with torch.no_grad():
        center = function(base).detach().to(torch.float64).reshape(-1)
    cotangents = torch.tensor(np.stack([np.asarray(p.cotangent, dtype=np.float64).reshape(-1)
                                        for p in probes]), dtype=torch.float64, device=device)
    evaluations = [1]
    batched = _Batched(function, base, evaluations)
    total = sum(spec.size for spec in case.differentiable_inputs)
    done = 0
    per_input: dict[str, Estimates] = {}
    for number, spec in enumerate(case.differentiable_inputs):
        x = base[spec.name].reshape(-1)
        steps = RELATIVE_STEP * torch.clamp(x.abs(), min=1.0)
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
        roundoff = (ROUNDOFF_FACTOR * EPS64 * magnitude / steps.cpu().numpy())[None, :] * (
            np.abs(cotangents.cpu().numpy()).sum(axis=1)[:, None])
        errors = _error_bars(case, point, spec.name, number, partials_np, roundoff, function,
                             center.cpu().numpy(), cotangents.cpu().numpy(), term_scale,
                             None if reference is None else [r[spec.name].reshape(-1)
                                                             for r in reference],
                             evaluations)
        per_input[spec.name] = Estimates(
            indices=np.arange(x.numel()), partials=partials_np, partial_errors=errors,
            directions=np.zeros((0, *spec.shape)), directional=np.zeros((len(probes), 0)),
            directional_errors=np.zeros((len(probes), 0)))
    how = "batched with vmap" if batched.vmapped else "plain calls (vmap could not trace it)"
    return FiniteDifferences(
        f"{METHOD.replace(', error from h vs 2h', '')}; exhaustive: every partial, {how}; full "
        f"error bars (h vs 2h) on {SAMPLE} sampled elements per input and on disagreements; "
        f"on {function.label}",
        center.cpu().numpy().reshape(case.program.output_node.shape), per_input,
        evaluations[0])


class _Batched:
    """f with one input's elements ``indices`` moved by ``steps``, one copy per index."""

    def __init__(self, function: TorchFunction, base: dict[str, Any],
                 evaluations: list[int]) -> None:
        self.function = function
        self.base = base
        self.evaluations = evaluations
        self.vmapped: bool | None = None  # unknown until the first chunk

    def __call__(self, name: str, indices: Any, steps: Any) -> Any:
        import torch

        flat = self.base[name].reshape(-1)
        copies = flat.expand(len(indices), -1).clone()
        copies[torch.arange(len(indices)), indices] += steps
        copies = copies.reshape(len(indices), *self.base[name].shape)
        self.evaluations[0] += len(indices)
        with torch.no_grad():
            if self.vmapped is not False:
                try:
                    out = torch.func.vmap(lambda moved: self.function({**self.base,
                                                                        name: moved}))(copies)
                    self.vmapped = True
                    return out.reshape(len(indices), -1).to(torch.float64)
                except Exception:
                    if self.vmapped:  # it traced before: this failure is the function's own
                        raise
                    self.vmapped = False
            return torch.stack([self.function({**self.base, name: moved}).reshape(-1)
                                for moved in copies]).to(torch.float64)


def _error_bars(case: Case, point: Point, name: str, number: int, partials: np.ndarray,
                roundoff: np.ndarray, function: TorchFunction, center: np.ndarray,
                cotangents: np.ndarray, term_scale: float,
                reference: list[np.ndarray] | None, evaluations: list[int]) -> np.ndarray:
    """Round-off for every element; the full bar (h vs 2h, fourth difference) on a sample and
    on the elements that disagree with the reference beyond the sample-based bar."""
    import torch

    x = point.values[name]
    size = x.size
    rng = np.random.default_rng([case.seed, _SAMPLE_STREAM, number])
    sample = rng.choice(size, size=min(SAMPLE, size), replace=False)

    def full_bar(flat: int) -> np.ndarray:
        direction = np.zeros(size)
        direction[flat] = 1.0
        direction = direction.reshape(x.shape)
        step = RELATIVE_STEP * max(1.0, abs(float(x.reshape(-1)[flat])))

        def shifted(t: float) -> np.ndarray:
            tensors = {spec.name: torch.tensor(
                point.values[spec.name] + (t * direction if spec.name == name else 0),
                dtype=torch.int64 if spec.is_integer else torch.float64,
                device=function.device) for spec in case.inputs}
            evaluations[0] += 1
            with torch.no_grad():
                return function(tensors).detach().to(torch.float64).cpu().numpy().reshape(-1)

        _, error = central_difference(shifted, center, term_scale, step)
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
