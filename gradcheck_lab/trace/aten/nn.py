"""Network ops: convolution, pooling, normalization, losses, distances, dropout."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from gradcheck_lab.errors import SpecError
from gradcheck_lab.ops.base import GIVEN
from gradcheck_lab.ops.structure import INDEX, index_text
from gradcheck_lab.trace.aten.structure import join
from gradcheck_lab.trace.aten.table import Args, Translation, Writer, ints, register

_REDUCTION = {0: "none", 1: "mean", 2: "sum"}  # aten's reduction enum


def _convolution(w: Writer, a: Args) -> int:
    """convolution(input, weight, bias, stride, padding, dilation, transposed,
    output_padding, groups): conv{d}d or conv_transpose{d}d."""
    weight = w.node(a["weight"])
    d = len(w.shape(weight)) - 2
    tensors = [w.node(a["input"]), weight] + (
        [] if a["bias"] is None else [w.node(a["bias"])])
    params: dict[str, Any] = {"stride": ints(a["stride"]), "padding": ints(a["padding"]),
                              "dilation": ints(a["dilation"]), "groups": int(a["groups"])}
    if a["transposed"]:
        return w.call(f"conv_transpose{d}d", *tensors, output_padding=ints(a["output_padding"]),
                      **params)
    return w.call(f"conv{d}d", *tensors, **params)


register("aten.convolution.default aten._convolution.default", _convolution)


def _pool_params(a: Args, names: tuple[str, ...]) -> dict[str, Any]:
    """The pooling keywords aten gives, as the language's (an empty stride: the kernel's)."""
    params = {}
    for name in names:
        value = a.get(name)
        if value is None or value == []:
            continue
        params[name] = ints(value) if isinstance(value, (list, tuple)) else value
    return params


def _max_pool(d: int) -> Any:
    names = ("kernel_size", "stride", "padding", "dilation", "ceil_mode")
    return lambda w, a: (w.call(f"max_pool{d}d", w.node(a["self"]), **_pool_params(a, names)),
                         None)


def _avg_pool(d: int) -> Any:
    names = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
             "divisor_override")
    return lambda w, a: w.call(f"avg_pool{d}d", w.node(a["self"]), **_pool_params(a, names))


def _adaptive_avg_pool(d: int) -> Translation:
    return lambda w, a: w.call(f"adaptive_avg_pool{d}d", w.node(a["self"]),
                               output_size=ints(a["output_size"]))


for _d in (1, 2, 3):
    register(f"aten.max_pool{_d}d_with_indices.default", _max_pool(_d))
    register(f"aten.avg_pool{_d}d.default", _avg_pool(_d))
    register(f"aten._adaptive_avg_pool{_d}d.default aten.adaptive_avg_pool{_d}d.default",
             _adaptive_avg_pool(_d))
register("aten.max_pool1d.default", lambda w, a: _max_pool(1)(w, a)[0])

ADAPTIVE_CELLS = 1024  # an adaptive max pool of uneven windows is written cell by cell


def _adaptive_max_pool(d: int) -> Any:
    """adaptive_max_pool{d}d(self, output_size) -> (values, indices): window i of a dim of n
    spans [floor(i·n/m), ceil((i+1)·n/m)); even windows are a max_pool, uneven ones the max
    of each cell's slice."""
    def translate(w: Writer, a: Args) -> tuple[int, None]:
        x = w.node(a["self"])
        sizes = w.shape(x)[-d:]
        outs = ints(a["output_size"])
        if all(n % m == 0 for n, m in zip(sizes, outs, strict=True)):
            kernel = tuple(n // m for n, m in zip(sizes, outs, strict=True))
            return w.call(f"max_pool{d}d", x, kernel_size=kernel, stride=kernel), None
        if math.prod(outs) > ADAPTIVE_CELLS:
            raise SpecError(f"an adaptive max pool of uneven windows to {list(outs)} cells "
                            f"(written cell by cell: at most {ADAPTIVE_CELLS})")
        return _cells(w, x, sizes, outs), None

    return translate


def _cells(w: Writer, x: int, sizes: tuple[int, ...], outs: tuple[int, ...]) -> int:
    """Each output cell's max over its window, the cells stacked back into their grid."""
    d = len(outs)
    windows = [[(i * n // m, -(-(i + 1) * n // m)) for i in range(m)]
               for n, m in zip(sizes, outs, strict=True)]
    lead = len(w.shape(x)) - d
    cells = []
    for corner in itertools.product(*windows):
        items = [slice(None)] * lead + [slice(start, stop) for start, stop in corner]
        window = w.call("getitem", x, **{INDEX: index_text(items)})
        cells.append(w.call("amax", window, dim=tuple(range(lead, lead + d))))
    stacked = join(w, "stack", cells, -1)
    return w.call("reshape", stacked, shape=(*w.shape(x)[:lead], *outs))


for _d in (1, 2, 3):
    register(f"aten.adaptive_max_pool{_d}d.default", _adaptive_max_pool(_d))


def _optional(w: Writer, a: Args, slots: tuple[tuple[int, str], ...]) -> tuple[list[int],
                                                                              list[int]]:
    """The tensors of ``slots`` that are given: (their nodes, their positions)."""
    nodes, positions = [], []
    for position, name in slots:
        if a.get(name) is not None:
            nodes.append(w.node(a[name]))
            positions.append(position)
    return nodes, positions


def _layer_norm(w: Writer, a: Args) -> tuple[int, None, None]:
    """native_layer_norm(input, normalized_shape, weight, bias, eps) -> (out, mean, rstd)."""
    shape = ints(a["normalized_shape"])
    nodes, positions = _optional(w, a, ((1, "weight"), (2, "bias")))
    if positions == [2]:  # a bias without a weight: weight 1
        nodes.insert(0, w.call("expand", w.const(1), size=shape))
    out = w.call("layer_norm", w.node(a["input"]), *nodes, normalized_shape=shape,
                 eps=float(a["eps"]))
    return out, None, None


def _group_norm(w: Writer, a: Args) -> tuple[int, None, None]:
    """native_group_norm(input, weight, bias, N, C, HxW, group, eps)."""
    nodes, positions = _optional(w, a, ((1, "weight"), (2, "bias")))
    out = w.call("group_norm", w.node(a["input"]), *nodes, num_groups=int(a["group"]),
                 eps=float(a["eps"]), **{GIVEN: (0, *positions)})
    return out, None, None


def _batch_norm(w: Writer, a: Args) -> tuple[int, None, None]:
    """native_batch_norm / _native_batch_norm_legit(_no_training): batch statistics when
    training (the running ones are updated beside the output, not read), else the running
    statistics, which are constants of the program."""
    training = bool(a.get("training", False))
    slots: tuple[tuple[int, str], ...] = ((3, "weight"), (4, "bias"))
    if not training:
        slots = ((1, "running_mean"), (2, "running_var"), *slots)
    nodes, positions = _optional(w, a, slots)
    out = w.call("batch_norm", w.node(a["input"]), *nodes, training=training,
                 momentum=float(a.get("momentum") or 0.1), eps=float(a["eps"]),
                 **{GIVEN: (0, *positions)})
    return out, None, None


register("aten.native_layer_norm.default", _layer_norm)
register("aten.native_group_norm.default", _group_norm)
register("aten.native_batch_norm.default aten._native_batch_norm_legit.default "
         "aten._native_batch_norm_legit.no_stats aten._native_batch_norm_legit_no_training."
         "default aten._native_batch_norm_legit_functional.default", _batch_norm)


def _nll_loss(w: Writer, a: Args) -> tuple[int, None]:
    """nll_loss_forward / nll_loss2d_forward(self, target, weight, reduction,
    ignore_index) -> (loss, weight sum)."""
    tensors = [w.node(a["self"]), w.node(a["target"])] + (
        [] if a["weight"] is None else [w.node(a["weight"])])
    return w.call("nll_loss", *tensors, reduction=_REDUCTION[int(a["reduction"])],
                  ignore_index=int(a["ignore_index"])), None


register("aten.nll_loss_forward.default aten.nll_loss2d_forward.default", _nll_loss)


def _pointwise_loss(op: str, **extra: str) -> Any:
    """mse_loss/l1_loss/huber_loss/smooth_l1_loss(self, target, reduction, ...)."""
    def translate(w: Writer, a: Args) -> int:
        params = {ours: float(a[theirs]) for ours, theirs in extra.items()}
        return w.call(op, w.node(a["self"]), w.node(a["target"]),
                      reduction=_REDUCTION[int(a["reduction"])], **params)

    return translate


register("aten.mse_loss.default", _pointwise_loss("mse_loss"))
register("aten.l1_loss.default", _pointwise_loss("l1_loss"))
register("aten.huber_loss.default", _pointwise_loss("huber_loss", delta="delta"))
register("aten.smooth_l1_loss.default", _pointwise_loss("smooth_l1_loss", beta="beta"))


def _dropout(w: Writer, a: Args) -> tuple[int, None]:
    """native_dropout(input, p, train): the identity when it draws nothing."""
    if a["train"] and float(a["p"]) > 0:
        raise SpecError("dropout in training mode draws a random mask on every call: the "
                        "forward is not a function of its inputs (call the model in eval "
                        "mode, or with p=0)")
    return w.node(a["input"]), None


register("aten.native_dropout.default", _dropout)
register("aten.dropout.default aten.feature_dropout.default aten.alpha_dropout.default",
         lambda w, a: _dropout(w, {"input": a["input"], "p": a["p"], "train": a["train"]})[0])


def _cdist(w: Writer, a: Args) -> int:
    """_cdist_forward(x1, x2, p, compute_mode): the p-norm of every row difference."""
    x1, x2 = w.node(a["x1"]), w.node(a["x2"])
    difference = w.call("sub", w.call("unsqueeze", x1, dim=-2),
                        w.call("unsqueeze", x2, dim=-3))
    return w.call("vector_norm", difference, ord=float(a["p"]), dim=-1)


def _pdist(w: Writer, a: Args) -> int:
    """_pdist_forward(self, p): the p-norm of each pair of rows i < j, in row-major order."""
    x = w.node(a["self"])
    rows = w.shape(x)[0]
    pairs = [(i, j) for i in range(rows) for j in range(i + 1, rows)]
    if not pairs:
        raise SpecError("pdist of fewer than 2 rows")
    first = join(w, "stack", [w.call("select", x, dim=0, index=i) for i, _ in pairs], 0)
    second = join(w, "stack", [w.call("select", x, dim=0, index=j) for _, j in pairs], 0)
    return w.call("vector_norm", w.call("sub", first, second), ord=float(a["p"]), dim=-1)


def _embedding_bag(w: Writer, a: Args) -> tuple[int, None, None, None]:
    """_embedding_bag(weight, indices, offsets, ..., mode, ..., per_sample_weights,
    include_last_offset, padding_idx): each bag's rows reduced (0 sum, 1 mean, 2 max) by a
    scatter over the bags, which the indices' and offsets' values at the point define."""
    indices = _integers(a["indices"], "embedding_bag's indices")
    offsets = _integers(a["offsets"], "embedding_bag's offsets")
    bags = len(offsets) - (1 if a["include_last_offset"] else 0)
    bag_of = np.searchsorted(offsets[:bags], np.arange(len(indices)), side="right") - 1
    kept = np.flatnonzero((indices != a["padding_idx"]) & (bag_of >= 0))
    rows = w.call("embedding", w.node(a["indices"]), w.node(a["weight"]))
    if a["per_sample_weights"] is not None:
        rows = w.call("mul", rows, w.call("unsqueeze", w.node(a["per_sample_weights"]), dim=1))
    width = w.shape(rows)[1]
    rows = w.call("index", rows, w.node(kept), **{GIVEN: (0, 1)})
    target = np.repeat(bag_of[kept][:, None], width, axis=1)
    out = w.call("scatter_reduce", w.node(np.zeros((bags, width))), w.node(target), rows,
                 dim=0, reduce=("sum", "mean", "amax")[int(a["mode"])], include_self=False)
    return out, None, None, None


def _integers(value: Any, what: str) -> np.ndarray:
    known = getattr(value, "constant", None)
    if known is None:
        raise SpecError(f"{what} are not known at the point")
    return np.asarray(known).reshape(-1)


register("aten._embedding_bag.default aten._embedding_bag_forward_only.default",
         _embedding_bag)
register("aten._cdist_forward.default", _cdist)
register("aten._pdist_forward.default", _pdist)
