"""Losses and distances of ``torch.nn.functional`` as composites: each is written here once in
terms of the language's own ops (``ops.base.composite``), which the program builder puts in
its place, so the exact oracle, the rule sweep and the kink report see every step; each
keeps torch's function as its torch form, and tests/test_ops.py confirms the definition
against it (values and gradients). ``reduction`` is "none", "mean" or "sum" as in torch.

(cross_entropy, nll_loss and mse_loss have closed forms of their own in ``ops.nn``.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gradcheck_lab.errors import SpecError
from gradcheck_lab.ops.base import (
    GIVEN,
    ArgInfo,
    Param,
    Params,
    Shape,
    broadcast_shapes,
    composite,
    dims_param,
    float_param,
    int_param,
    normalize_dim,
)

REDUCTION_MODES = ("none", "mean", "sum")
_REDUCTION = (Param("reduction", "str", default="mean", choices=REDUCTION_MODES),)


def _reduced(b: Any, loss: int, reduction: Any) -> int:
    if reduction == "none":
        return loss
    return b.call("mean" if reduction == "mean" else "sum", loss)


def _elementwise_shape(count: int) -> Any:
    """The first ``count`` arguments broadcast; () unless reduction is "none"."""
    def rule(args: Sequence[ArgInfo], params: Params) -> Shape:
        shape = broadcast_shapes(*(a.shape for a in args[:count]))
        for extra in args[count:]:  # weights broadcast against the loss
            broadcast_shapes(shape, extra.shape)
        return shape if params.get("reduction") == "none" else ()

    return rule


def _functional(name: str, *keys: str) -> Any:
    """torch.nn.functional.NAME(*tensors, **the keywords ``keys``)."""
    def lower(args: Sequence[Any], params: Params) -> Any:
        import torch

        return getattr(torch.nn.functional, name)(*args, **{k: params[k] for k in keys})

    return lower


# --- regression ---------------------------------------------------------------------------


def _l1(b: Any, args: list[int], p: Params) -> int:
    return _reduced(b, b.call("abs", b.call("sub", args[0], args[1])), p["reduction"])


def _smooth(b: Any, args: list[int], p: Params, huber: bool) -> int:
    """smooth_l1 (``beta``) and huber (``delta``): quadratic within the bound, linear out."""
    bound = float_param(p, "delta" if huber else "beta")
    d = b.call("sub", args[0], args[1])
    size = b.call("abs", d)
    if bound == 0:  # smooth_l1 with beta 0 is l1, as torch has it
        return _reduced(b, size, p["reduction"])
    half_square = b.call("mul", b.const(0.5), b.call("mul", d, d))
    if huber:
        inner = half_square
        outer = b.call("mul", b.const(bound), b.call("sub", size, b.const(0.5 * bound)))
    else:
        inner = b.call("div", half_square, b.const(bound))
        outer = b.call("sub", size, b.const(0.5 * bound))
    loss = b.call("where", b.call("lt", size, b.const(bound)), inner, outer)
    return _reduced(b, loss, p["reduction"])


def _check_bound(name: str) -> Any:
    def rule(args: Sequence[ArgInfo], params: Params) -> Shape:
        if float_param(params, name) < 0:
            raise SpecError(f"{name}= must not be negative")
        return _elementwise_shape(2)(args, params)

    return rule


# --- classification -----------------------------------------------------------------------


def _bce(b: Any, args: list[int], p: Params) -> int:
    """-(t·log x + (1 - t)·log(1 - x))·w, each log clamped at -100 as torch does."""
    x, t = args[0], args[1]
    log_x = b.call("clamp", b.call("log", x), b.const(-100), given=(0, 1))
    log_1mx = b.call("clamp", b.call("log", b.call("sub", b.const(1), x)), b.const(-100),
                     given=(0, 1))
    loss = b.call("neg", b.call("add", b.call("mul", t, log_x),
                                b.call("mul", b.call("sub", b.const(1), t), log_1mx)))
    if len(args) > 2:
        loss = b.call("mul", loss, args[2])
    return _reduced(b, loss, p["reduction"])


def _bce_logits(b: Any, args: list[int], p: Params) -> int:
    """(1 - t)·x + (1 + (pos_weight - 1)·t)·softplus(-x), times weight: torch's stable form
    (softplus(-x) as -logsigmoid(x), which has no threshold)."""
    by_position = dict(zip(dims_param(p, GIVEN), args, strict=True))
    x, t = by_position[0], by_position[1]
    softplus = b.call("neg", b.call("logsigmoid", x))
    scale = b.const(1)
    if 3 in by_position:  # pos_weight
        scale = b.call("add", scale, b.call("mul", b.call("sub", by_position[3], b.const(1)), t))
    loss = b.call("add", b.call("mul", b.call("sub", b.const(1), t), x),
                  b.call("mul", scale, softplus))
    if 2 in by_position:  # weight
        loss = b.call("mul", loss, by_position[2])
    return _reduced(b, loss, p["reduction"])


def _bce_logits_torch(args: Sequence[Any], params: Params) -> Any:
    import torch

    by_position = dict(zip(dims_param(params, GIVEN), args, strict=True))
    return torch.nn.functional.binary_cross_entropy_with_logits(
        by_position[0], by_position[1], weight=by_position.get(2),
        pos_weight=by_position.get(3), reduction=str(params["reduction"]))


def _bce_torch(args: Sequence[Any], params: Params) -> Any:
    import torch

    return torch.nn.functional.binary_cross_entropy(
        args[0], args[1], weight=args[2] if len(args) > 2 else None,
        reduction=str(params["reduction"]))


def _kl_div_shape(args: Sequence[ArgInfo], params: Params) -> Shape:
    shape = _elementwise_shape(2)(args, params)
    return () if params["reduction"] == "batchmean" else shape


def _positive_part(b: Any, value: int) -> int:
    """log of where(v > 1, v, 1): finite where v <= 1, so the unselected branch of a where
    has no infinity for a VJP to multiply by 0."""
    return b.call("log", b.call("where", b.call("gt", value, b.const(1)), value, b.const(1)))


def _kl_div(b: Any, args: list[int], p: Params) -> int:
    x, t = args
    if p["log_target"]:
        loss = b.call("mul", b.call("exp", t), b.call("sub", t, x))
    else:
        # xlogy(t, t) - t·x: t·log t is 0 at t = 0 (log of where(t > 0, t, 1)).
        safe = b.call("log", b.call("where", b.call("gt", t, b.const(0)), t, b.const(1)))
        loss = b.call("sub", b.call("mul", t, safe), b.call("mul", t, x))
    if p["reduction"] == "batchmean":
        total = b.call("sum", loss)
        rows = b.shape(x)[0] if b.shape(x) else 1
        return b.call("div", total, b.const(rows))
    return _reduced(b, loss, p["reduction"])


def _poisson_nll(b: Any, args: list[int], p: Params) -> int:
    x, t = args
    if p["log_input"]:
        loss = b.call("sub", b.call("exp", x), b.call("mul", t, x))
    else:
        eps = b.const(float_param(p, "eps"))
        loss = b.call("sub", x, b.call("mul", t, b.call("log", b.call("add", x, eps))))
    if p["full"]:
        # Stirling's term t·log t - t + log(2πt)/2, where t > 1 (0 elsewhere), as torch.
        log_t = _positive_part(b, t)
        stirling = b.call("add", b.call("sub", b.call("mul", t, log_t), t),
                          b.call("mul", b.const(0.5), b.call("add", log_t,
                                                             b.const(1.8378770664093453))))
        loss = b.call("add", loss, b.call("where", b.call("gt", t, b.const(1)), stirling,
                                          b.const(0)))
    return _reduced(b, loss, p["reduction"])


def _margin_ranking(b: Any, args: list[int], p: Params) -> int:
    x1, x2, y = args
    gap = b.call("mul", b.call("neg", y), b.call("sub", x1, x2))
    loss = b.call("relu", b.call("add", gap, b.const(float_param(p, "margin"))))
    return _reduced(b, loss, p["reduction"])


# --- distances ----------------------------------------------------------------------------


def _distance(b: Any, x1: int, x2: int, order: float, eps: float, keepdim: bool) -> int:
    """torch's pairwise_distance: the p-norm of x1 - x2 + eps over the last dim."""
    difference = b.call("add", b.call("sub", x1, x2), b.const(eps))
    return b.call("vector_norm", difference, ord=order, dim=-1, keepdim=keepdim)


def _pairwise(b: Any, args: list[int], p: Params) -> int:
    return _distance(b, args[0], args[1], float_param(p, "p"), float_param(p, "eps"),
                     bool(p["keepdim"]))


def _pairwise_shape(args: Sequence[ArgInfo], params: Params) -> Shape:
    shape = broadcast_shapes(args[0].shape, args[1].shape)
    if not shape:
        raise SpecError("pairwise_distance() needs at least 1-d inputs")
    if not float_param(params, "p") > 0:
        raise SpecError("pairwise_distance(): p must be positive")
    return (*shape[:-1], 1) if params["keepdim"] else shape[:-1]


def _triplet(b: Any, args: list[int], p: Params) -> int:
    anchor, positive, negative = args
    order, eps = float_param(p, "p"), float_param(p, "eps")
    to_positive = _distance(b, anchor, positive, order, eps, False)
    to_negative = _distance(b, anchor, negative, order, eps, False)
    if p["swap"]:
        to_negative = b.call("minimum", to_negative,
                             _distance(b, positive, negative, order, eps, False))
    loss = b.call("relu", b.call("add", b.call("sub", to_positive, to_negative),
                                 b.const(float_param(p, "margin"))))
    return _reduced(b, loss, p["reduction"])


def _triplet_shape(args: Sequence[ArgInfo], params: Params) -> Shape:
    shape = broadcast_shapes(*(a.shape for a in args))
    if not shape:
        raise SpecError("triplet_margin_loss() needs at least 1-d inputs")
    return shape[:-1] if params["reduction"] == "none" else ()


def _cosine(b: Any, args: list[int], p: Params) -> int:
    """x1·x2 over ``dim``, each normalized by its norm clamped at eps, as torch computes."""
    dim, eps = int_param(p, "dim"), float_param(p, "eps")
    unit = [b.call("div", x, b.call("clamp", b.call("vector_norm", x, dim=dim, keepdim=True),
                                    b.const(eps), given=(0, 1)))
            for x in args]
    return b.call("sum", b.call("mul", unit[0], unit[1]), dim=dim)


def _cosine_shape(args: Sequence[ArgInfo], params: Params) -> Shape:
    shape = broadcast_shapes(args[0].shape, args[1].shape)
    if args[0].shape != shape or args[1].shape != shape:
        raise SpecError("cosine_similarity(): x1 and x2 need the same shape here (broadcast "
                        "them first)")
    dim = normalize_dim(int_param(params, "dim"), len(shape), "cosine_similarity")
    return tuple(n for i, n in enumerate(shape) if i != dim)


LOSSES = [
    composite("l1_loss", _l1, _functional("l1_loss", "reduction"),
              shape=_elementwise_shape(2), arg_names=("input", "target"), params=_REDUCTION,
              doc="|input - target|, reduced"),
    composite("smooth_l1_loss", lambda b, a, p: _smooth(b, a, p, huber=False),
              _functional("smooth_l1_loss", "reduction", "beta"), shape=_check_bound("beta"),
              arg_names=("input", "target"),
              params=(*_REDUCTION, Param("beta", "float", default=1.0)),
              doc="0.5·d²/beta where |d| < beta, |d| - 0.5·beta elsewhere (d = input - target)"),
    composite("huber_loss", lambda b, a, p: _smooth(b, a, p, huber=True),
              _functional("huber_loss", "reduction", "delta"), shape=_check_bound("delta"),
              arg_names=("input", "target"),
              params=(*_REDUCTION, Param("delta", "float", default=1.0)),
              doc="0.5·d² where |d| < delta, delta·(|d| - 0.5·delta) elsewhere"),
    composite("binary_cross_entropy", _bce, _bce_torch,
              shape=_elementwise_shape(2), arg_names=("input", "target", "weight"),
              min_args=2, params=_REDUCTION,
              doc="-(t·log x + (1 - t)·log(1 - x))·weight for probabilities x in (0, 1)"),
    composite("binary_cross_entropy_with_logits", _bce_logits, _bce_logits_torch,
              shape=_elementwise_shape(2),
              arg_names=("input", "target", "weight", "pos_weight"), min_args=2,
              params=(*_REDUCTION, Param(GIVEN, "dims", hidden=True)),
              doc="binary_cross_entropy(sigmoid(x), t), stably; `weight`, `pos_weight` "
                  "optional tensors"),
    composite("kl_div", _kl_div, _functional("kl_div", "reduction", "log_target"),
              shape=_kl_div_shape,
              arg_names=("input", "target"),
              params=(Param("reduction", "str", default="mean",
                            choices=(*REDUCTION_MODES, "batchmean")),
                      Param("log_target", "bool", default=False)),
              doc="t·(log t - input) (input: log-probabilities); `log_target` takes log t"),
    composite("poisson_nll_loss", _poisson_nll,
              _functional("poisson_nll_loss", "log_input", "full", "eps", "reduction"),
              shape=_elementwise_shape(2), arg_names=("input", "target"),
              params=(Param("log_input", "bool", default=True),
                      Param("full", "bool", default=False),
                      Param("eps", "float", default=1e-8), *_REDUCTION),
              doc="exp(x) - t·x (log_input), or x - t·log(x + eps); `full` adds Stirling's "
                  "term"),
    composite("margin_ranking_loss", _margin_ranking,
              _functional("margin_ranking_loss", "margin", "reduction"),
              shape=_elementwise_shape(3), arg_names=("input1", "input2", "target"),
              params=(Param("margin", "float", default=0.0), *_REDUCTION),
              doc="max(0, -target·(input1 - input2) + margin)"),
    composite("pairwise_distance", _pairwise,
              _functional("pairwise_distance", "p", "eps", "keepdim"), shape=_pairwise_shape,
              arg_names=("x1", "x2"),
              params=(Param("p", "float", default=2.0), Param("eps", "float", default=1e-6),
                      Param("keepdim", "bool", default=False)),
              doc="the p-norm of x1 - x2 + eps over the last dim"),
    composite("triplet_margin_loss", _triplet,
              _functional("triplet_margin_loss", "margin", "p", "eps", "swap", "reduction"),
              shape=_triplet_shape, arg_names=("anchor", "positive", "negative"),
              params=(Param("margin", "float", default=1.0), Param("p", "float", default=2.0),
                      Param("eps", "float", default=1e-6), Param("swap", "bool", default=False),
                      *_REDUCTION),
              doc="max(d(a, p) - d(a, n) + margin, 0), d the pairwise distance"),
    composite("cosine_similarity", _cosine, _functional("cosine_similarity", "dim", "eps"),
              shape=_cosine_shape, arg_names=("x1", "x2"),
              params=(Param("dim", "int", default=1), Param("eps", "float", default=1e-8)),
              doc="x1·x2 / (max(|x1|, eps)·max(|x2|, eps)) over `dim`"),
]
