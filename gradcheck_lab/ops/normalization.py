"""Normalization layers and dropout of ``torch.nn.functional`` as composites: batch_norm,
group_norm, rms_norm and (deterministic) dropout, each written here once in terms of the
language's own ops (``ops.base.composite``), as ``ops.losses`` writes the losses, so the exact
oracle, the rule sweep and the kink report see every step. Each keeps torch's function as its
torch form, which tests/test_ops.py confirms the definition against (values and gradients).

Spelling: torch's names, positional order, keywords and defaults; an optional tensor is
left out, or given as None by keyword or in its place (``batch_norm(x, None, None, w, b,
True)``). rms_norm needs its eps (see ``_rms_norm_shape``); dropout is the identity
or refused. (layer_norm has a closed form of its own in ``ops.nn``.)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from gradcheck_lab.errors import SpecError
from gradcheck_lab.ops.base import (
    GIVEN,
    ArgInfo,
    Op,
    Param,
    Params,
    Shape,
    as_ints,
    composite,
    dims_param,
    float_param,
    int_param,
    optional_float_param,
)

# torch.nn.functional's default eps of batch_norm and group_norm.
NORM_EPS = 1e-5
_GIVEN = Param(GIVEN, "dims", hidden=True)


def _by_position(args: Sequence[Any], params: Params) -> dict[int, Any]:
    """The tensor arguments a call gave, keyed by their position in the signature (an optional
    one may be skipped by giving a later one by keyword: ``batch_norm(x, weight=w)``)."""
    return dict(zip(dims_param(params, GIVEN), args, strict=True))


def _per_channel(b: Any, vector: int, ndim: int) -> int:
    """A (C,) vector shaped (C, 1, ..., 1), so that it broadcasts along dim 1 of an ndim-d
    (N, C, ...) input (for a 2-d input, (C,) already does)."""
    if ndim <= 2:
        return vector
    return b.call("reshape", vector, shape=(b.shape(vector)[0], *[1] * (ndim - 2)))


def _affine(b: Any, y: int, weight: int | None, bias: int | None, ndim: int) -> int:
    """y·weight + bias per channel (dim 1), either one optional."""
    if weight is not None:
        y = b.call("mul", y, _per_channel(b, weight, ndim))
    if bias is not None:
        y = b.call("add", y, _per_channel(b, bias, ndim))
    return y


def _standardized(b: Any, x: int, mean: int, variance: int, eps: float) -> int:
    """(x - mean)·rsqrt(variance + eps), torch's 1/sqrt(var + eps) times the centred input."""
    return b.call("mul", b.call("sub", x, mean),
                  b.call("rsqrt", b.call("add", variance, b.const(eps))))


def _normalized(b: Any, x: int, dims: tuple[int, ...], eps: float) -> int:
    """x standardized by its own statistics over ``dims``, the variance biased (correction
    0): the one torch normalizes with (it divides by the count, not count - 1)."""
    mean = b.call("mean", x, dim=dims, keepdim=True)
    variance = b.call("var", x, dim=dims, correction=0, keepdim=True)
    return _standardized(b, x, mean, variance, eps)


def _check_channel_vectors(name: str, given: dict[int, ArgInfo], slots: dict[int, str],
                           channels: int) -> None:
    """Each given per-channel tensor has shape (C,)."""
    for position, slot in slots.items():
        if position in given and given[position].shape != (channels,):
            raise SpecError(f"{name}(): {slot} must have shape [{channels}] (one per channel "
                            f"of input), got {list(given[position].shape)}")


def _channels(name: str, shape: Shape) -> int:
    """C, dim 1 of an (N, C, ...) input."""
    if len(shape) < 2:
        raise SpecError(f"{name}(): input must be (N, C, ...), at least 2-d, got shape "
                        f"{list(shape)}")
    return shape[1]


# --- batch_norm ---------------------------------------------------------------------------

_BATCH_NORM_SLOTS = {1: "running_mean", 2: "running_var", 3: "weight", 4: "bias"}


def _batch_norm_shape(args: Sequence[ArgInfo], params: Params) -> Shape:
    shape = args[0].shape
    channels = _channels("batch_norm", shape)
    given = _by_position(args, params)
    _check_channel_vectors("batch_norm", given, _BATCH_NORM_SLOTS, channels)
    if (1 in given) != (2 in given):
        raise SpecError("batch_norm(): running_mean and running_var are given both or "
                        "neither (torch)")
    if not params["training"] and 1 not in given:
        raise SpecError("batch_norm(): training=False normalizes with running_mean and "
                        "running_var: give both, or training=True for batch statistics")
    if params["training"] and math.prod(shape) // max(channels, 1) <= 1:
        raise SpecError(f"batch_norm(): training=True needs more than 1 value per channel, "
                        f"got input of shape {list(shape)}")
    return shape


def _batch_norm(b: Any, args: list[int], p: Params) -> int:
    """training: the batch's statistics over every dim but the channels' (dim 1);
    otherwise running_mean and running_var, which get no gradient (as in torch)."""
    given = _by_position(args, p)
    x, ndim, eps = given[0], len(b.shape(given[0])), float_param(p, "eps")
    if p["training"]:
        # momentum only updates the running statistics torch keeps: no part of the output.
        y = _normalized(b, x, (0, *range(2, ndim)), eps)
    else:
        y = _standardized(b, x, _per_channel(b, given[1], ndim), _per_channel(b, given[2], ndim),
                          eps)
    return _affine(b, y, given.get(3), given.get(4), ndim)


def _batch_norm_torch(args: Sequence[Any], params: Params) -> Any:
    import torch

    given = _by_position(args, params)
    running = [given.get(1), given.get(2)]
    if params["training"]:
        # torch updates the running statistics in place in training mode: clones, so the
        # caller's tensors are never changed by a check.
        running = [None if t is None else t.detach().clone() for t in running]
    return torch.nn.functional.batch_norm(
        given[0], running[0], running[1], given.get(3), given.get(4),
        training=bool(params["training"]), momentum=float_param(params, "momentum"),
        eps=float_param(params, "eps"))


# --- group_norm ---------------------------------------------------------------------------


def _group_norm_shape(args: Sequence[ArgInfo], params: Params) -> Shape:
    shape = args[0].shape
    channels = _channels("group_norm", shape)
    groups = int_param(params, "num_groups")
    if groups <= 0 or channels % groups:
        raise SpecError(f"group_norm(): num_groups={groups} must divide the {channels} "
                        "channels of input (dim 1)")
    given = _by_position(args, params)
    _check_channel_vectors("group_norm", given, {1: "weight", 2: "bias"}, channels)
    return shape


def _group_norm(b: Any, args: list[int], p: Params) -> int:
    """As torch: the input seen as (N, G, C/G·...), each group normalized over its last dim,
    shaped back, then the per-channel affine."""
    given = _by_position(args, p)
    x = given[0]
    shape = b.shape(x)
    grouped = b.call("reshape", x, shape=(shape[0], int_param(p, "num_groups"), -1))
    y = _normalized(b, grouped, (2,), float_param(p, "eps"))
    y = b.call("reshape", y, shape=shape)
    return _affine(b, y, given.get(1), given.get(2), len(shape))


def _group_norm_torch(args: Sequence[Any], params: Params) -> Any:
    import torch

    given = _by_position(args, params)
    return torch.nn.functional.group_norm(given[0], int_param(params, "num_groups"),
                                          given.get(1), given.get(2),
                                          eps=float_param(params, "eps"))


# --- rms_norm -----------------------------------------------------------------------------


def _rms_axes(shape: Shape, params: Params) -> tuple[int, ...]:
    """The trailing dims ``normalized_shape`` names, as negative dims, checked."""
    requested = params["normalized_shape"]
    normalized = as_ints(requested, "normalized_shape")
    if not normalized or len(normalized) > len(shape) or shape[-len(normalized):] != normalized:
        raise SpecError(f"rms_norm(): normalized_shape={list(normalized)} must be the trailing "
                        f"dims of input, whose shape is {list(shape)}")
    return tuple(range(-len(normalized), 0))


def _rms_norm_shape(args: Sequence[ArgInfo], params: Params) -> Shape:
    shape = args[0].shape
    axes = _rms_axes(shape, params)
    if params["eps"] is None:
        # torch's eps=None is torch.finfo(input.dtype).eps: 2**-52 for a float64 case,
        # 2**-23 for float32. A case's program is built once for all its dtypes (the loader
        # builds it before the checks run dtype by dtype), so no single constant is torch's
        # value in every dtype, and for mean(x**2) well below 1 the two differ far beyond
        # float32's rounding (relative 2**-24 / mean(x**2)). Rather than check a function
        # that is not torch's in some dtype, the case names eps.
        raise SpecError("rms_norm(): eps=None is torch.finfo(input.dtype).eps, which differs "
                        "between a case's dtypes; give eps= (float32: 1.1920928955078125e-07, "
                        "float64: 2.220446049250313e-16)")
    normalized = tuple(shape[i] for i in axes)
    if len(args) > 1 and args[1].shape != normalized:
        raise SpecError(f"rms_norm(): weight must have the normalized shape "
                        f"{list(normalized)}, got {list(args[1].shape)}")
    return shape


def _rms_norm(b: Any, args: list[int], p: Params) -> int:
    """x·rsqrt(mean(x²) + eps) over the trailing dims, times weight: torch's own steps."""
    x = args[0]
    axes = _rms_axes(b.shape(x), p)
    mean_square = b.call("mean", b.call("mul", x, x), dim=axes, keepdim=True)
    y = b.call("mul", x, b.call("rsqrt", b.call("add", mean_square,
                                                b.const(float_param(p, "eps")))))
    return b.call("mul", y, args[1]) if len(args) > 1 else y


def _rms_norm_torch(args: Sequence[Any], params: Params) -> Any:
    import torch

    normalized = list(dims_param(params, "normalized_shape"))
    return torch.nn.functional.rms_norm(args[0], normalized, args[1] if len(args) > 1 else None,
                                        eps=optional_float_param(params, "eps"))


# --- dropout ------------------------------------------------------------------------------


def check_no_dropout(name: str, keyword: str, p: float, training: bool = True) -> None:
    """Dropout zeroes elements at random: no oracle can repeat torch's draw, so only its
    deterministic settings (p=0, or not training: the identity) are in the language."""
    if not 0.0 <= p <= 1.0:
        raise SpecError(f"{name}(): {keyword}={p} must be in [0, 1]")
    if training and p != 0.0:
        hint = "p=0 or training=False" if keyword == "p" else f"{keyword}=0.0"
        raise SpecError(f"{name}(): {keyword}={p} is random dropout, which a gradient check "
                        f"cannot repeat; write {hint} (no dropout)")


def _dropout_shape(args: Sequence[ArgInfo], params: Params) -> Shape:
    check_no_dropout("dropout", "p", float_param(params, "p"),
                     bool(params["training"]))
    return args[0].shape


def _dropout_torch(args: Sequence[Any], params: Params) -> Any:
    import torch

    # inplace changes where torch writes the result, never the value or the gradient: the
    # torch form computes out of place, so the caller's tensor stays as it was.
    return torch.nn.functional.dropout(args[0], p=float_param(params, "p"),
                                       training=bool(params["training"]), inplace=False)


def _nondifferentiable(op: Op, positions: frozenset[int]) -> Op:
    """``op`` with real arguments at ``positions`` (of its signature) that take no gradient,
    as torch's running statistics: the program builder refuses a differentiated one there,
    as it does cross_entropy's weight. (``composite`` marks only its integer arguments.)"""
    return dataclasses.replace(op, nondifferentiable_args=op.nondifferentiable_args | positions)


NORMALIZATION = [
    _nondifferentiable(composite(
        "batch_norm", _batch_norm, _batch_norm_torch, shape=_batch_norm_shape, group="nn",
        arg_names=("input", "running_mean", "running_var", "weight", "bias"), min_args=1,
        params=(Param("training", "bool", default=False),
                Param("momentum", "float", default=0.1),
                Param("eps", "float", default=NORM_EPS), _GIVEN),
        doc="over every dim but dim 1: the batch's statistics with `training=True`, else "
            "`running_mean`, `running_var` (no gradient); `weight`, `bias` per channel"),
        frozenset({1, 2})),
    composite(
        "group_norm", _group_norm, _group_norm_torch, shape=_group_norm_shape, group="nn",
        arg_names=("input", "weight", "bias"), min_args=1,
        positional=("input", "num_groups", "weight", "bias", "eps"),
        params=(Param("num_groups", "int", required=True),
                Param("eps", "float", default=NORM_EPS), _GIVEN),
        doc="over each of `num_groups` groups of channels (and the spatial dims); `weight`, "
            "`bias` per channel"),
    composite(
        "rms_norm", _rms_norm, _rms_norm_torch, shape=_rms_norm_shape, group="nn",
        arg_names=("input", "weight"), min_args=1,
        positional=("input", "normalized_shape", "weight", "eps"),
        params=(Param("normalized_shape", "dims", required=True),
                Param("eps", "float", default=None)),
        doc="x·rsqrt(mean(x²) + eps) over the trailing dims `normalized_shape`; `eps` must be "
            "given (torch's None is the dtype's eps, and one case checks several dtypes)"),
    composite(
        "dropout", lambda b, args, p: args[0], _dropout_torch, shape=_dropout_shape,
        group="nn", arg_names=("input",),
        params=(Param("p", "float", default=0.5), Param("training", "bool", default=True),
                Param("inplace", "bool", default=False)),
        doc="only as the identity: `p=0` or `training=False` (random dropout is refused)"),
]
