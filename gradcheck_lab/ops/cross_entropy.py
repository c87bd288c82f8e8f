"""cross_entropy and nll_loss, with torch's keywords: ``weight`` (per class), ``ignore_index``,
``reduction`` and, for cross_entropy, ``label_smoothing`` and probability targets.

Both are one formula. With log-probabilities lp (log_softmax(input) for cross_entropy, the
input itself for nll_loss), a target distribution q per row (one-hot of a class index, or the
given probabilities; smoothed: (1 - ε)·q + ε/C) and class weights w, row n's loss is
l_n = -Σ_c w_c·q_nc·lp_nc, 0 for a row whose index is ``ignore_index``. "mean" divides the
sum by Σ_n w_{t_n} over the kept rows for class-index targets (torch's weighted mean), by N
for probabilities. The VJP is closed-form: ∂l_n/∂lp = -w·q_n, and through log_softmax
∂l_n/∂z = (Σ_c w_c q_nc)·softmax(z_n) - w·q_n.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from gradcheck_lab.errors import SpecError
from gradcheck_lab.ops.base import (
    ArgInfo,
    Arrays,
    Gradients,
    Op,
    Param,
    Params,
    Shape,
    as_float,
    float_param,
    int_param,
    object_array,
    torch_module,
)
from gradcheck_lab.ops.softmax import log_softmax, softmax, sympy_log_softmax

_REDUCTION = Param("reduction", "str", default="mean", choices=("none", "mean", "sum"))


def _shape(name: str) -> Any:
    def rule(args: Sequence[ArgInfo], params: Params) -> Shape:
        logits, target = args[0], args[1]
        what = "logits" if name == "cross_entropy" else "input"
        if len(logits.shape) not in (1, 2):
            raise SpecError(f"{name}: {what} must be (N, C) or (C,), got shape "
                            f"{list(logits.shape)}")
        rows = logits.shape[:-1]
        if target.is_integer and target.shape != rows:
            raise SpecError(f"{name}: class-index target must have shape {list(rows)} for "
                            f"{what} of shape {list(logits.shape)}, got {list(target.shape)}")
        if not target.is_integer and (name == "nll_loss" or target.shape != logits.shape):
            if name == "nll_loss":
                raise SpecError("nll_loss: target must be class indices (int64)")
            raise SpecError(
                f"{name}: target must be class indices (an integer tensor of shape "
                f"{list(rows)}; write {{value: [...], dtype: int64}} or init: randint) "
                f"or probabilities of the {what}' shape {list(logits.shape)}; "
                f"got a real tensor of shape {list(target.shape)}")
        if len(args) > 2 and args[2].shape != logits.shape[-1:]:
            raise SpecError(f"{name}: weight must have shape [{logits.shape[-1]}] (one per "
                            f"class), got {list(args[2].shape)}")
        if not 0.0 <= float_param(params, "label_smoothing", 0.0) <= 1.0:
            raise SpecError(f"{name}: label_smoothing must be in [0, 1]")
        return rows if params["reduction"] == "none" else ()

    return rule


@dataclass
class _Targets:
    """The rows' target distributions q (smoothed, 0 for ignored rows), the class weights w,
    and the mean's divisor."""

    q: Any  # (N, C), numbers or sympy objects
    w: Any  # (C,)
    divisor: Any
    indices: bool  # class-index targets (else probabilities)


def _targets(args: Sequence[Any], params: Params, exact: bool) -> _Targets:
    logits, target = args[0], args[1]
    classes = np.shape(logits)[-1]
    rows = 1 if np.ndim(logits) == 1 else np.shape(logits)[0]
    epsilon: Any = float_param(params, "label_smoothing", 0.0)
    one: Any = 1.0
    if exact:  # ε at the binary value torch computes with
        import sympy

        fraction = Fraction(epsilon)
        epsilon = sympy.Rational(fraction.numerator, fraction.denominator)
        one = sympy.Integer(1)
    weights = (np.asarray(args[2]).reshape(classes) if len(args) > 2 else
               np.full(classes, one, dtype=object if exact else np.float64))
    if np.issubdtype(np.asarray(target).dtype, np.integer):
        index = np.asarray(target).astype(np.int64).reshape(rows)
        kept = index != int_param(params, "ignore_index", -100)
        bad = index[kept & ((index < 0) | (index >= classes))]
        if bad.size:
            raise SpecError(f"cross_entropy: target class {int(bad[0])} is outside "
                            f"[0, {classes})")
        onehot = np.zeros((rows, classes), dtype=np.int64)
        onehot[np.flatnonzero(kept), index[kept]] = 1
        q = (onehot * (one - epsilon) + epsilon / classes) * kept[:, None].astype(np.int64)
        divisor = np.sum(weights[index[kept]]) if kept.any() else 0 * one
        return _Targets(object_array(q) if exact else q, weights, divisor, True)
    probabilities = np.reshape(target, (rows, classes))
    q = probabilities * (one - epsilon) + epsilon / classes
    return _Targets(q, weights, one * rows, False)


def _reduce(losses: Any, targets: _Targets, params: Params, logits_ndim: int) -> Any:
    if params["reduction"] == "sum":
        return np.sum(losses)
    if params["reduction"] == "mean":
        return np.sum(losses) / targets.divisor
    return losses.reshape(()) if logits_ndim == 1 else losses


def _log_probs(args: Sequence[Any], through_softmax: bool, exact: bool) -> Any:
    rows = 1 if np.ndim(args[0]) == 1 else np.shape(args[0])[0]
    logits = np.reshape(args[0], (rows, -1))
    if not through_softmax:
        return logits
    return sympy_log_softmax(logits, -1) if exact else log_softmax(logits, -1)


def _forms(name: str, through_softmax: bool) -> dict[str, Any]:
    def numpy_form(args: Arrays, params: Params) -> np.ndarray:
        targets = _targets(args, params, exact=False)
        lp = _log_probs(args, through_softmax, exact=False)
        with np.errstate(invalid="ignore", divide="ignore"):
            losses = -np.sum(targets.w * targets.q * lp, axis=-1)
            return as_float(_reduce(losses, targets, params, np.ndim(args[0])))

    def sympy_form(args: Arrays, params: Params) -> np.ndarray:
        targets = _targets(args, params, exact=True)
        lp = _log_probs(args, through_softmax, exact=True)
        losses = object_array(-np.sum(targets.w * targets.q * lp, axis=-1))
        return object_array(_reduce(losses, targets, params, np.ndim(args[0])))

    def rule(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
             needs: Sequence[bool], magnitude: bool) -> Gradients:
        targets = _targets(args, params, exact=False)
        rows = targets.q.shape[0]
        # Each row's cotangent: its own for "none", the total's (over the divisor) else.
        if params["reduction"] == "none":
            scale = as_float(g).reshape(rows, 1)
        else:
            scale = np.full((rows, 1), as_float(g).reshape(()))
            if params["reduction"] == "mean":
                scale = scale / targets.divisor
        if magnitude:
            scale = np.abs(scale)
        wq = targets.w * targets.q
        grads: Gradients = [None] * len(args)
        if needs[0]:
            if through_softmax:
                probs = softmax(np.reshape(args[0], (rows, -1)), -1)
                mass = np.sum(np.abs(wq) if magnitude else wq, axis=-1, keepdims=True)
                local = mass * probs + np.abs(wq) if magnitude else mass * probs - wq
            else:
                local = np.abs(wq) if magnitude else -wq
            grads[0] = (scale * local).reshape(np.shape(args[0]))
        if len(args) > 1 and needs[1] and not targets.indices:
            epsilon = float_param(params, "label_smoothing", 0.0)
            lp = _log_probs(args, through_softmax, exact=False)
            local = -(1.0 - epsilon) * targets.w * lp
            grads[1] = (scale * (np.abs(local) if magnitude else local)).reshape(
                np.shape(args[1]))
        return grads

    return {
        "numpy": numpy_form, "sympy": sympy_form,
        "vjp": lambda g, a, o, p, n: rule(g, a, o, p, n, magnitude=False),
        "vjp_magnitude": lambda g, a, o, p, n: rule(g, a, o, p, n, magnitude=True),
    }


def _torch(name: str) -> Any:
    def lower(args: Sequence[Any], params: Params) -> Any:
        torch = torch_module()
        logits, target = args[0], args[1]
        if not target.is_floating_point():
            target = target.long()
        # torch takes no gradient for the weights: neither do we (nondifferentiable_args).
        weight = args[2].detach() if len(args) > 2 else None
        keywords = {"weight": weight, "ignore_index": int_param(params, "ignore_index"),
                    "reduction": str(params["reduction"])}
        if name == "cross_entropy":
            keywords["label_smoothing"] = float_param(params, "label_smoothing")
        return getattr(torch.nn.functional, name)(logits, target, **keywords)

    return lower


def _loss(name: str, through_softmax: bool, doc: str) -> Op:
    smoothing = (Param("label_smoothing", "float", default=0.0),) if through_softmax else ()
    return Op(
        name=name, arg_names=("input", "target", "weight"), group="loss", doc=doc,
        min_args=2, max_args=3, shape=_shape(name), torch=_torch(name),
        params=(Param("ignore_index", "int", default=-100), _REDUCTION, *smoothing),
        positional=("input", "target", "weight"), integer_args=frozenset({1}),
        nondifferentiable_args=frozenset({2}), **_forms(name, through_softmax))


CROSS_ENTROPY = _loss(
    "cross_entropy", True,
    "`input` `(N, C)` or `(C,)` logits; `target` class indices (int64) or probabilities; "
    "`weight` per class, `ignore_index`, `reduction`, `label_smoothing` as torch")
NLL_LOSS = _loss(
    "nll_loss", False,
    "`input` `(N, C)` or `(C,)` log-probabilities, `target` class indices; `weight`, "
    "`ignore_index`, `reduction` as torch")

CLASSIFICATION = [CROSS_ENTROPY, NLL_LOSS]
