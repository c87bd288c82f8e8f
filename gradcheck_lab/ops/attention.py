"""``torch.nn.functional.scaled_dot_product_attention`` as a composite (``ops.base.composite``,
as ``ops.losses`` writes the losses): softmax(q @ kᵀ·scale + mask) @ v in the language's own
ops, so the exact oracle, the rule sweep and the kink report see every step; torch's function
is its torch form, which tests/test_ops.py confirms the definition against.

Batch dims broadcast as matmul's. ``attn_mask`` is a condition (True: attend) or a real tensor
added to the scores (and differentiated like any argument); ``is_causal`` is the condition
tril(ones(L, S)). dropout_p must be 0 (random dropout cannot be repeated); enable_gqa=True is
refused (repeat key and value over the heads first).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from gradcheck_lab.errors import SpecError
from gradcheck_lab.ops.base import (
    ArgInfo,
    Param,
    Params,
    Shape,
    broadcast_shapes,
    composite,
    float_param,
    optional_float_param,
)
from gradcheck_lab.ops.normalization import check_no_dropout

_NAME = "scaled_dot_product_attention"


def _scores_shape(query: Shape, key: Shape) -> Shape:
    """The shape of q @ kᵀ, (..., L, S), checked: E agrees, batch dims broadcast."""
    if query[-1] != key[-1]:
        raise SpecError(f"{_NAME}(): query's last dim E={query[-1]} must equal key's, got "
                        f"key of shape {list(key)}")
    return (*broadcast_shapes(query[:-2], key[:-2]), query[-2], key[-2])


def _check_mask(mask: ArgInfo, scores: Shape, params: Params) -> None:
    if params["is_causal"]:
        raise SpecError(f"{_NAME}(): attn_mask and is_causal=True are exclusive (torch refuses "
                        "both); give one")
    if mask.is_integer and not mask.is_bool:
        raise SpecError(f"{_NAME}(): attn_mask must be a condition (a comparison; True "
                        "attends) or real (added to the scores), got an integer tensor")
    try:
        fits = broadcast_shapes(mask.shape, scores) == scores
    except SpecError:
        fits = False
    if not fits:
        raise SpecError(f"{_NAME}(): attn_mask of shape {list(mask.shape)} must broadcast to "
                        f"the attention weights' shape {list(scores)}")


def _attention_shape(args: Sequence[ArgInfo], params: Params) -> Shape:
    query, key, value = (a.shape for a in args[:3])
    if min(len(query), len(key), len(value)) < 2:
        raise SpecError(f"{_NAME}(): query, key and value must be at least 2-d (..., L, E), got "
                        f"shapes {list(query)}, {list(key)}, {list(value)}")
    check_no_dropout(_NAME, "dropout_p", float_param(params, "dropout_p"))
    if params["enable_gqa"]:
        raise SpecError(f"{_NAME}(): enable_gqa=True is not supported; repeat key and value "
                        "over the query's heads (repeat_interleave(key, n, dim=-3)) instead")
    if key[-2] != value[-2]:
        raise SpecError(f"{_NAME}(): key and value need the same length S (dim -2), got shapes "
                        f"{list(key)} and {list(value)}")
    scores = _scores_shape(query, key)
    if len(args) > 3:
        _check_mask(args[3], scores, params)
    return (*broadcast_shapes(scores[:-2], value[:-2]), scores[-2], value[-1])


def _masked_softmax(b: Any, scores: int, dropped: int) -> int:
    """softmax over the last dim with the entries where ``dropped`` holds given weight
    exactly 0, as torch's -inf does; a row with nothing kept gets weights 0, as torch 2.13's
    kernels give it (older torch gave nan).

    No -inf enters the graph: the exact oracle holds rationals, and 0·inf in a VJP is nan.
    The dropped scores are replaced by the mean of the row's kept ones, which is never above
    the row's largest kept score: softmax's own shift by the row max then lands on a kept
    entry, so no kept weight underflows because of a dropped one (a fixed fill such as 0 or
    -1e4 could exceed every kept score, or differ from torch's weights by exp(-1e4)).
    Zeroing the dropped weights and renormalizing by the kept sum gives exactly torch's
    softmax over the kept entries; the fill, and the shift, drop out of the value, so their
    share of the gradient is 0. (No amax: a tie at the max would be reported as a kink.)"""
    shape = b.shape(scores)
    kept = b.call("broadcast_to", b.call("where", dropped, b.const(0), b.const(1)), size=shape)
    count = b.call("sum", kept, dim=-1, keepdim=True)
    some = b.call("gt", count, b.const(0))  # the row keeps something: no division by 0
    kept_sum = b.call("sum", b.call("where", dropped, b.const(0), scores), dim=-1, keepdim=True)
    fill = b.call("div", kept_sum, b.call("where", some, count, b.const(1)))
    weights = b.call("softmax", b.call("where", dropped, fill, scores), dim=-1)
    weights = b.call("where", dropped, b.const(0), weights)
    total = b.call("sum", weights, dim=-1, keepdim=True)
    return b.call("div", weights, b.call("where", some, total, b.const(1)))


def _causal(b: Any, length: int, source: int) -> int:
    """torch's is_causal: the condition tril(ones(L, S)) (query i attends to keys j <= i),
    returned as its negation, the dropped entries."""
    ones = b.call("broadcast_to", b.const(1), size=(length, source))
    return b.call("le", b.call("tril", ones), b.const(0))


def _dropped(b: Any, mask: int) -> int | None:
    """logical_not(mask) for a condition mask, None for a real one. The Expander tells a
    node's shape, not its kind: logical_not takes conditions only, and the builder refuses
    any other argument before it adds a node, so the probe leaves nothing behind."""
    try:
        return b.call("logical_not", mask)
    except SpecError:
        return None


def _attention(b: Any, args: list[int], p: Params) -> int:
    query, key, value = args[:3]
    embedding = b.shape(query)[-1]
    # torch's default: 1/sqrt(E), the float64 value torch computes it as.
    scale = 1.0 / math.sqrt(embedding) if p["scale"] is None else float_param(p, "scale")
    scores = b.call("mul", b.call("matmul", query, b.call("transpose", key, dim0=-2, dim1=-1)),
                    b.const(scale))
    if p["is_causal"]:
        length, source = b.shape(scores)[-2:]
        weights = _masked_softmax(b, scores, _causal(b, length, source))
    elif len(args) > 3:
        dropped = _dropped(b, args[3])
        weights = (b.call("softmax", b.call("add", scores, args[3]), dim=-1) if dropped is None
                   else _masked_softmax(b, scores, dropped))
    else:
        weights = b.call("softmax", scores, dim=-1)
    return b.call("matmul", weights, value)


def _attention_torch(args: Sequence[Any], params: Params) -> Any:
    import torch

    return torch.nn.functional.scaled_dot_product_attention(
        args[0], args[1], args[2], attn_mask=args[3] if len(args) > 3 else None,
        dropout_p=float_param(params, "dropout_p"), is_causal=bool(params["is_causal"]),
        scale=optional_float_param(params, "scale"), enable_gqa=bool(params["enable_gqa"]))


# integer_args: a condition mask is a bool tensor. Unlike a class target it is no
# nondifferentiable position: a real mask at the same place is differentiated.
ATTENTION = [
    dataclasses.replace(composite(
        _NAME, _attention, _attention_torch, shape=_attention_shape, group="nn",
        arg_names=("query", "key", "value", "attn_mask"), min_args=3,
        integer_args=frozenset({3}),
        params=(Param("dropout_p", "float", default=0.0),
                Param("is_causal", "bool", default=False),
                Param("scale", "float", default=None),
                Param("enable_gqa", "bool", default=False)),
        doc="softmax(q @ kᵀ·scale + mask) @ v, `scale` 1/sqrt(E) by default; `attn_mask` a "
            "condition (True attends) or real (added); `is_causal`; `dropout_p=0` only"),
        nondifferentiable_args=frozenset()),
]
